"""The runner against real Postgres: history, refusals, failures, timeouts, repairs."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from db.errors import (
    HistoryMismatch,
    LockLost,
    LockNotAcquired,
    MigrationFailed,
    PlanChanged,
)
from db.migrations import BUNDLED_MIGRATIONS, Migration, load_migrations
from db.runner import MIGRATION_LOCK_KEY, MigrationRunner
from db.sqlfile import SqlScript, Statement
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
            "SELECT version, name, state FROM rollgate.schema_migrations ORDER BY version"
        ).fetchall()


def test_bundled_migrations_apply_and_record_history(
    make_runner: MakeRunner, fresh_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROLLGATE_ACTOR", "ci-job-1234")
    runner = make_runner(BUNDLED_MIGRATIONS)
    report = runner.migrate()
    assert (report.version_before, report.version_after) == (0, 5)
    assert set(tables(fresh_dsn)) >= {"customers", "orders", "execution_tasks", "payment_events"}
    assert columns(fresh_dsn, "execution_tasks")[-3:] == [
        "ai_model",
        "idempotency_key",
        "lease_expires_at",
    ]
    with psycopg.connect(fresh_dsn) as conn:
        rows = conn.execute(
            "SELECT version, name, state, up_sha256, down_sha256, verify_sha256, applied_at, "
            "duration_ms, applied_by FROM rollgate.schema_migrations ORDER BY version"
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
    assert report.dry_run and len(report.plan.steps) == 5
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
    assert tables(fresh_dsn) == []
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


# --- history lives in Rollgate's own schema ------------------------------------

FOREIGN_HISTORIES = {
    "golang-migrate": (
        "CREATE TABLE public.schema_migrations (version bigint NOT NULL PRIMARY KEY, "
        "dirty boolean NOT NULL);\nINSERT INTO public.schema_migrations VALUES (7, false);",
        "SELECT version, dirty FROM public.schema_migrations ORDER BY 1",
    ),
    "rails": (
        "CREATE TABLE public.schema_migrations (version character varying NOT NULL "
        "PRIMARY KEY);\nINSERT INTO public.schema_migrations VALUES ('20240101000000'), "
        "('20240202000000');",
        "SELECT version FROM public.schema_migrations ORDER BY 1",
    ),
    "view": (
        "CREATE VIEW public.schema_migrations AS SELECT 42 AS version, 'x'::text AS name;",
        "SELECT version, name FROM public.schema_migrations",
    ),
    "rollgate-like with an extra column": (
        "CREATE TABLE public.schema_migrations (version integer PRIMARY KEY, name text, "
        "state text, up_sha256 text, down_sha256 text, verify_sha256 text, "
        "applied_at timestamptz, duration_ms integer, applied_by text, owner text);\n"
        "INSERT INTO public.schema_migrations (version, owner) VALUES (5, 'someone else');",
        "SELECT version, owner FROM public.schema_migrations",
    ),
}


def run_sql(dsn: str, text: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(text.encode())


def fetch(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query.encode()).fetchall()


@pytest.mark.parametrize("shape", sorted(FOREIGN_HISTORIES))
def test_another_tools_schema_migrations_is_left_alone(
    make_runner: MakeRunner, widgets_dir: Path, fresh_dsn: str, shape: str
) -> None:
    create, read_back = FOREIGN_HISTORIES[shape]
    run_sql(fresh_dsn, create)
    before = fetch(fresh_dsn, read_back)
    runner = make_runner(widgets_dir)
    assert runner.status().current == 0  # the foreign table is not read as history
    report = runner.migrate()
    assert report.version_after == 3
    assert [r[2] for r in history(fresh_dsn)] == ["applied"] * 3
    assert runner.status().healthy
    assert fetch(fresh_dsn, read_back) == before  # untouched, same rows
    runner.revert(0)
    assert fetch(fresh_dsn, read_back) == before


def test_rollgates_legacy_public_history_is_adopted_under_the_lock(
    make_runner: MakeRunner, widgets_dir: Path, fresh_dsn: str
) -> None:
    make_runner(widgets_dir).migrate(target=1)
    # What an older Rollgate left behind: its history in public.schema_migrations.
    run_sql(
        fresh_dsn,
        "ALTER TABLE rollgate.schema_migrations SET SCHEMA public; DROP SCHEMA rollgate;",
    )
    runner = make_runner(widgets_dir)
    assert runner.status().current == 1  # read where it is, changing nothing
    assert fetch(fresh_dsn, "SELECT to_regclass('public.schema_migrations')::text") == [
        ("schema_migrations",)
    ]
    messages: list[str] = []
    runner.progress = messages.append
    report = runner.migrate()
    assert (report.version_before, report.version_after) == (1, 3)
    assert any("moved Rollgate's history from public.schema_migrations" in m for m in messages)
    assert fetch(fresh_dsn, "SELECT to_regclass('public.schema_migrations')") == [(None,)]
    assert [r[0] for r in history(fresh_dsn)] == [1, 2, 3]


@pytest.mark.parametrize(
    "occupant",
    [
        "CREATE VIEW rollgate.schema_migrations AS SELECT 1 AS version",
        "CREATE TABLE rollgate.schema_migrations (version bigint, dirty boolean)",
    ],
)
def test_a_foreign_object_in_rollgates_place_is_refused_by_name(
    make_runner: MakeRunner, widgets_dir: Path, fresh_dsn: str, occupant: str
) -> None:
    run_sql(fresh_dsn, f"CREATE SCHEMA rollgate; {occupant}")
    runner = make_runner(widgets_dir)
    for attempt in (runner.status, runner.migrate):
        with pytest.raises(HistoryMismatch, match=r"rollgate\.schema_migrations is a") as caught:
            attempt()
        assert "not Rollgate's migration history" in caught.value.message
    assert tables(fresh_dsn) == []  # nothing ran


# --- history never lies ----------------------------------------------------------


def hand_made_script(path: Path, text: str, *, transactional: bool = True) -> SqlScript:
    """A script built without the loader, as if transaction control slipped past it."""
    statements = []
    offset = 0
    for line_number, line in enumerate(text.splitlines(keepends=True), start=1):
        if line.strip():
            statements.append(Statement(line.strip(), offset, line_number, 1))
        offset += len(line)
    return SqlScript(
        path=path,
        text=text,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        statements=tuple(statements),
        transactional=transactional,
    )


def hand_made_migration(
    tmp_path: Path, label: str, scripts: tuple[str, str, str], *, transactional: bool = True
) -> Migration:
    version, name = label.split("_", 1)
    up, down, verify = scripts
    return Migration(
        int(version),
        name,
        hand_made_script(tmp_path / f"{label}.up.sql", up, transactional=transactional),
        hand_made_script(tmp_path / f"{label}.down.sql", down, transactional=transactional),
        hand_made_script(tmp_path / f"{label}.verify.sql", verify),
    )


ESCAPES = {
    # sqitch habit: a verify script that ends in ROLLBACK undoes the migration's DDL.
    "verify ends in ROLLBACK": (
        "CREATE TABLE gadgets (id int);\n",
        "SELECT id FROM gadgets WHERE false;\nROLLBACK;\n",
        True,
    ),
    "up commits midway": ("CREATE TABLE gadgets (id int);\nCOMMIT;\n", "SELECT 1;\n", True),
    "up commits and chains": (
        "CREATE TABLE gadgets (id int);\nCOMMIT AND CHAIN;\n",
        "SELECT 1;\n",
        True,
    ),
    "verify of a non-transactional file rolls back": (
        "CREATE TABLE IF NOT EXISTS gadgets (id int);\n",
        "SELECT 1;\nROLLBACK;\n",
        False,
    ),
    "a procedure commits": (
        "CREATE TABLE gadgets (id int);\nCALL commit_for_me();\n",
        "SELECT 1;\n",
        True,
    ),
}


@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_no_history_is_written_when_a_file_ended_the_runners_transaction(
    fresh_dsn: str, tmp_path: Path, escape: str
) -> None:
    up, verify, transactional = ESCAPES[escape]
    run_sql(
        fresh_dsn,
        "CREATE PROCEDURE commit_for_me() LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;",
    )
    first = hand_made_migration(
        tmp_path,
        "0001_create_parts",
        ("CREATE TABLE parts (id int);\n", "DROP TABLE parts;\n", "SELECT 1;\n"),
    )
    second = hand_made_migration(
        tmp_path,
        "0002_create_gadgets",
        (up, "DROP TABLE IF EXISTS gadgets;\n", verify),
        transactional=transactional,
    )
    with MigrationRunner(fresh_dsn, [first, second]) as runner:
        with pytest.raises(MigrationFailed, match="0002_create_gadgets") as caught:
            runner.migrate()
        status = runner.status()
    if escape == "a procedure commits":
        # Inside the runner's transaction block the server itself refuses the COMMIT.
        assert "invalid transaction termination" in caught.value.message
    else:
        assert "ended the transaction the runner opened" in caught.value.message
        assert "nothing was recorded" in caught.value.message
    # History claims only what is true: 0002 is not recorded as applied.
    assert [(r[0], r[2]) for r in history(fresh_dsn)] == [(1, "applied")] or (
        not transactional and history(fresh_dsn)[-1] == (2, "create_gadgets", "applying")
    )
    assert status.current == 1
    if not transactional:
        assert not status.healthy  # interrupted, and status says so


@pytest.mark.parametrize("transactional", [True, False], ids=["in-transaction", "no-transaction"])
@pytest.mark.parametrize(
    "tamper",
    [
        "DO $$ BEGIN EXECUTE 'DROP TABLE rollgate.schema_migrations'; END $$;",
        "DO $$ BEGIN EXECUTE 'DELETE FROM rollgate.schema_migrations'; END $$;",
        "DO $$ BEGIN EXECUTE 'DROP SCHEMA rollgate CASCADE'; END $$;",
        "DO $$ BEGIN EXECUTE 'DROP TABLE rollgate.schema_migrations'; END $$;\nSELECT 1/0;",
    ],
    ids=["drop-table", "delete-rows", "drop-schema", "drop-then-fail"],
)
def test_a_migration_that_touches_the_history_fails_and_status_is_never_healthy(
    make_runner: MakeRunner,
    write_migrations: WriteMigrations,
    fresh_dsn: str,
    tamper: str,
    transactional: bool,
) -> None:
    directive = "" if transactional else "-- rollgate: transaction=false\n"
    sneaky = dict(WIDGETS)
    sneaky["0002_add_widget_colour"] = (
        directive + "ALTER TABLE widgets ADD COLUMN IF NOT EXISTS colour text;\n" + tamper,
        directive + "ALTER TABLE widgets DROP COLUMN IF EXISTS colour;",
        "SELECT colour FROM widgets WHERE false;",
    )
    runner = make_runner(write_migrations(sneaky))
    runner.migrate(target=1)
    expected = r"0002_add_widget_colour: rollgate\.schema_migrations no longer"
    if transactional and "1/0" in tamper:
        expected = r"0002_add_widget_colour\.up\.sql:3:.*division by zero"  # all rolled back
    with pytest.raises(MigrationFailed, match=expected):
        runner.migrate()
    status = make_runner(write_migrations(sneaky)).status()
    assert status.migrations[0].state == "applied"
    if transactional:
        # Rolled back with the migration: history is as it was, 0002 still pending.
        assert [m.state for m in status.migrations] == ["applied", "pending", "pending"]
    else:
        # Committed damage: the runner wrote back what it knew, 0002 as interrupted.
        assert [m.state for m in status.migrations] == ["applied", "applying", "pending"]
        assert not status.healthy


def test_a_script_that_releases_the_lock_stops_the_run(
    make_runner: MakeRunner, write_migrations: WriteMigrations, fresh_dsn: str
) -> None:
    unlocking = dict(WIDGETS)
    unlocking["0003_index_widget_name"] = (
        "-- rollgate: transaction=false\nSELECT pg_advisory_unlock_all();\n"
        "CREATE TABLE after_unlock (id int);",
        "-- rollgate: transaction=false\nDROP TABLE IF EXISTS after_unlock;",
        "SELECT 1;",
    )
    runner = make_runner(write_migrations(unlocking))
    with pytest.raises(LockLost, match="lost the migration lock during 0003_index_widget_name"):
        runner.migrate()
    assert "after_unlock" not in tables(fresh_dsn)  # the next statement never ran
    assert history(fresh_dsn)[-1] == (3, "index_widget_name", "applying")


# --- exactly the confirmed plan --------------------------------------------------


def test_revert_refuses_when_the_plan_changed_after_it_was_confirmed(
    make_runner: MakeRunner, widgets_dir: Path, fresh_dsn: str
) -> None:
    runner = make_runner(widgets_dir)
    runner.migrate(target=2)
    confirmed = runner.revert(1, dry_run=True).plan
    assert [s.migration.version for s in confirmed.steps] == [2]
    make_runner(widgets_dir).migrate()  # meanwhile, someone applies 0003
    with pytest.raises(PlanChanged, match="the database changed since you confirmed the plan"):
        runner.revert(1, expected_plan=confirmed.fingerprint())
    assert [r[0] for r in history(fresh_dsn)] == [1, 2, 3]  # nothing changed
    assert columns(fresh_dsn, "widgets") == ["id", "name", "colour"]
    # The plan that was confirmed still runs while nothing moves.
    again = runner.revert(1, dry_run=True).plan
    runner.revert(1, expected_plan=again.fingerprint())
    assert [r[0] for r in history(fresh_dsn)] == [1]


def test_revert_command_runs_only_the_plan_the_person_confirmed(
    make_runner: MakeRunner, widgets_dir: Path, fresh_dsn: str
) -> None:
    from rollgate.commands import Options
    from rollgate.commands import db as db_commands

    make_runner(widgets_dir).migrate(target=2)
    questions: list[str] = []

    def confirm_while_another_runner_migrates(question: str) -> bool:
        questions.append(question)
        make_runner(widgets_dir).migrate()  # 0003 lands while the prompt is open
        return True

    opts = Options(
        dsn=fresh_dsn,
        migrations_dir=widgets_dir,
        schema_path=widgets_dir / "schema.sql",
        confirm=confirm_while_another_runner_migrates,
    )
    with pytest.raises(PlanChanged) as caught:
        db_commands.revert(opts, to=1, dry_run=False, yes=False, lock_wait=5)
    assert "Revert 1 migration(s)" in questions[0]
    assert "revert 0003_index_widget_name" in caught.value.message  # the plan it would be now
    assert [r[0] for r in history(fresh_dsn)] == [1, 2, 3]


def test_migrate_with_a_stale_plan_fingerprint_applies_nothing(
    make_runner: MakeRunner, widgets_dir: Path, fresh_dsn: str
) -> None:
    runner = make_runner(widgets_dir)
    planned = runner.migrate(target=2, dry_run=True).plan.fingerprint()
    make_runner(widgets_dir).migrate(target=1)
    with pytest.raises(PlanChanged):
        runner.migrate(target=2, expected_plan=planned)
    assert [r[0] for r in history(fresh_dsn)] == [1]
    fresh_plan = runner.migrate(target=2, dry_run=True).to_dict()["plan_fingerprint"]
    assert runner.migrate(target=2, expected_plan=fresh_plan).version_after == 2


# --- every migration starts from a clean session ---------------------------------

LEAKY: dict[str, tuple[str, str, str]] = {
    "0001_create_s3": (
        "CREATE SCHEMA s3;\nCREATE TABLE widgets (id int);",
        "DROP TABLE widgets;\nDROP SCHEMA s3;",
        "SELECT 1;",
    ),
    "0002_set_path_outside_transaction": (
        "-- rollgate: transaction=false\nSET search_path TO s3;",
        "-- rollgate: transaction=false\nSELECT 1;",
        "SELECT 1;",
    ),
    "0003_create_c": ("CREATE TABLE c (id int);", "DROP TABLE c;", "SELECT 1;"),
    "0004_set_session_state_in_transaction": (
        "SET search_path TO s3;\nSET ROLE NONE;\nCREATE TEMP TABLE widgets (shadow int);\n"
        "CREATE TABLE public.d (id int);",
        "DROP TABLE public.d;",
        "SELECT 1;",
    ),
    "0005_create_e": (
        "CREATE TABLE e (id int);\nINSERT INTO widgets VALUES (1);",
        "DELETE FROM widgets;\nDROP TABLE e;",
        "SELECT 1;",
    ),
}


def user_tables(dsn: str) -> list[tuple[str, str]]:
    return [
        (r[0], r[1])
        for r in fetch(
            dsn,
            "SELECT schemaname::text, tablename::text FROM pg_tables "
            "WHERE schemaname IN ('public', 's3') AND tablename <> 'schema_migrations' "
            "ORDER BY 1, 2",
        )
    ]


def test_session_settings_never_leak_into_the_next_migration(
    write_migrations: WriteMigrations, make_database_on: Callable[..., str]
) -> None:
    migrations = load_migrations(write_migrations(LEAKY))
    all_at_once, in_stages = make_database_on(), make_database_on()
    with MigrationRunner(all_at_once, migrations) as runner:
        runner.migrate()
    for target in (2, 4, None):
        with MigrationRunner(in_stages, migrations) as runner:
            runner.migrate(target)
    assert user_tables(all_at_once) == user_tables(in_stages)
    assert user_tables(all_at_once) == [
        ("public", "c"),
        ("public", "d"),
        ("public", "e"),
        ("public", "widgets"),
    ]
    assert fetch(all_at_once, "SELECT id FROM public.widgets") == [(1,)]  # not the temp one


# --- missing privileges are named, exit 2 -------------------------------------


@pytest.fixture
def make_role(fresh_dsn: str) -> Iterator[Callable[[str], str]]:
    """Factory: a LOGIN role with ``grants`` (SQL run as the owner); returns its DSN."""
    created: list[str] = []

    def make(grants: str) -> str:
        role = f"reader_{secrets.token_hex(3)}"
        created.append(role)
        run_sql(fresh_dsn, f"CREATE ROLE {role} LOGIN PASSWORD 'pw'; " + grants.format(role=role))
        params = conninfo_to_dict(fresh_dsn)
        params.update(user=role, password="pw")
        return make_conninfo(**params)  # type: ignore[arg-type]

    yield make
    for role in created:
        with psycopg.connect(fresh_dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            conn.execute(f"DROP OWNED BY {role}; DROP ROLE {role}".encode())


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from rollgate.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_role_that_cannot_create_the_history_gets_exit_2_naming_the_privilege(
    capsys: pytest.CaptureFixture[str],
    widgets_dir: Path,
    make_role: Callable[[str], str],
    fresh_dsn: str,
) -> None:
    dsn = make_role("")
    code, _, err = cli(capsys, "db", "migrate", "--migrations", str(widgets_dir), "--dsn", dsn)
    assert code == 2, err
    assert "permission denied for database" in err
    assert "cannot create Rollgate's history" in err and "GRANT CREATE ON DATABASE" in err
    assert "bug" not in err and "Traceback" not in err
    assert tables(fresh_dsn) == []


def test_a_select_only_role_gets_exit_2_for_migrate_and_revert(
    capsys: pytest.CaptureFixture[str],
    make_runner: MakeRunner,
    widgets_dir: Path,
    make_role: Callable[[str], str],
    fresh_dsn: str,
) -> None:
    make_runner(widgets_dir).migrate(target=2)
    dsn = make_role(
        "GRANT USAGE ON SCHEMA rollgate TO {role}; "
        "GRANT SELECT ON ALL TABLES IN SCHEMA rollgate, public TO {role};"
    )
    code, _, err = cli(capsys, "db", "status", "--migrations", str(widgets_dir), "--dsn", dsn)
    assert code == 0, err  # reading is all status needs
    for argv in (("migrate",), ("revert", "--to", "1", "--yes")):
        code, _, err = cli(capsys, "db", *argv, "--migrations", str(widgets_dir), "--dsn", dsn)
        assert code == 2, err
        assert "permission denied for table rollgate.schema_migrations" in err
        assert "missing INSERT, UPDATE, DELETE" in err and "or run as the migration owner" in err
    assert [r[0] for r in history(fresh_dsn)] == [1, 2]


def test_a_migration_the_role_may_not_run_is_exit_2_naming_file_and_privilege(
    capsys: pytest.CaptureFixture[str],
    make_runner: MakeRunner,
    widgets_dir: Path,
    make_role: Callable[[str], str],
) -> None:
    make_runner(widgets_dir).migrate(target=1)
    dsn = make_role(
        "GRANT USAGE ON SCHEMA rollgate TO {role}; "
        "GRANT SELECT, INSERT, UPDATE, DELETE ON rollgate.schema_migrations TO {role};"
    )
    code, _, err = cli(capsys, "db", "migrate", "--migrations", str(widgets_dir), "--dsn", dsn)
    assert code == 2, err
    assert "0002_add_widget_colour.up.sql:1:" in err and "must be owner of table widgets" in err
    assert "lacks a privilege that 0002_add_widget_colour needs" in err


def test_a_role_that_cannot_read_the_history_gets_exit_2_from_status(
    capsys: pytest.CaptureFixture[str],
    make_runner: MakeRunner,
    widgets_dir: Path,
    make_role: Callable[[str], str],
) -> None:
    make_runner(widgets_dir).migrate(target=1)
    dsn = make_role("")
    code, _, err = cli(capsys, "db", "status", "--migrations", str(widgets_dir), "--dsn", dsn)
    assert code == 2, err
    assert "permission denied for schema rollgate" in err
    assert "cannot read Rollgate's history" in err


def test_migrate_plan_fingerprint_flag_pins_the_reviewed_plan(
    capsys: pytest.CaptureFixture[str], make_runner: MakeRunner, widgets_dir: Path, fresh_dsn: str
) -> None:
    import json

    base = ("--migrations", str(widgets_dir), "--dsn", fresh_dsn)
    code, out, _ = cli(capsys, "--json", "db", "migrate", "--dry-run", "--to", "2", *base)
    assert code == 0
    reviewed = json.loads(out)["result"]["plan_fingerprint"]
    make_runner(widgets_dir).migrate(target=1)  # the database moves on after the review
    code, _, err = cli(capsys, "db", "migrate", "--to", "2", "--plan-fingerprint", reviewed, *base)
    assert code == 1
    assert "the database changed since you confirmed the plan" in err
    assert [r[0] for r in history(fresh_dsn)] == [1]


def test_a_transactional_migration_records_its_own_transaction_id(
    make_runner: MakeRunner, fresh_dsn: str, write_migrations: WriteMigrations
) -> None:
    """Replay after a restore skips the migrations' own row changes by these ids."""
    marked = {
        "0001_create_marks": (
            # The migration notes its own (top-level) transaction id as it runs.
            "CREATE TABLE marks AS SELECT pg_current_xact_id()::text::bigint AS xid;",
            "DROP TABLE marks;",
            "SELECT xid FROM marks WHERE false;",
        )
    }
    runner = make_runner(write_migrations(marked))
    runner.migrate()
    with psycopg.connect(fresh_dsn) as conn:
        ran_in = conn.execute("SELECT xid FROM marks").fetchone()[0]
    assert runner.applied_xids() == {1: ran_in}


def test_history_without_the_xid_column_gains_it(
    make_runner: MakeRunner, fresh_dsn: str, write_migrations: WriteMigrations
) -> None:
    directory = write_migrations(WIDGETS)
    make_runner(directory).migrate(1)
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE rollgate.schema_migrations DROP COLUMN xid")
    runner = make_runner(directory)
    runner.migrate()
    assert 2 in runner.applied_xids() and 1 not in runner.applied_xids()
