"""Benchmark replay of writes made since a snapshot, and the WAL a snapshot's slot retains.

Run::

    .venv/bin/python benchmarks/bench_replay.py [--changes 10000,100000,1000000] [--minutes 2]

**Replay rate.** For each count N: a database migrated and filled by
``db.sample`` (``--size``, default 10MB); a copy of it made with
``CREATE DATABASE ... TEMPLATE`` (what a restored snapshot is); a
``test_decoding`` slot opened on the original; then N row changes made on the
original by the app-like write mix below; then
``rollback.replay.replay_changes`` carries them onto the copy. The rate is
rows replayed per second of ``replay_changes`` (decoding included), and the
copy's checksums must equal the original's afterwards.

**The app-like write mix** (7 row changes in 3 transactions, the shapes the
app writes): a customer places an order, submits a task (task + outbox row)
and a payment event arrives (one transaction, 4 inserts); a worker claims the
task (1 update); the worker finishes it and the relay marks the outbox row
sent (2 updates).

**WAL retention.** A slot pins every WAL byte written after its restart
point until Rollgate drops it, so the retention a snapshot adds per hour is
the WAL the write load generates per hour. Measured: the same mix, run at
``--rate`` mix iterations per second (default 20/s = 140 row changes/s, a busy
hour of the app) for ``--minutes``; the slot's retained WAL
(``pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)``) before and after,
extrapolated linearly to one hour. The throwaway server runs with
``full_page_writes = off``; the measurement turns it on (and starts with a
checkpoint), so the first change to each page after a checkpoint writes its
full image, as production does. ``checkpoint_timeout`` is 5 min, RDS's
default: a run of at least 5 minutes includes the images after the next one.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from core.sizes import parse_size
from db.checksums import compare_checksums, table_checksums
from db.migrations import load_migrations
from db.runner import MigrationRunner
from db.sample import generate_sample
from db.throwaway import ThrowawayPostgres, create_database, drop_database, start_throwaway
from rollback.replay import replay_changes

CHANGES_PER_ITERATION = 7
SLOT = "bench_replay"

WRITE_MIX = """
CREATE OR REPLACE PROCEDURE pg_temp.bench_write(iterations int, rate float8 DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
    low bigint;
    high bigint;
    customer bigint;
    task bigint;
    outbox bigint;
    started timestamptz := clock_timestamp();
BEGIN
    SELECT min(id), max(id) INTO low, high FROM public.customers;
    FOR i IN 1..iterations LOOP
        customer := low + (i::bigint * 7919) % (high - low + 1);
        INSERT INTO public.orders (customer_id, order_details)
            VALUES (customer, jsonb_build_object('sku', 'bench-' || i % 97, 'qty', 1 + i % 5));
        INSERT INTO public.execution_tasks (payload, idempotency_key)
            VALUES (jsonb_build_object('kind', 'report', 'n', i), 'bench-' || gen_random_uuid())
            RETURNING id INTO task;
        INSERT INTO public.task_outbox (task_id) VALUES (task) RETURNING id INTO outbox;
        INSERT INTO public.payment_events
            (stripe_event_id, event_type, amount_minor, currency, customer_id)
            VALUES ('evt_' || replace(gen_random_uuid()::text, '-', ''), 'charge.succeeded',
                    100 + i % 5000, 'usd', customer);
        COMMIT;
        UPDATE public.execution_tasks
            SET status = 'running', started_at = now(), attempts = attempts + 1
            WHERE id = task;
        COMMIT;
        UPDATE public.execution_tasks SET status = 'succeeded', finished_at = now()
            WHERE id = task;
        UPDATE public.task_outbox SET sent_at = now() WHERE id = outbox;
        COMMIT;
        IF rate > 0 THEN
            PERFORM pg_sleep(greatest(0, extract(epoch FROM
                started + make_interval(secs => i / rate) - clock_timestamp())));
        END IF;
    END LOOP;
END $$;
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", default="10000,100000,1000000")
    parser.add_argument("--size", default="10MB", help="sample data before the snapshot")
    parser.add_argument("--minutes", type=float, default=2.0, help="WAL measurement length")
    parser.add_argument("--rate", type=float, default=20.0, help="mix iterations per second")
    parser.add_argument(
        "--replay-from",
        type=Path,
        default=None,
        metavar="FILE",
        help="use replay_changes from this file (e.g. an older rollback/replay.py) to compare",
    )
    args = parser.parse_args(argv)
    replay = replay_changes if args.replay_from is None else _load_replay(args.replay_from)
    counts = [int(c) for c in args.changes.split(",") if c.strip()]
    with start_throwaway("embedded") as server:
        source = _prepare(server, "bench_replay_source", parse_size(args.size))
        print(f"{'changes':>10s} {'transactions':>13s} {'seconds':>9s} {'rows/s':>9s}  checksums")
        for count in counts:
            replayed, transactions, seconds, equal = _replay_rate(server, source, count, replay)
            print(
                f"{replayed:10d} {transactions:13d} {seconds:9.2f} {replayed / seconds:9.0f}  "
                f"{'equal' if equal else 'DIFFER'}",
                flush=True,
            )
        if args.minutes <= 0:
            return 0
        print(f"== WAL for {args.minutes} min at {args.rate}/s", file=sys.stderr)
        wal = _wal_per_hour(server, source, args.minutes, args.rate)
    print()
    for key, value in wal.items():
        print(f"{key:34s} {value}")
    return 0


def _load_replay(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("replay_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.replay_changes


def _prepare(server: ThrowawayPostgres, name: str, size: int) -> str:
    dsn = create_database(server, name)
    with MigrationRunner(dsn, load_migrations()) as runner:
        runner.migrate()
    with psycopg.connect(dsn) as conn:
        generate_sample(conn, size, seed=7)
    return name


def _replay_rate(
    server: ThrowawayPostgres, source: str, count: int, replay: Any
) -> tuple[int, int, float, bool]:
    live_name, copy_name = f"bench_live_{count}", f"bench_copy_{count}"
    live = create_database(server, live_name, template=source)
    copy = create_database(server, copy_name, template=source)
    try:
        with psycopg.connect(live, autocommit=True) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (SLOT,))
            conn.execute(WRITE_MIX)
            conn.execute("CALL pg_temp.bench_write(%s)", (count // CHANGES_PER_ITERATION,))
        report = replay(live, SLOT, copy)
        with psycopg.connect(live) as a, psycopg.connect(copy) as b:
            mine = {"rollgate"}  # replay progress lives on the copy only
            equal = not compare_checksums(
                table_checksums(a, exclude_schemas=mine), table_checksums(b, exclude_schemas=mine)
            )
        return report.rows_replayed, report.transactions, report.seconds, equal
    finally:
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s",
                (SLOT,),
            )
        drop_database(server, live_name)
        drop_database(server, copy_name)


def _wal_per_hour(
    server: ThrowawayPostgres, source: str, minutes: float, rate: float
) -> dict[str, Any]:
    live_name = "bench_wal"
    live = create_database(server, live_name, template=source)
    iterations = int(minutes * 60 * rate)
    try:
        with psycopg.connect(live, autocommit=True) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (SLOT,))
            settings = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('full_page_writes', 'wal_level', 'checkpoint_timeout', 'wal_compression')"
                ).fetchall()
            )
            conn.execute(WRITE_MIX)
            # As production runs: full-page images after every checkpoint
            # (the throwaway servers turn them off for speed).
            conn.execute("ALTER SYSTEM SET full_page_writes = on")
            conn.execute("SELECT pg_reload_conf()")
            time.sleep(0.5)
            conn.execute("CHECKPOINT")
            before = _retained(conn)
            started = time.monotonic()
            conn.execute("CALL pg_temp.bench_write(%s, %s)", (iterations, rate))
            seconds = time.monotonic() - started
            after = _retained(conn)
            settings["full_page_writes during the run"] = str(
                conn.execute("SHOW full_page_writes").fetchone()[0]  # type: ignore[index]
            )
            conn.execute("ALTER SYSTEM RESET full_page_writes")
            conn.execute("SELECT pg_reload_conf()")
    finally:
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s",
                (SLOT,),
            )
        drop_database(server, live_name)
    grown = after - before
    changes = iterations * CHANGES_PER_ITERATION
    return {
        "measured seconds": round(seconds, 1),
        "row changes": changes,
        "row changes per second": round(changes / seconds, 1),
        "retained WAL growth (MiB)": round(grown / 2**20, 2),
        "WAL bytes per row change": round(grown / changes),
        "retained WAL per hour (MiB)": round(grown / seconds * 3600 / 2**20),
        "server settings": settings,
    }


def _retained(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
        "FROM pg_replication_slots WHERE slot_name = %s",
        (SLOT,),
    ).fetchone()
    assert row is not None
    return int(row[0])


if __name__ == "__main__":
    sys.exit(main())
