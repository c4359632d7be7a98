"""The runner against real Postgres: history, refusals, failures, timeouts, repairs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.postgres import redact_dsn
from db.errors import HistoryMismatch, LockNotAcquired, MigrationFailed
from db.migrations import BUNDLED_MIGRATIONS, load_migrations
from db.runner import MIGRATION_LOCK_KEY, MigrationRunner
from tests.db.conftest import WIDGETS, WriteMigrations

MakeRunner = Callable[..., MigrationRunner]


def tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


def columns(dsn: str, table: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (table,),
        ).fetchall()
    return [r[0] for r in rows]


def history(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT version, name, state FROM schema_migrations ORDER BY version"
        ).fetchall()


def test_bundled_migrations_apply_and_record_history(
    make_runner: MakeRunner, fresh_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROLLGATE_ACTOR", "ci-job-1234")
    runner = make_runner(BUNDLED_MIGRATIONS)
    report = runner.migrate()
    assert (report.version_before, report.version_after) == (0, 4)
    assert set(tables(fresh_dsn)) >= {"customers", "orders", "execution_tasks", "payment_events"}
    assert columns(fresh_dsn, "execution_tasks")[-3:] == [
        "ai_model",
        "idempotency_key",
        "lease_expires_at",
    ]
    with psycopg.connect(fresh_dsn) as conn:
        rows = conn.execute(
            "SELECT version, name, state, up_sha256, down_sha256, verify_sha256, applied_at, "
            "duration_ms, applied_by FROM schema_migrations ORDER BY version"
        ).fetchall()
    migrations = load_migrations(BUNDLED_MIGRATIONS)
    for migration, recorded in zip(migrations, rows, strict=True):
        assert recorded[:3] == (migration.version, migration.name, "applied")
        assert recorded[3:6] == (
            migration.up.sha256,
            migration.down.sha256,
            migration.verify.sha256,
        )
        assert recorded[6] is not None and recorded[7] >= 0
        assert recorded[8] == "ci-job-1234"


def test_dry_run_changes_nothing(make_runner: MakeRunner, fresh_dsn: str) -> None:
    report = make_runner(BUNDLED_MIGRATIONS).migrate(dry_run=True)
    assert report.dry_run and len(report.plan.steps) == 4
    assert tables(fresh_dsn) == []  # not even the history table


def test_migrate_twice_applies_nothing_the_second_time(
    make_runner: MakeRunner, widgets_dir: Path
) -> None:
    runner = make_runner(widgets_dir)
    runner.migrate()
    again = runner.migrate()
    assert again.executed == () and again.version_after == 3


def test_revert_and_reapply_round_trip(
    make_runner: MakeRunner, widgets_dir: Path, fresh_dsn: str
) -> None:
    runner = make_runner(widgets_dir)
    runner.migrate()
    runner.revert(1)
    assert columns(fresh_dsn, "widgets") == ["id", "name"]
    assert [r[0] for r in history(fresh_dsn)] == [1]
    runner.revert(0)
    assert tables(fresh_dsn) == ["schema_migrations"]
    runner.migrate()
    assert [r[2] for r in history(fresh_dsn)] == ["applied"] * 3


def test_changed_applied_file_is_refused_and_nothing_runs(
    make_runner: MakeRunner, widgets_dir: Path, fresh_dsn: str
) -> None:
    make_runner(widgets_dir).migrate(target=2)
    up = widgets_dir / "0001_create_widgets.up.sql"
    up.write_text(up.read_text() + "-- a harmless-looking edit\n")
    with pytest.raises(HistoryMismatch, match=r"0001_create_widgets\.up\.sql: changed since"):
        make_runner(widgets_dir).migrate()
    assert len(history(fresh_dsn)) == 2


def test_status_reports_refusals_without_raising(
    make_runner: MakeRunner, widgets_dir: Path
) -> None:
    make_runner(widgets_dir).migrate(target=1)
    (widgets_dir / "0001_create_widgets.verify.sql").write_text("SELECT 2;\n")
    status = make_runner(widgets_dir).status()
    assert not status.healthy
    assert "0001_create_widgets.verify.sql: changed since" in status.problems[0]


def test_failed_transactional_migration_leaves_database_exactly_as_before(
    make_runner: MakeRunner, write_migrations: WriteMigrations, fresh_dsn: str
) -> None:
    broken = dict(WIDGETS)
    broken["0002_add_widget_colour"] = (
        "ALTER TABLE widgets ADD COLUMN colour text;\n"
        "CREATE INDEX widgets_colour_idx ON widgets (colour);\n"
        "UPDATE widgets SET colour = shade;",  # no such column: fails on line 3
        "SELECT 1;",
        "SELECT 1;",
    )
    runner = make_runner(write_migrations(broken))
    with pytest.raises(MigrationFailed) as caught:
        runner.migrate()
    assert "0002_add_widget_colour.up.sql:3:" in caught.value.message
    assert 'column "shade" does not exist' in caught.value.message
    assert columns(fresh_dsn, "widgets") == ["id", "name"]
    assert history(fresh_dsn) == [(1, "create_widgets", "applied")]


def test_failing_verify_script_rolls_the_migration_back(
    make_runner: MakeRunner, write_migrations: WriteMigrations, fresh_dsn: str
) -> None:
    broken = dict(WIDGETS)
    up, down, _ = broken["0002_add_widget_colour"]
    broken["0002_add_widget_colour"] = (up, down, "SELECT color FROM widgets WHERE false;")
    with pytest.raises(
        MigrationFailed, match=r"0002_add_widget_colour\.verify\.sql:1:8: column \"color\""
    ):
        make_runner(write_migrations(broken)).migrate()
    assert columns(fresh_dsn, "widgets") == ["id", "name"]
    assert [r[0] for r in history(fresh_dsn)] == [1]


def test_failed_concurrent_index_is_detected_then_repaired(
    make_runner: MakeRunner, write_migrations: WriteMigrations, fresh_dsn: str
) -> None:
    unique = dict(WIDGETS)
    unique["0003_index_widget_name"] = (
        "-- rollgate: transaction=false\n"
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS widgets_name_idx ON widgets (name);",
        "-- rollgate: transaction=false\nDROP INDEX CONCURRENTLY IF EXISTS widgets_name_idx;",
        WIDGETS["0003_index_widget_name"][2],
    )
    directory = write_migrations(unique)
    runner = make_runner(directory)
    runner.migrate(target=2)
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO widgets VALUES (1, 'dup'), (2, 'dup')")
    with pytest.raises(MigrationFailed, match="could not create unique index"):
        runner.migrate()
    # The failed build left an INVALID index, and history says "started", not "done".
    status = runner.status()
    assert status.invalid_indexes == ("public.widgets_name_idx",)
    assert [m.state for m in status.migrations] == ["applied", "applied", "applying"]
    assert not status.healthy

    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM widgets WHERE id = 2")
    report = runner.migrate()
    assert report.executed[0].resumed
    assert report.executed[0].repairs == (
        "dropped INVALID index public.widgets_name_idx before rebuilding it",
    )
    assert runner.status().healthy


def test_lock_timeout_is_retried_then_succeeds(
    make_runner: MakeRunner, write_migrations: WriteMigrations, fresh_dsn: str
) -> None:
    quick = dict(WIDGETS)
    up, down, verify = quick["0002_add_widget_colour"]
    quick["0002_add_widget_colour"] = ("-- rollgate: lock_timeout=100ms\n" + up, down, verify)
    runner = make_runner(write_migrations(quick), lock_retries=5, retry_backoff=0.1)
    runner.migrate(target=1)
    blocker = psycopg.connect(fresh_dsn)
    blocker.execute("LOCK TABLE widgets IN ACCESS SHARE MODE")  # holds until commit
    threading.Timer(0.6, blocker.commit).start()
    messages: list[str] = []
    runner.progress = messages.append
    report = runner.migrate(target=2)
    blocker.close()
    assert report.executed[0].retries >= 1
    assert any("lock timeout (100ms)" in m for m in messages)


def test_lock_timeout_gives_up_after_bounded_retries(
    make_runner: MakeRunner, write_migrations: WriteMigrations, fresh_dsn: str
) -> None:
    quick = dict(WIDGETS)
    up, down, verify = quick["0002_add_widget_colour"]
    quick["0002_add_widget_colour"] = ("-- rollgate: lock_timeout=50ms\n" + up, down, verify)
    runner = make_runner(write_migrations(quick), lock_retries=2, retry_backoff=0.01)
    runner.migrate(target=1)
    with psycopg.connect(fresh_dsn) as blocker:
        blocker.execute("LOCK TABLE widgets IN ACCESS SHARE MODE")
        with pytest.raises(MigrationFailed, match="lock timeout"):
            runner.migrate()
    assert [r[0] for r in history(fresh_dsn)] == [1]


def test_runner_that_cannot_get_the_lock_applies_nothing(
    make_runner: MakeRunner, widgets_dir: Path, fresh_dsn: str
) -> None:
    with psycopg.connect(fresh_dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        with pytest.raises(
            LockNotAcquired, match="another migration runner holds the lock"
        ) as caught:
            make_runner(widgets_dir, lock_wait=0.5).migrate()
        # The wait is bounded by lock_wait, and the message names the holder.
        assert caught.value.details["waited_seconds"] == 0.5
        assert "server pid" in caught.value.details["holder"]
    assert tables(fresh_dsn) == []


def test_unreachable_database_is_a_clear_error_without_the_password() -> None:
    from core.errors import DatabaseUnreachable

    dsn = "postgresql://app:hunter2@127.0.0.1:1/app"
    runner = MigrationRunner(dsn, [])
    with pytest.raises(DatabaseUnreachable) as caught:
        runner.status()
    assert "hunter2" not in caught.value.message
    assert "postgresql://app:***@127.0.0.1:1/app" in caught.value.message


def test_redact_dsn_handles_urls_and_keyword_strings() -> None:
    assert redact_dsn("postgresql://u:p%40ss@h/db") == "postgresql://u:***@h/db"
    assert (
        redact_dsn("host=h user=u password=secret dbname=d")
        == "host=h user=u password=*** dbname=d"
    )
    assert redact_dsn("postgresql://u@h/db") == "postgresql://u@h/db"
