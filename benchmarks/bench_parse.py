"""Benchmark loading (reading, parsing, checking) a migration with a large up file.

Run::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_parse.py [--sizes 1,2,4,8,50] [--timeout 300]

For each size (MiB) it writes one migration whose up file is a data migration
of that size (INSERT statements, with a DDL statement every 500 lines so the
parse-tree checks run too), then times ``load_migrations`` on it in a fresh
Python process and prints one table: size, statements, seconds, and the peak
RSS of that process. ``rollgate db migrate --dry-run`` does exactly this load
before it plans. A size that takes longer than ``--timeout`` is shown as such.

Machines are noisy: compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 1024 * 1024


def write_migration(directory: Path, size_mib: float) -> int:
    """A 0001 migration whose up file is about ``size_mib`` MiB; returns its statement count."""
    directory.mkdir(parents=True, exist_ok=True)
    target = int(size_mib * MIB)
    lines = ["CREATE TABLE public.bench_rows (id bigint PRIMARY KEY, label text, note text);\n"]
    written = len(lines[0])
    statements = 1
    row = 0
    while written < target:
        if row % 500 == 499:
            line = f"COMMENT ON TABLE public.bench_rows IS 'loaded up to row {row}';\n"
        else:
            line = (
                f"INSERT INTO public.bench_rows (id, label, note) VALUES "
                f"({row}, 'label {row}', 'a note that makes the line a realistic length');\n"
            )
        lines.append(line)
        written += len(line)
        statements += 1
        row += 1
    (directory / "0001_load_rows.up.sql").write_text("".join(lines))
    (directory / "0001_load_rows.down.sql").write_text("DROP TABLE public.bench_rows;\n")
    verify = "SELECT id FROM public.bench_rows LIMIT 0;\n"
    (directory / "0001_load_rows.verify.sql").write_text(verify)
    return statements


def child(directory: Path) -> None:
    """Load ``directory`` once and print seconds and peak RSS as JSON (runs in its own process)."""
    from db.migrations import load_migrations

    started = time.perf_counter()
    migrations = load_migrations(directory)
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    statements = len(migrations[0].up.statements)
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib, "statements": statements}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,2,4,8,50", help="up file sizes in MiB")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per size")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0

    print(f"{'up file':>9}  {'statements':>10}  {'load s':>8}  {'peak RSS':>9}")
    with tempfile.TemporaryDirectory(prefix="bench-parse-") as tmp:
        for size in (float(s) for s in args.sizes.split(",")):
            directory = Path(tmp) / f"m{size:g}"
            statements = write_migration(directory, size)
            try:
                completed = subprocess.run(
                    [sys.executable, __file__, "--child", str(directory)],
                    capture_output=True,
                    text=True,
                    timeout=args.timeout,
                    check=True,
                )
            except subprocess.TimeoutExpired:
                print(f"{size:>6g} MB  {statements:>10,}  {'>' + format(args.timeout, 'g'):>8}")
                continue
            except subprocess.CalledProcessError as exc:
                print(f"{size:>6g} MB  failed: {exc.stderr.strip().splitlines()[-1]}")
                continue
            result = json.loads(completed.stdout)
            print(
                f"{size:>6g} MB  {statements:>10,}  {result['seconds']:>8.2f}  "
                f"{result['peak_mib']:>6.0f} MiB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
