"""Database checks on real Postgres: each passes on a healthy database, fails on a seeded fault."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest

from db.migrations import BUNDLED_MIGRATIONS, BUNDLED_SCHEMA, load_migrations
from db.runner import MigrationRunner
from db.throwaway import ThrowawayPostgres
from release.audit.adversarial import PROBE_ID, adversarial_input
from release.audit.database import integrity, schema_drift
from release.audit.model import NotRunnable, Status
from release.audit.restore import restore_drill
from release.audit.thresholds import Thresholds
from rollback.snapshot import create_snapshot
from rollback.store import DirectoryStore, open_store

REPORTING_UP = (
    "CREATE SCHEMA reporting;\n"
    "CREATE TABLE reporting.daily_totals (day date PRIMARY KEY, total_minor bigint NOT NULL);\n"
)


@pytest.fixture
def reporting_project(tmp_path: Path) -> tuple[Path, Path]:
    """The bundled migrations plus a 0006 that adds a table in a non-public schema."""
    migrations = tmp_path / "migrations"
    shutil.copytree(BUNDLED_MIGRATIONS, migrations)
    (migrations / "0006_reporting.up.sql").write_text(REPORTING_UP)
    (migrations / "0006_reporting.down.sql").write_text("DROP SCHEMA reporting CASCADE;\n")
    (migrations / "0006_reporting.verify.sql").write_text(
        "SELECT 1 FROM reporting.daily_totals LIMIT 1;\n"
    )
    schema = tmp_path / "schema.sql"
    schema.write_text(BUNDLED_SCHEMA.read_text() + "\n" + REPORTING_UP)
    return migrations, schema


def test_drift_in_a_non_public_schema_fails_the_check(
    empty_dsn: str, server: ThrowawayPostgres, reporting_project: tuple[Path, Path]
) -> None:
    directory, schema = reporting_project
    migrations = load_migrations(directory)
    with MigrationRunner(empty_dsn, migrations) as runner:
        runner.migrate()
    healthy = schema_drift(empty_dsn, server, schema, migrations)
    assert healthy.status is Status.PASSED, healthy.summary
    assert healthy.metrics["drift_count"] == 0

    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE reporting.daily_totals ALTER COLUMN total_minor TYPE integer")
    drifted = schema_drift(empty_dsn, server, schema, migrations)
    assert drifted.status is Status.FAILED
    assert "reporting.daily_totals.total_minor" in drifted.summary
    assert drifted.metrics["drift_count"] >= 1


def test_an_edited_migration_fails_the_checksum_half(
    migrated_dsn: str, server: ThrowawayPostgres, tmp_path: Path
) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(BUNDLED_MIGRATIONS, directory)
    up = directory / "0002_add_ai_model.up.sql"
    up.write_text(up.read_text() + "\n-- edited after it was applied\n")
    result = schema_drift(migrated_dsn, server, BUNDLED_SCHEMA, load_migrations(directory))
    assert result.status is Status.FAILED
    assert any(f.name == "migration checksums" and not f.ok for f in result.findings)


def test_generated_invalid_rows_are_all_refused_and_leave_no_trace(migrated_dsn: str) -> None:
    result = adversarial_input(migrated_dsn, "public", Thresholds(adversarial_examples=5))
    assert result.status is Status.PASSED, result.summary
    assert result.metrics["adversarial_rows"] > 50
    trace = next(f for f in result.findings if f.name == "no trace")
    assert "identical before and after" in trace.evidence
    refused = next(f for f in result.findings if f.name == "refused by").evidence
    assert "payment_events_amount_nonnegative" in refused
    assert "customers_email_shape" in refused


def test_a_constraint_dropped_behind_rollgates_back_is_caught(migrated_dsn: str) -> None:
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE payment_events DROP CONSTRAINT payment_events_amount_nonnegative")
        sequences_before = conn.execute("SELECT last_value FROM pg_sequences").fetchall()
    result = adversarial_input(migrated_dsn, "public", Thresholds(adversarial_examples=5))
    assert result.status is Status.FAILED
    failed = [f for f in result.findings if not f.ok]
    assert [f.name for f in failed] == ["payment_events: negative amount"]
    assert "ACCEPTED" in failed[0].evidence and "amount_minor" in failed[0].evidence
    # Still rolled back: no probe row, no sequence moved.
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        left = conn.execute("SELECT count(*) FROM payment_events WHERE id = %s", (PROBE_ID,))
        assert left.fetchone() == (0,)
        assert conn.execute("SELECT last_value FROM pg_sequences").fetchall() == sequences_before


def reader_dsn(dsn: str) -> str:
    """A SELECT-only login role, like the audit role 0005 grants."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS audit_reader")
        conn.execute("CREATE ROLE audit_reader LOGIN PASSWORD 'reader'")
        conn.execute("ALTER ROLE audit_reader SET default_transaction_read_only = on")
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO audit_reader")
    return psycopg.conninfo.make_conninfo(dsn, user="audit_reader", password="reader")


def test_a_read_only_role_probes_temporary_copies_of_the_live_constraints(
    migrated_dsn: str,
) -> None:
    reader = reader_dsn(migrated_dsn)
    healthy = adversarial_input(reader, "public", Thresholds(adversarial_examples=3))
    assert healthy.status is Status.PASSED, healthy.summary
    probed = {f.name: f.evidence for f in healthy.findings}
    assert "temporary copies" in probed["probed"]
    assert probed["orders: unknown customer"].startswith("not probed")

    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE execution_tasks DROP CONSTRAINT execution_tasks_status_valid")
    dropped = adversarial_input(reader, "public", Thresholds(adversarial_examples=3))
    assert dropped.status is Status.FAILED
    assert [f.name for f in dropped.findings if not f.ok] == ["execution_tasks: unknown status"]


def test_a_role_that_can_neither_insert_nor_make_temp_tables_is_not_run(
    migrated_dsn: str,
) -> None:
    reader = reader_dsn(migrated_dsn)
    database = psycopg.conninfo.conninfo_to_dict(migrated_dsn)["dbname"]
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC')
    from release.audit import _guarded

    result = _guarded(
        "adversarial_input", lambda: adversarial_input(reader, "public", Thresholds())
    )
    assert result.status is Status.NOT_RUN
    assert "nor create temporary copies" in result.summary


def test_integrity_passes_on_the_migrated_schema(migrated_dsn: str) -> None:
    result = integrity(migrated_dsn, Thresholds())
    assert result.status is Status.PASSED, result.summary


def test_an_unindexed_foreign_key_and_an_invalid_index_fail_integrity(migrated_dsn: str) -> None:
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX orders_customer_id_idx")
        conn.execute(
            "INSERT INTO customers (name, email) VALUES ('dup', 'a@b.co'), ('dup', 'c@d.co')"
        )
        # A failed CONCURRENTLY build leaves an INVALID index behind.
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY customers_name_key ON customers (name)")
    result = integrity(migrated_dsn, Thresholds())
    assert result.status is Status.FAILED
    names = {f.name for f in result.findings if not f.ok}
    assert "foreign key public.orders.orders_customer_id_fkey" in names
    assert "invalid indexes" in names


def test_a_sequence_near_exhaustion_fails_integrity(migrated_dsn: str) -> None:
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE small_counter AS smallint")
        conn.execute("SELECT setval('small_counter', 30000)")
    result = integrity(migrated_dsn, Thresholds())
    assert result.status is Status.FAILED
    assert "sequence public.small_counter" in result.summary


def test_a_slot_retaining_too_much_wal_fails_integrity(make_logical_database: Any) -> None:
    dsn = make_logical_database()
    slot = "audit_test_slot"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,))
        try:
            healthy = integrity(dsn, Thresholds())
            assert healthy.status is Status.PASSED, healthy.summary
            conn.execute("CREATE TABLE churn AS SELECT g FROM generate_series(1, 20000) g")
            conn.execute("SELECT pg_switch_wal()")
            held = integrity(dsn, Thresholds(slot_retained_bytes=64 * 1024))
        finally:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    assert held.status is Status.FAILED
    assert f"replication slot {slot}" in held.summary
    assert held.metrics["slot_retained_bytes"] > 64 * 1024


@pytest.fixture
def store(tmp_path: Path) -> DirectoryStore:
    (tmp_path / "store").mkdir()
    store = open_store(str(tmp_path / "store"))
    assert isinstance(store, DirectoryStore)
    return store


def test_the_restore_drill_passes_on_a_good_snapshot_and_fails_on_a_corrupt_one(
    migrated_dsn: str, server: ThrowawayPostgres, store: DirectoryStore
) -> None:
    migrations = load_migrations(BUNDLED_MIGRATIONS)
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO customers (name, email) VALUES ('Ann', 'ann@example.com')")
    with pytest.raises(NotRunnable, match="no snapshot"):
        restore_drill(store, server, migrations, Thresholds())
    manifest = create_snapshot(migrated_dsn, store, slot=False)
    good = restore_drill(store, server, migrations, Thresholds())
    assert good.status is Status.PASSED, good.summary
    assert good.metrics["restore_seconds"] > 0
    assert 0 <= good.metrics["snapshot_age_seconds"] < 3600

    victim = max(manifest.files, key=lambda f: f.size)
    path = store.local_path(manifest.id, victim.name)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    corrupt = restore_drill(store, server, migrations, Thresholds())
    assert corrupt.status is Status.FAILED
    assert victim.name in corrupt.summary
