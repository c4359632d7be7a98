"""Loading migration files: every refusal names the file (and line) at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import CannotRun
from db.errors import MigrationFileError
from db.migrations import BUNDLED_MIGRATIONS, load_migrations
from tests.db.conftest import WIDGETS, WriteMigrations


def test_bundled_migrations_load_in_order() -> None:
    migrations = load_migrations(BUNDLED_MIGRATIONS)
    assert [m.label for m in migrations] == [
        "0001_create_base_tables",
        "0002_add_ai_model",
        "0003_add_task_outbox",
        "0004_create_roi_views",
    ]
    assert migrations[0].up.transactional
    # 0002 builds idx_ai_model CONCURRENTLY, which cannot run in a transaction.
    assert not migrations[1].up.transactional
    assert not migrations[1].down.transactional
    assert migrations[1].up.statement_timeout == "60min"


def test_missing_down_file_is_refused_by_name(widgets_dir: Path) -> None:
    (widgets_dir / "0002_add_widget_colour.down.sql").unlink()
    with pytest.raises(MigrationFileError, match=r"0002_add_widget_colour\.down\.sql: missing"):
        load_migrations(widgets_dir)


def test_missing_verify_file_is_refused_by_name(widgets_dir: Path) -> None:
    (widgets_dir / "0001_create_widgets.verify.sql").unlink()
    with pytest.raises(MigrationFileError, match=r"0001_create_widgets\.verify\.sql: missing"):
        load_migrations(widgets_dir)


def test_stray_sql_file_is_refused(widgets_dir: Path) -> None:
    (widgets_dir / "fix_prod.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationFileError, match=r"fix_prod\.sql: not a migration file name"):
        load_migrations(widgets_dir)


def test_two_migrations_sharing_a_version_are_refused(widgets_dir: Path) -> None:
    for kind in ("up", "down", "verify"):
        (widgets_dir / f"0002_other_change.{kind}.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationFileError, match="version 0002 is already used"):
        load_migrations(widgets_dir)


def test_syntax_error_names_file_line_and_column(write_migrations: WriteMigrations) -> None:
    broken = dict(WIDGETS)
    broken["0002_add_widget_colour"] = (
        "-- a comment line\n"
        "ALTER TABLE widgets ADD COLUMN colour text;\n"
        "CREATE INDX oops ON widgets (colour);",
        "SELECT 1;",
        "SELECT 1;",
    )
    directory = write_migrations(broken)
    with pytest.raises(MigrationFileError) as caught:
        load_migrations(directory)
    assert "0002_add_widget_colour.up.sql:3:8: syntax error" in caught.value.message
    assert caught.value.details["line"] == 3


def test_the_seeds_broken_sql_is_caught_with_its_line(write_migrations: WriteMigrations) -> None:
    # The seed's own text: a trailing comma and MySQL's ON UPDATE with garbage after it.
    seed_sql = (
        "CREATE TABLE IF NOT EXISTS public.customers (\n"
        "    id SERIAL PRIMARY KEY,\n"
        "    email VARCHAR(254) UNIQUE,\n"
        ");\n"
    )
    directory = write_migrations({"0001_create_customers": (seed_sql, "SELECT 1;", "SELECT 1;")})
    with pytest.raises(
        MigrationFileError, match=r"0001_create_customers\.up\.sql:4:1: syntax error"
    ):
        load_migrations(directory)


def test_invalid_utf8_is_refused_with_its_position(widgets_dir: Path) -> None:
    (widgets_dir / "0001_create_widgets.up.sql").write_bytes(b"SELECT 1;\nSELECT '\xff\xfe';\n")
    with pytest.raises(
        MigrationFileError, match=r"0001_create_widgets\.up\.sql:2:9: not valid UTF-8"
    ):
        load_migrations(widgets_dir)


def test_unknown_directive_is_refused(widgets_dir: Path) -> None:
    (widgets_dir / "0001_create_widgets.up.sql").write_text(
        "-- rollgate: transactional=false\nSELECT 1;\n"
    )
    with pytest.raises(MigrationFileError, match="unknown directive 'transactional'"):
        load_migrations(widgets_dir)


def test_malformed_timeout_is_refused(widgets_dir: Path) -> None:
    (widgets_dir / "0001_create_widgets.up.sql").write_text(
        "-- rollgate: lock_timeout=5 seconds\nSELECT 1;\n"
    )
    with pytest.raises(MigrationFileError, match="directive 'seconds' is not key=value"):
        load_migrations(widgets_dir)


def test_empty_up_file_is_refused(widgets_dir: Path) -> None:
    (widgets_dir / "0001_create_widgets.up.sql").write_text("-- nothing here\n")
    with pytest.raises(MigrationFileError, match="no SQL statements"):
        load_migrations(widgets_dir)


def test_statements_know_their_lines(widgets_dir: Path) -> None:
    migration = load_migrations(widgets_dir)[1]
    assert [s.line for s in migration.up.statements] == [1, 2]
    assert migration.up.statements[1].text.startswith("CREATE INDEX widgets_colour_idx")


def test_missing_directory_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(CannotRun, match="migrations directory not found"):
        load_migrations(tmp_path / "nope")
