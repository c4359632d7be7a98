"""Fixtures for db tests: migration sets written to disk, runners on fresh databases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from db.migrations import load_migrations
from db.runner import MigrationRunner

# name -> (up, down, verify); e.g. {"0001_create_widgets": ("CREATE ...", "DROP ...", "SELECT ...")}
MigrationSet = dict[str, tuple[str, str, str]]
WriteMigrations = Callable[[MigrationSet], Path]

WIDGETS: MigrationSet = {
    "0001_create_widgets": (
        "CREATE TABLE widgets (id bigint PRIMARY KEY, name text NOT NULL);",
        "DROP TABLE widgets;",
        "SELECT id, name FROM widgets WHERE false;",
    ),
    "0002_add_widget_colour": (
        "ALTER TABLE widgets ADD COLUMN colour text;\n"
        "CREATE INDEX widgets_colour_idx ON widgets (colour);",
        "DROP INDEX widgets_colour_idx;\nALTER TABLE widgets DROP COLUMN colour;",
        "SELECT colour FROM widgets WHERE false;",
    ),
    "0003_index_widget_name": (
        "-- rollgate: transaction=false\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS widgets_name_idx ON widgets (name);",
        "-- rollgate: transaction=false\nDROP INDEX CONCURRENTLY IF EXISTS widgets_name_idx;",
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c "
        "ON c.oid = i.indexrelid WHERE c.relname = 'widgets_name_idx' AND i.indisvalid) "
        "THEN RAISE EXCEPTION 'widgets_name_idx missing or invalid'; END IF; END $$;",
    ),
}


def write_migration_set(directory: Path, migrations: MigrationSet) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for label, (up, down, verify) in migrations.items():
        for kind, text in (("up", up), ("down", down), ("verify", verify)):
            (directory / f"{label}.{kind}.sql").write_text(text + "\n")
    return directory


@pytest.fixture
def write_migrations(tmp_path: Path) -> Iterator[WriteMigrations]:
    counter = iter(range(1000))

    def write(migrations: MigrationSet) -> Path:
        return write_migration_set(tmp_path / f"migrations{next(counter)}", migrations)

    yield write


@pytest.fixture
def widgets_dir(write_migrations: WriteMigrations) -> Path:
    return write_migrations(WIDGETS)


@pytest.fixture
def fresh_dsn(make_database_on: Callable[..., str]) -> str:
    """A fresh, empty database, once on each backend (embedded, then docker)."""
    return make_database_on()


@pytest.fixture
def make_runner(fresh_dsn: str) -> Iterator[Callable[..., MigrationRunner]]:
    """Factory: a runner on a fresh database (on each backend) for a migrations directory."""
    runners: list[MigrationRunner] = []

    def make(directory: Path, **options: object) -> MigrationRunner:
        options.setdefault("retry_backoff", 0.05)
        runner = MigrationRunner(fresh_dsn, load_migrations(directory), **options)  # type: ignore[arg-type]
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.close()
