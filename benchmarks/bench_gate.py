"""Benchmark ``rollgate gate`` against bare ``pg_dump -Fd -j2`` + ``pg_restore -j2``.

Run (1 GB takes about 10 minutes and a few GB of disk; keep it out of CI)::

    .venv/bin/python benchmarks/bench_gate.py [--sizes 25MB,250MB,1GB]

For each size, on one throwaway embedded Postgres: migrate to release N, fill
with ``db.sample`` data, run the whole gate for the healthy N+1 scenario
(static checks, snapshot, verify, rehearse, budget), then, on the same data in
the same run, the bare baseline: ``pg_dump -Fd -j2`` to a directory and
``pg_restore -j2`` into a fresh database. pg_dump compresses a directory dump
with gzip by default and a snapshot is not compressed, so the uncompressed
baseline (``-Z0``) is timed as well: the gate is held to the issue's baseline,
and the second ratio shows what the comparison owes to compression. The last
ratio is the gate's data steps alone (snapshot + verify) over the baseline.

Machines are noisy: compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from core.pgtools import client_tools_for
from core.sizes import parse_size
from db.migrations import BUNDLED_MIGRATIONS, load_migrations
from db.runner import MigrationRunner
from db.sample import generate_sample
from db.schemafile import generate_schema
from db.throwaway import create_database, drop_database, start_throwaway
from release.gate import GateOptions, run_gate
from release.scenarios import load_scenario, materialize
from rollback.store import open_store

MB = 1_000_000


def bench_size(size: str, workdir: Path) -> dict[str, float]:
    row: dict[str, float] = {}
    with start_throwaway("embedded") as server:
        dsn = create_database(server, "production")
        with MigrationRunner(dsn, load_migrations(BUNDLED_MIGRATIONS)) as runner:
            runner.migrate()
        with psycopg.connect(dsn, autocommit=True) as conn:
            generate_sample(conn, parse_size(size))
            raw = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        row["database_mb"] = (raw[0] if raw else 0) / MB

        migrations = materialize(load_scenario("healthy"), workdir / f"migrations-{size}")
        # N+1's schema (the smoke suite compares the migrated catalog with it).
        schema = workdir / f"schema-{size}.sql"
        schema.write_text(generate_schema(server, load_migrations(migrations)))
        started = time.monotonic()
        report = run_gate(
            GateOptions(
                dsn=dsn,
                store=open_store(str(workdir / f"store-{size}")),
                migrations_dir=migrations,
                schema_path=schema,
                stack="dev",
                stack_dir=Path(__file__).resolve().parent.parent,
                report_dir=workdir / f"report-{size}",
            )
        )
        row["gate_s"] = time.monotonic() - started
        for step in report.steps:
            row[f"{step.name}_s"] = step.seconds
        row["verdict"] = report.verdict  # type: ignore[assignment]

        rehearse = report.step("rehearse").details.get("timings_seconds", {})
        for name, seconds in rehearse.items():
            row[f"rehearse_{name}_s"] = seconds
        bin_dir = client_tools_for(server.major_version)
        # The baseline is pg_dump's default (gzip, level 6, for -Fd); the
        # snapshot is not compressed, so an uncompressed (-Z0) baseline is timed too.
        for suffix, compression in (("", ()), ("_z0", ("-Z0",))):
            dump_s, restore_s = _bare(bin_dir, dsn, server, workdir / f"bare-{size}", compression)
            row[f"pg_dump{suffix}_s"], row[f"pg_restore{suffix}_s"] = dump_s, restore_s
    row["bare_s"] = row["pg_dump_s"] + row["pg_restore_s"]
    row["ratio"] = row["gate_s"] / row["bare_s"]
    row["bare_z0_s"] = row["pg_dump_z0_s"] + row["pg_restore_z0_s"]
    row["ratio_z0"] = row["gate_s"] / row["bare_z0_s"]
    data = row["snapshot_s"] + row["verify_s"]
    row["data_ratio"] = data / row["bare_s"]
    return row


def _bare(
    bin_dir: Path, dsn: str, server: Any, dump_dir: Path, compression: tuple[str, ...]
) -> tuple[float, float]:
    """Seconds of ``pg_dump -Fd -j2`` and of ``pg_restore -j2`` into a fresh database."""
    started = time.monotonic()
    subprocess.run(
        [str(bin_dir / "pg_dump"), "-Fd", "-j2", *compression, "-f", str(dump_dir), dsn],
        check=True,
        capture_output=True,
    )
    dump_s = time.monotonic() - started
    target = create_database(server, "bare_restore")
    started = time.monotonic()
    subprocess.run(
        [str(bin_dir / "pg_restore"), "-j2", "--no-owner", "-d", target, str(dump_dir)],
        check=True,
        capture_output=True,
    )
    restore_s = time.monotonic() - started
    drop_database(server, "bare_restore")
    shutil.rmtree(dump_dir, ignore_errors=True)
    return dump_s, restore_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--sizes", default="25MB,250MB,1GB", help="comma-separated (default 25MB,250MB,1GB)"
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-gate-"))
    rows = []
    try:
        for size in args.sizes.split(","):
            print(f"benchmarking {size} ...", file=sys.stderr)
            rows.append((size, bench_size(size.strip(), workdir)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    header = (
        "| size | DB MB | gate s | static | snapshot | verify | rehearse (apps+revert, smoke) "
        "| pg_dump -j2 | pg_restore -j2 | bare s | **gate/bare** | bare -Z0 s | gate/bare -Z0 "
        "| (snapshot+verify)/bare | verdict |"
    )
    print(header)
    print("|" + "---|" * 15)
    for size, r in rows:
        print(
            f"| {size} | {r['database_mb']:.0f} | {r['gate_s']:.1f} | {r['static_s']:.1f} | "
            f"{r['snapshot_s']:.1f} | {r['verify_s']:.1f} | {r['rehearse_s']:.1f} "
            f"({r.get('rehearse_apps_and_revert_s', 0):.1f}, "
            f"{r.get('rehearse_smoke_suite_s', 0):.1f}) | "
            f"{r['pg_dump_s']:.1f} | {r['pg_restore_s']:.1f} | {r['bare_s']:.1f} | "
            f"**{r['ratio']:.2f}x** | {r['bare_z0_s']:.1f} | {r['ratio_z0']:.2f}x | "
            f"{r['data_ratio']:.2f}x | {r['verdict']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
