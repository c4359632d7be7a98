"""Drift: a live database compared with the canonical schema."""

from __future__ import annotations

from pathlib import Path

import psycopg

from db.config import CatalogScope
from db.drift import detect_drift
from db.migrations import BUNDLED_MIGRATIONS, BUNDLED_SCHEMA, load_migrations
from db.runner import MigrationRunner
from db.throwaway import ThrowawayPostgres
from tests.db.conftest import WriteMigrations
from tests.db.test_contract import APP, APP_SCHEMA


def drift(dsn: str, server: ThrowawayPostgres):  # type: ignore[no-untyped-def]
    return detect_drift(dsn, server, BUNDLED_SCHEMA, load_migrations(BUNDLED_MIGRATIONS))


def test_a_freshly_migrated_database_has_no_drift(
    migrated_dsn: str, server: ThrowawayPostgres
) -> None:
    report = drift(migrated_dsn, server)
    assert not report.drifted
    assert report.live_fingerprint == report.canonical_fingerprint
    assert (report.live_version, report.latest_version) == (5, 5)


def test_hand_made_changes_are_listed_one_by_one(
    migrated_dsn: str, server: ThrowawayPostgres
) -> None:
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE customers ALTER COLUMN name TYPE varchar(100)")
        conn.execute("ALTER TABLE orders ALTER COLUMN order_details DROP NOT NULL")
        conn.execute("CREATE INDEX orders_created_at_hotfix ON orders (created_at)")
        conn.execute("ALTER TABLE execution_tasks DISABLE TRIGGER execution_tasks_set_updated_at")
        conn.execute(
            "CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RETURN NEW; END $$"
        )
        conn.execute("ALTER TABLE payment_events DROP CONSTRAINT payment_events_currency_iso4217")
    report = drift(migrated_dsn, server)
    assert report.drifted
    text = "\n".join(d.describe() for d in report.differences)
    assert "public.customers.name" in text and "character varying(100)" in text
    assert "public.orders.order_details" in text
    assert "public.orders_created_at_hotfix" in text
    assert "execution_tasks_set_updated_at" in text
    assert "public.set_updated_at" in text
    assert "payment_events_currency_iso4217" in text
    assert report.to_dict()["differences"][0]["description"]


def test_a_database_behind_on_migrations_says_why_it_differs(
    empty_dsn: str, server: ThrowawayPostgres
) -> None:
    with MigrationRunner(empty_dsn, load_migrations(BUNDLED_MIGRATIONS)) as runner:
        runner.migrate(1)
    report = drift(empty_dsn, server)
    assert report.drifted
    assert any("idx_ai_model" in d.describe() for d in report.differences)
    assert any("0002_add_ai_model, 0003_add_task_outbox" in note for note in report.notes)


def test_drift_needs_only_read_access(migrated_dsn: str, server: ThrowawayPostgres) -> None:
    # Scheduled audits run drift with a read-only role; prove that is enough.
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS drift_reader")
        conn.execute("CREATE ROLE drift_reader LOGIN IN ROLE pg_read_all_data")
    reader_dsn = migrated_dsn.replace("postgresql://postgres:@", "postgresql://drift_reader@")
    try:
        report = drift(reader_dsn, server)
        assert not report.drifted
    finally:
        with psycopg.connect(migrated_dsn, autocommit=True) as conn:
            conn.execute("DROP ROLE drift_reader")


def test_drift_in_a_custom_schema_is_caught(
    empty_dsn: str, server: ThrowawayPostgres, write_migrations: WriteMigrations, tmp_path: Path
) -> None:
    migrations = load_migrations(write_migrations(APP))
    with MigrationRunner(empty_dsn, migrations) as runner:
        runner.migrate()
    schema = tmp_path / "schema.sql"
    schema.write_text(APP_SCHEMA)
    assert not detect_drift(empty_dsn, server, schema, migrations).drifted

    # A column schema.sql has and the database lacks, and a hand-made change
    # to what a SECURITY DEFINER function may see.
    schema.write_text(
        APP_SCHEMA.replace("upgraded_at timestamptz", "upgraded_at timestamptz, planted text")
    )
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("ALTER FUNCTION app.upgrade(bigint) SET search_path = public, app")
    report = detect_drift(empty_dsn, server, schema, migrations)

    assert [d.describe() for d in report.differences] == [
        "function app.upgrade(account bigint): config changed: "
        "expected (search_path=app, pg_temp), found (search_path=public, app)",
        "column app.accounts.planted: missing (text)",
    ]

    # The project's scope narrows what is compared, on both sides.
    narrowed = detect_drift(
        empty_dsn, server, schema, migrations, scope=CatalogScope(exclude=("app.accounts",))
    )
    assert [d.name for d in narrowed.differences] == ["app.upgrade(account bigint)"]
