"""Time each checksum method (``db.checksums``) on the same sample data.

Run::

    .venv/bin/python benchmarks/bench_checksums.py [--size 250MB] [--repeat 3]

Starts one throwaway embedded Postgres, migrates a fresh database to the
latest version, fills it with ``db.sample`` (the same data the snapshot
benchmark uses) and times, best of ``--repeat``:

* a bare sequential scan (``count(*)`` of every table): the floor any
  checksum pays;
* ``table_checksums`` (one session) and ``parallel_table_checksums -j2``
  (what ``verify`` and ``restore`` run), by every method, and one session
  on the tables without a jsonb column (jsonb costs its text form in both);

then checks that both methods found the same row counts, and prints one
table with each method's time over the bare scan and v2's speedup over v1.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg
from psycopg import sql

from core.sizes import parse_size
from db.checksums import (
    CHECKSUM_METHODS,
    ROW_HASH_V2,
    ROW_TEXT_V1,
    parallel_table_checksums,
    table_checksums,
)
from db.migrations import load_migrations
from db.runner import MigrationRunner
from db.sample import generate_sample
from db.throwaway import create_database, start_throwaway

MIB = 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="250MB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    with start_throwaway("embedded") as server:
        dsn = create_database(server, "bench_checksums")
        with MigrationRunner(dsn, load_migrations()) as runner:
            runner.migrate()
        with psycopg.connect(dsn) as conn:
            generate_sample(conn, parse_size(args.size), seed=args.seed)
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
            size = int(
                conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
            )
        with psycopg.connect(dsn) as conn:
            with_jsonb = {
                f"{schema}.{name}"
                for schema, name in conn.execute(
                    "SELECT DISTINCT table_schema, table_name FROM information_schema.columns "
                    "WHERE data_type = 'jsonb' AND table_schema NOT IN ('pg_catalog', 'rollgate')"
                )
            }
        seconds: dict[str, float] = {"bare seq scan (count(*))": _best(args.repeat, _scan(dsn))}
        rows: dict[str, int] = {}
        for method in CHECKSUM_METHODS:

            def serial(method: str = method, exclude: frozenset[str] = frozenset()) -> Any:
                with psycopg.connect(dsn) as conn:
                    return table_checksums(conn, method=method, exclude_tables=exclude)

            seconds[f"{method} (1 session)"] = _best(args.repeat, serial)
            seconds[f"{method} (-j2)"] = _best(
                args.repeat, partial(parallel_table_checksums, dsn, method=method)
            )
            # jsonb goes through its text form in both methods: the rest is what v2 saves.
            seconds[f"{method} (no jsonb tables)"] = _best(
                args.repeat, partial(serial, method, frozenset(with_jsonb))
            )
            rows[method] = sum(t.rows for t in serial())
    if len(set(rows.values())) != 1:
        raise SystemExit(f"the methods counted different rows: {rows}")
    print(render(args.size, size, seconds))
    return 0


def render(label: str, database_bytes: int, seconds: dict[str, float]) -> str:
    """The table: seconds per measurement, over the bare scan, and v2 over v1."""
    floor = seconds["bare seq scan (count(*))"]
    lines = [
        f"sample {label}: database {database_bytes / MIB:.0f} MiB",
        f"{'measurement':28s}{'seconds':>10s}{'/ scan':>10s}",
    ]
    for name, value in seconds.items():
        lines.append(f"{name:28s}{value:10.2f}{value / floor:10.2f}")
    for mode in ("1 session", "-j2", "no jsonb tables"):
        v1, v2 = seconds[f"{ROW_TEXT_V1} ({mode})"], seconds[f"{ROW_HASH_V2} ({mode})"]
        lines.append(f"{'v1 / v2, ' + mode:28s}{v1 / v2:10.2f}")
    return "\n".join(lines)


def _scan(dsn: str) -> Callable[[], None]:
    def scan() -> None:
        with psycopg.connect(dsn) as conn:
            # A sequential scan of every row, as a checksum reads them: no index-only shortcut.
            for setting in ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan"):
                conn.execute(sql.SQL("SET {} = off").format(sql.Identifier(setting)))
            tables = conn.execute(
                "SELECT schemaname, relname FROM pg_stat_user_tables ORDER BY 1, 2"
            ).fetchall()
            for schema, name in tables:
                conn.execute(
                    sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
                        sql.Identifier(schema), sql.Identifier(name)
                    )
                )

    return scan


def _best(repeat: int, action: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(max(1, repeat)):
        started = time.monotonic()
        action()
        best = min(best, time.monotonic() - started)
    return best


if __name__ == "__main__":
    sys.exit(main())
