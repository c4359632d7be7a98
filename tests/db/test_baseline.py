"""db.baseline on real Postgres: a live database built by hand, with no history.

The "live" database gets plain DDL written the way a team's production schema
came to be (different spelling, no migration runner); the proof compares
catalogs, so only real differences count.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from core.errors import CannotRun, CheckFailed
from db.baseline import baseline
from db.migrations import load_migrations
from db.runner import MigrationRunner
from db.throwaway import ThrowawayPostgres

# What WIDGETS' 0001 and 0002 build, as someone typed it into psql years ago.
BY_HAND = """
create table public.widgets (
    id     bigint not null,
    name   text   not null,
    colour text,
    constraint widgets_pkey primary key (id)
);
create index widgets_colour_idx on public.widgets using btree (colour);
"""


def live_database(make_database: Callable[..., str], ddl: str = BY_HAND) -> str:
    dsn = make_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(ddl.encode())
    return dsn


def history(dsn: str, directory: Path) -> list[tuple[int, str, str]]:
    with MigrationRunner(dsn, load_migrations(directory)) as runner:
        return [(row.version, row.state, row.up_sha256) for row in runner.read_history()]


def test_a_matching_database_is_baselined_then_migrate_applies_only_what_follows(
    make_database_on: Callable[..., str], server: ThrowawayPostgres, widgets_dir: Path
) -> None:
    dsn = live_database(make_database_on)
    migrations = load_migrations(widgets_dir)

    report = baseline(dsn, server, migrations, 2)

    assert report.matches and report.recorded, [d.describe() for d in report.differences]
    assert report.migrations == ("0001_create_widgets", "0002_add_widget_colour")
    assert history(dsn, widgets_dir) == [
        (1, "applied", migrations[0].up.sha256),
        (2, "applied", migrations[1].up.sha256),
    ]
    with MigrationRunner(dsn, migrations) as runner:
        status = runner.status()
        assert status.healthy and status.current == 2
        run = runner.migrate()
    assert [step.label for step in run.executed] == ["0003_index_widget_name"]


def test_one_extra_column_refuses_naming_it_and_records_nothing(
    make_database_on: Callable[..., str], server: ThrowawayPostgres, widgets_dir: Path
) -> None:
    dsn = live_database(
        make_database_on, BY_HAND + "alter table public.widgets add column weight numeric;"
    )

    report = baseline(dsn, server, load_migrations(widgets_dir), 2)

    assert not report.matches and not report.recorded
    assert [d.name for d in report.differences] == ["public.widgets.weight"]
    assert "unexpected" in report.differences[0].describe()
    assert history(dsn, widgets_dir) == []
    with psycopg.connect(dsn) as conn:  # not even an empty history table
        assert conn.execute("SELECT to_regclass('public.schema_migrations')").fetchone() == (None,)


def test_baselining_at_the_wrong_version_is_a_difference(
    make_database: Callable[..., str], server: ThrowawayPostgres, widgets_dir: Path
) -> None:
    dsn = live_database(make_database)

    report = baseline(dsn, server, load_migrations(widgets_dir), 1)

    assert not report.recorded
    assert {d.name for d in report.differences} == {
        "public.widgets.colour",
        "public.widgets_colour_idx",
    }


def test_dry_run_proves_the_match_and_records_nothing(
    make_database: Callable[..., str], server: ThrowawayPostgres, widgets_dir: Path
) -> None:
    dsn = live_database(make_database)

    report = baseline(dsn, server, load_migrations(widgets_dir), 2, dry_run=True)

    assert report.matches and not report.recorded and report.dry_run
    assert history(dsn, widgets_dir) == []


def test_a_database_with_history_is_refused(
    make_database: Callable[..., str], server: ThrowawayPostgres, widgets_dir: Path
) -> None:
    dsn = make_database()
    migrations = load_migrations(widgets_dir)
    with MigrationRunner(dsn, migrations) as runner:
        runner.migrate(2)

    refused = r"already has Rollgate history \(2 row\(s\), up to 0002\)"
    with pytest.raises(CheckFailed, match=refused):
        baseline(dsn, server, migrations, 2)
    assert [row[0] for row in history(dsn, widgets_dir)] == [1, 2]


@pytest.mark.parametrize("version", [0, 4, 9999])
def test_an_unknown_version_cannot_run(
    empty_dsn: str, server: ThrowawayPostgres, widgets_dir: Path, version: int
) -> None:
    unknown = r"no migration has that version \(known: 0001, 0002, 0003\)"
    with pytest.raises(CannotRun, match=unknown):
        baseline(empty_dsn, server, load_migrations(widgets_dir), version)


def test_a_failing_verify_script_refuses(
    make_database: Callable[..., str],
    server: ThrowawayPostgres,
    write_migrations: Callable[[dict[str, tuple[str, str, str]]], Path],
) -> None:
    # The catalog matches, but the migration's own check of the data does not:
    # a verify script is part of what "applied" promises.
    directory = write_migrations(
        {
            "0001_seed_plans": (
                "CREATE TABLE plans (name text PRIMARY KEY);\nINSERT INTO plans VALUES ('free');",
                "DROP TABLE plans;",
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM plans WHERE name = 'free') "
                "THEN RAISE EXCEPTION 'plan free is missing'; END IF; END $$;",
            )
        }
    )
    dsn = live_database(make_database, "CREATE TABLE plans (name text PRIMARY KEY);")

    report = baseline(dsn, server, load_migrations(directory), 1)

    assert not report.recorded and not report.differences
    [failure] = report.verify_failures
    assert failure.startswith("0001_seed_plans: verify failed")
    assert "plan free is missing" in failure
    assert history(dsn, directory) == []
