"""Wall time of the whole pre-deploy smoke suite at several sample sizes.

Run::

    .venv/bin/python benchmarks/bench_smoke.py [--sizes 25MB,250MB] [--backend auto]
        [--app-image rollgate/app:dev] [--previous-app-image rollgate/app:dev]

For each size it runs ``smoke.run.run_smoke`` (pytest in a subprocess, the
bundled migrations and schema) and prints the suite's wall time, its exit
code, and where the time went as the suite measured it: server start, building
the starting version, sample data, migrating (with lock sampling), cloning the
migrated database for the revert check. The rest is the checks themselves
(app start and queue round trips dominate; they do not grow with data).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from smoke.run import SmokeOptions, run_smoke

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="25MB,250MB")
    parser.add_argument("--backend", default="auto", choices=("auto", "docker", "embedded"))
    parser.add_argument("--app-image", default=None)
    parser.add_argument("--previous-app-image", default=None)
    args = parser.parse_args(argv)
    header = f"{'size':>7} {'wall s':>7} {'exit':>4}  backend   phases (s)"
    print(header)
    for size in args.sizes.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-smoke-") as out:
            started = time.monotonic()
            report = run_smoke(
                SmokeOptions(
                    migrations=REPO / "db/migrations",
                    schema=REPO / "db/schema.sql",
                    output_dir=Path(out),
                    backend=args.backend,
                    sample_size=size,
                    app_image=args.app_image,
                    previous_app_image=args.previous_app_image,
                )
            )
            wall = time.monotonic() - started
        prepared = report.summary.get("prepared") or {}
        phases = " ".join(f"{k}={v}" for k, v in (prepared.get("timings_seconds") or {}).items())
        counts = report.summary.get("counts")
        print(
            f"{size:>7} {wall:7.1f} {report.exit_code:>4}  "
            f"{report.summary.get('backend')!s:9} {phases} {counts}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
