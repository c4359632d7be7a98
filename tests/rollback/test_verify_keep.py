"""verify_snapshot(keep_as=...): the restored, checked copy stays for the gate's rehearsal."""

from __future__ import annotations

import psycopg

from db.migrations import load_migrations
from db.runner import MigrationRunner
from rollback.snapshot import create_snapshot
from rollback.store import open_store
from rollback.verify import verify_snapshot


def test_a_verified_copy_is_kept_under_the_given_name(
    make_logical_database, logical_server, tmp_path
) -> None:
    dsn = make_logical_database()
    with MigrationRunner(dsn, load_migrations()) as runner:
        runner.migrate()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO public.customers (name, email) VALUES ('Ada', 'ada@example.com')")
    store = open_store(str(tmp_path / "store"))
    manifest = create_snapshot(dsn, store, slot=False)
    report = verify_snapshot(
        store, manifest.id, logical_server, migrations=load_migrations(), keep_as="kept_copy"
    )
    assert report.ok
    try:
        with psycopg.connect(logical_server.dsn("kept_copy")) as conn:
            assert conn.execute("SELECT email FROM public.customers").fetchall() == [
                ("ada@example.com",)
            ]
    finally:
        with psycopg.connect(logical_server.dsn(), autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS kept_copy WITH (FORCE)")
