"""Table-level restore: rows a down migration deleted come back from the snapshot."""

from __future__ import annotations

import psycopg

from db.migrations import load_migrations
from db.runner import MigrationRunner
from rollback.snapshot import create_snapshot
from rollback.store import open_store
from rollback.tables import restore_table_data


def test_deleted_rows_come_back_and_later_rows_stay(make_logical_database, tmp_path) -> None:
    dsn = make_logical_database()
    with MigrationRunner(dsn, load_migrations()) as runner:
        runner.migrate()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.payment_events (stripe_event_id, event_type, amount_minor, "
            "currency) SELECT 'evt_' || g, 'charge.succeeded', g, 'usd' "
            "FROM generate_series(1, 5) g"
        )
    store = open_store(str(tmp_path / "store"))
    manifest = create_snapshot(dsn, store, slot=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM public.payment_events WHERE amount_minor <= 2")
        conn.execute(
            "INSERT INTO public.payment_events (stripe_event_id, event_type, amount_minor, "
            "currency) VALUES ('evt_later', 'charge.succeeded', 99, 'usd')"
        )
    # Before the fix, the primary-key lookup failed with IndeterminateDatatype.
    restore_table_data(store, manifest, dsn, table="public.payment_events", columns=None)
    with psycopg.connect(dsn) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT stripe_event_id FROM public.payment_events ORDER BY amount_minor"
            )
        ]
    assert ids == ["evt_1", "evt_2", "evt_3", "evt_4", "evt_5", "evt_later"]
