"""Benchmark ``db.sample.generate_sample`` on a throwaway embedded Postgres.

Run::

    .venv/bin/python benchmarks/bench_sample.py [--size 250MB] [--seed 42]

Starts a throwaway server, applies ``db/schema.sql`` to a fresh database, fills
it to ``--size`` and prints one table: target and achieved size, rows per
table, seconds, MB/s and the peak RSS of this Python process (generation runs
in the server, so it should stay flat whatever the size). For reference it
then times ``pg_dump -Fc`` of the result and ``pg_restore`` of that dump into
a fresh database, with the server's own client tools (an older pg_dump
refuses a newer server).

Machines are noisy: compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from core.sizes import parse_size
from db.sample import TABLES, SampleProgress, generate_sample
from db.throwaway import create_database, start_throwaway

SCHEMA = Path(__file__).resolve().parent.parent / "db" / "schema.sql"
MIB = 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="250MB", help="target size (default 250MB, 1024-based)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quiet", action="store_true", help="no per-batch progress on stderr")
    args = parser.parse_args(argv)
    target = parse_size(args.size)

    with start_throwaway("embedded") as server:
        dsn = create_database(server, "bench_sample")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SCHEMA.read_text())
            version = conn.execute("SHOW server_version").fetchone()

        def show(p: SampleProgress) -> None:
            if not args.quiet:
                print(
                    f"  batch {p.batch:3d}  {p.bytes_now / MIB:8.1f} MiB "
                    f"({p.fraction:6.1%})  {p.elapsed_seconds:6.1f} s",
                    file=sys.stderr,
                )

        with psycopg.connect(dsn) as conn:
            report = generate_sample(conn, target, seed=args.seed, progress=show)
        peak_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

        with tempfile.TemporaryDirectory(prefix="bench-sample-") as tmp:
            dump = Path(tmp) / "sample.dump"
            dump_seconds = _timed(
                [str(server.client_bin() / "pg_dump"), "-Fc", "-f", str(dump), dsn]
            )
            restore_dsn = create_database(server, "bench_restore")
            restore_seconds = _timed(
                [
                    str(server.client_bin() / "pg_restore"),
                    "--no-owner",
                    "-d",
                    restore_dsn,
                    str(dump),
                ]
            )
            dump_bytes = dump.stat().st_size

    added = report.bytes_after - report.bytes_before
    lines = [
        ("server", f"PostgreSQL {version[0] if version else '?'} (embedded, throwaway)"),
        ("target", f"{report.target_bytes / MIB:.1f} MiB ({args.size})"),
        (
            "achieved (4 tables)",
            f"{report.bytes_after / MIB:.1f} MiB "
            f"({(report.bytes_after - report.target_bytes) / report.target_bytes:+.1%})",
        ),
        ("pg_database_size", f"{report.database_bytes_after / MIB:.1f} MiB"),
        *((f"rows {table}", f"{report.rows[table]:,}") for table in TABLES),
        ("rows total", f"{sum(report.rows.values()):,}"),
        ("batches", str(report.batches)),
        ("seconds", f"{report.elapsed_seconds:.1f}"),
        ("MB/s (MiB of table data)", f"{added / MIB / report.elapsed_seconds:.1f}"),
        ("peak RSS (python)", f"{peak_rss_kib / 1024:.0f} MiB"),
        ("pg_dump -Fc", f"{dump_seconds:.1f} s, {dump_bytes / MIB:.1f} MiB file"),
        ("pg_restore (1 job)", f"{restore_seconds:.1f} s"),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name:<{width}}  {value}")
    return 0


def _timed(argv: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True)
    return time.monotonic() - started


if __name__ == "__main__":
    sys.exit(main())
