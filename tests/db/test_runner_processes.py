"""Runners as real processes: eight at once, and runners killed at several points.

Each test drives ``python -m rollgate`` exactly as CI or an on-call engineer
would, then inspects the database the way the next run will find it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.db.conftest import MigrationSet, WriteMigrations

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def rollgate(
    *args: str, dsn: str, extra_env: dict[str, str] | None = None, **popen: Any
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(extra_env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "rollgate", *args, "--dsn", dsn],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        **popen,
    )


def run_rollgate(*args: str, dsn: str) -> tuple[int, str, str]:
    process = rollgate(*args, dsn=dsn)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def scalar(dsn: str, query: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query.encode()).fetchone()
    return None if row is None else row[0]


def runner_backends(dsn: str) -> int:
    count: int = scalar(
        dsn,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'rollgate%' "
        "AND datname = current_database()",
    )
    return count


def statement_running(dsn: str, fragment: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'rollgate' "
            "AND state = 'active' AND wait_event = 'PgSleep' AND query LIKE %s",
            (f"%{fragment}%",),
        ).fetchone()
    return row is not None


def kill_when_running(process: subprocess.Popen[str], dsn: str, fragment: str) -> None:
    try:
        wait_for(lambda: statement_running(dsn, fragment), f"the runner to reach {fragment!r}")
    except AssertionError:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"runner never reached {fragment!r}: {out}\n{err}") from None
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    # The server notices the dead client within client_connection_check_interval.
    wait_for(lambda: runner_backends(dsn) == 0, "the killed runner's sessions to end")


def history(dsn: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        return [
            (r[0], r[1])
            for r in conn.execute(
                "SELECT version, state FROM rollgate.schema_migrations ORDER BY 1"
            )
        ]


# --- eight concurrent runners -------------------------------------------------

LOGGED: MigrationSet = {
    "0001_create_apply_log": (
        "CREATE TABLE apply_log (migration text NOT NULL);\n"
        "INSERT INTO apply_log VALUES ('0001');\nSELECT pg_sleep(0.3);",
        "DROP TABLE apply_log;",
        "SELECT migration FROM apply_log WHERE false;",
    ),
    "0002_create_widgets": (
        "CREATE TABLE widgets (id bigint PRIMARY KEY, name text);\n"
        "INSERT INTO apply_log VALUES ('0002');",
        "DROP TABLE widgets;\nDELETE FROM apply_log WHERE migration = '0002';",
        "SELECT id FROM widgets WHERE false;",
    ),
    "0003_index_widget_name": (
        "-- rollgate: transaction=false\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS widgets_name_idx ON widgets (name);\n"
        "INSERT INTO apply_log VALUES ('0003');",
        "-- rollgate: transaction=false\nDROP INDEX CONCURRENTLY IF EXISTS widgets_name_idx;",
        "SELECT 1;",
    ),
}


def test_eight_concurrent_runners_apply_each_migration_exactly_once(
    write_migrations: WriteMigrations, fresh_dsn: str
) -> None:
    directory = write_migrations(LOGGED)
    runners = [
        rollgate("db", "migrate", "--migrations", str(directory), "--json", dsn=fresh_dsn)
        for _ in range(8)
    ]
    outputs = [p.communicate(timeout=120) for p in runners]
    results = [(p.returncode, out, err) for p, (out, err) in zip(runners, outputs, strict=True)]
    for code, _, err in results:
        assert code == 0, err
    executed = [len(json.loads(out)["result"]["executed"]) for _, out, _ in results]
    assert sorted(executed) == [0] * 7 + [3]  # one runner did all the work
    with psycopg.connect(fresh_dsn) as conn:
        counts = dict(
            conn.execute("SELECT migration, count(*) FROM apply_log GROUP BY 1").fetchall()
        )
    assert counts == {"0001": 1, "0002": 1, "0003": 1}
    assert history(fresh_dsn) == [(1, "applied"), (2, "applied"), (3, "applied")]


# --- killed runners -----------------------------------------------------------

# Test-only hook: migrations call pause_here('label'), which sleeps while a row
# for that label exists. The test removes the row before the next run.
PAUSE_SETUP = """
CREATE TABLE pause_at (label text PRIMARY KEY);
CREATE FUNCTION pause_here(wanted text, seconds float8 DEFAULT 60) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM public.pause_at WHERE label = wanted) THEN
        PERFORM pg_sleep(seconds);
    END IF;
END $$;
-- Index key that is slow to compute while pause_at holds 'build', so a
-- CONCURRENTLY build can be killed mid-way. Schema-qualified because index
-- builds run with search_path = pg_catalog, pg_temp (PostgreSQL 17+).
CREATE FUNCTION slow_key(value text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM public.pause_here('build', 0.2::float8);
    RETURN value;
END $$;
"""

KILLABLE: MigrationSet = {
    "0001_create_jobs": (
        "CREATE TABLE jobs (id bigint PRIMARY KEY, name text NOT NULL);\n"
        "INSERT INTO jobs SELECT g, 'job ' || g FROM generate_series(1, 200) AS g;",
        "DROP TABLE jobs;",
        "SELECT id, name FROM jobs WHERE false;",
    ),
    "0002_add_job_owner": (
        "ALTER TABLE jobs ADD COLUMN owner text;\n"
        "SELECT pause_here('0002');\n"
        "CREATE TABLE job_owners (name text PRIMARY KEY);",
        "DROP TABLE job_owners;\nALTER TABLE jobs DROP COLUMN owner;",
        "SELECT owner FROM jobs WHERE false;\nSELECT name FROM job_owners WHERE false;",
    ),
    "0003_index_job_name": (
        "-- rollgate: transaction=false\n"
        "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS tag text;\n"
        "SELECT pause_here('0003');\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_name_key_idx ON jobs (slow_key(name));",
        "-- rollgate: transaction=false\n"
        "DROP INDEX CONCURRENTLY IF EXISTS jobs_name_key_idx;\n"
        "ALTER TABLE jobs DROP COLUMN IF EXISTS tag;",
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c "
        "ON c.oid = i.indexrelid WHERE c.relname = 'jobs_name_key_idx' AND i.indisvalid) "
        "THEN RAISE EXCEPTION 'jobs_name_key_idx missing or invalid'; END IF; END $$;",
    ),
}


@pytest.fixture
def killable(write_migrations: WriteMigrations, fresh_dsn: str) -> Path:
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute(PAUSE_SETUP.encode())
    return write_migrations(KILLABLE)


def pause(dsn: str, *labels: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM pause_at")
        for label in labels:
            conn.execute("INSERT INTO pause_at VALUES (%s)", (label,))


def has_column(dsn: str, table: str, column: str) -> bool:
    return bool(
        scalar(
            dsn,
            f"SELECT count(*) FROM pg_attribute WHERE attrelid = '{table}'::regclass "
            f"AND attname = '{column}' AND NOT attisdropped",
        )
    )


def test_killed_inside_a_transactional_migration_leaves_no_trace(
    killable: Path, fresh_dsn: str
) -> None:
    pause(fresh_dsn, "0002")
    process = rollgate("db", "migrate", "--migrations", str(killable), dsn=fresh_dsn)
    kill_when_running(process, fresh_dsn, "pause_here('0002')")

    assert history(fresh_dsn) == [(1, "applied")]
    assert not has_column(fresh_dsn, "jobs", "owner")
    assert scalar(fresh_dsn, "SELECT to_regclass('job_owners')") is None

    pause(fresh_dsn)
    code, _, err = run_rollgate("db", "migrate", "--migrations", str(killable), dsn=fresh_dsn)
    assert code == 0, err
    assert history(fresh_dsn) == [(1, "applied"), (2, "applied"), (3, "applied")]


def test_killed_between_statements_outside_a_transaction_is_resumed(
    killable: Path, fresh_dsn: str
) -> None:
    pause(fresh_dsn, "0003")
    process = rollgate("db", "migrate", "--migrations", str(killable), dsn=fresh_dsn)
    kill_when_running(process, fresh_dsn, "pause_here('0003')")

    # History tells the truth: 0003 started and did not finish.
    assert history(fresh_dsn) == [(1, "applied"), (2, "applied"), (3, "applying")]
    assert has_column(fresh_dsn, "jobs", "tag")
    code, out, _ = run_rollgate(
        "db", "status", "--migrations", str(killable), "--json", dsn=fresh_dsn
    )
    assert code == 1
    assert json.loads(out)["result"]["healthy"] is False

    pause(fresh_dsn)
    code, out, err = run_rollgate(
        "db", "migrate", "--migrations", str(killable), "--json", dsn=fresh_dsn
    )
    assert code == 0, err
    executed = json.loads(out)["result"]["executed"]
    assert [(e["migration"], e["resumed"]) for e in executed] == [("0003_index_job_name", True)]
    assert history(fresh_dsn)[-1] == (3, "applied")


def test_killed_during_a_concurrent_index_build_is_repaired(killable: Path, fresh_dsn: str) -> None:
    code, _, err = run_rollgate(
        "db", "migrate", "--to", "2", "--migrations", str(killable), dsn=fresh_dsn
    )
    assert code == 0, err
    pause(fresh_dsn, "build")
    process = rollgate("db", "migrate", "--migrations", str(killable), dsn=fresh_dsn)
    kill_when_running(process, fresh_dsn, "CREATE INDEX CONCURRENTLY")

    invalid = scalar(
        fresh_dsn,
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = 'jobs_name_key_idx' AND NOT i.indisvalid",
    )
    assert invalid == 1, "a killed CONCURRENTLY build leaves an INVALID index"
    code, out, _ = run_rollgate(
        "db", "status", "--migrations", str(killable), "--json", dsn=fresh_dsn
    )
    assert code == 1
    assert json.loads(out)["result"]["invalid_indexes"] == ["public.jobs_name_key_idx"]

    pause(fresh_dsn)
    code, out, err = run_rollgate(
        "db", "migrate", "--migrations", str(killable), "--json", dsn=fresh_dsn
    )
    assert code == 0, err
    step = json.loads(out)["result"]["executed"][0]
    assert step["repairs"] == [
        "dropped INVALID index public.jobs_name_key_idx before rebuilding it"
    ]
    code, out, _ = run_rollgate(
        "db", "status", "--migrations", str(killable), "--json", dsn=fresh_dsn
    )
    assert code == 0 and json.loads(out)["result"]["invalid_indexes"] == []


def test_killed_while_waiting_for_the_lock_changes_nothing(killable: Path, fresh_dsn: str) -> None:
    from db.runner import MIGRATION_LOCK_KEY

    with psycopg.connect(fresh_dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        process = rollgate("db", "migrate", "--migrations", str(killable), dsn=fresh_dsn)
        wait_for(
            lambda: bool(
                scalar(
                    fresh_dsn,
                    # Between tries the runner asks who holds the lock: either
                    # query text says it is polling (both mention advisory locks).
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = 'rollgate' AND query LIKE '%advisory%'",
                )
            ),
            "the runner to start polling for the lock",
        )
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert scalar(fresh_dsn, "SELECT to_regclass('jobs')") is None
    code, _, err = run_rollgate("db", "migrate", "--migrations", str(killable), dsn=fresh_dsn)
    assert code == 0, err


def test_sigterm_inside_a_transactional_migration_rolls_back_and_exits_130(
    killable: Path, fresh_dsn: str
) -> None:
    pause(fresh_dsn, "0002")
    process = rollgate("db", "migrate", "--migrations", str(killable), dsn=fresh_dsn)
    wait_for(lambda: statement_running(fresh_dsn, "pause_here('0002')"), "the pause")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert history(fresh_dsn) == [(1, "applied")]
    assert not has_column(fresh_dsn, "jobs", "owner")


def test_sigterm_during_a_non_transactional_step_exits_130_and_is_resumable(
    killable: Path, fresh_dsn: str, tmp_path: Path
) -> None:
    crash_dir = tmp_path / "tmp"
    crash_dir.mkdir()
    pause(fresh_dsn, "0003")
    process = rollgate(
        "db",
        "migrate",
        "--migrations",
        str(killable),
        dsn=fresh_dsn,
        extra_env={"TMPDIR": str(crash_dir)},
    )
    wait_for(lambda: statement_running(fresh_dsn, "pause_here('0003')"), "the pause")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert "another command is already in progress" not in err
    assert list(crash_dir.glob("rollgate-crash-*")) == []
    # History says "started", and status says how to finish it.
    assert history(fresh_dsn) == [(1, "applied"), (2, "applied"), (3, "applying")]
    code, out, _ = run_rollgate("db", "status", "--migrations", str(killable), dsn=fresh_dsn)
    assert code == 1
    assert "run `rollgate db migrate` to finish" in out
    pause(fresh_dsn)
    code, _, err = run_rollgate("db", "migrate", "--migrations", str(killable), dsn=fresh_dsn)
    assert code == 0, err
    assert history(fresh_dsn)[-1] == (3, "applied")


def lock_holder(dsn: str) -> int | None:
    from db.runner import MIGRATION_LOCK_KEY

    pid: int | None = scalar(
        dsn,
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 "
        f"AND objid = {MIGRATION_LOCK_KEY} AND objsubid = 1 AND granted",
    )
    return pid


def test_a_runner_that_loses_its_lock_stops_and_one_runner_at_a_time_holds(
    killable: Path, fresh_dsn: str
) -> None:
    code, _, err = run_rollgate(
        "db", "migrate", "--to", "2", "--migrations", str(killable), dsn=fresh_dsn
    )
    assert code == 0, err
    pause(fresh_dsn, "build")
    first = rollgate("db", "migrate", "--migrations", str(killable), dsn=fresh_dsn)
    wait_for(
        lambda: statement_running(fresh_dsn, "CREATE INDEX CONCURRENTLY"),
        "the first runner's index build",
    )
    holder = lock_holder(fresh_dsn)
    assert holder is not None
    assert scalar(fresh_dsn, f"SELECT pg_terminate_backend({holder})") is True
    pause(fresh_dsn)  # an unguarded build would now finish quickly
    # Whoever ends the lock ends the work: nothing of the first runner still runs.
    wait_for(lambda: runner_backends(fresh_dsn) == 0, "the first runner's work to stop")
    _, err = first.communicate(timeout=60)
    assert first.returncode in (1, 2), err
    assert "lost the migration lock during 0003_index_job_name" in err
    assert "Traceback" not in err
    assert history(fresh_dsn)[-1] == (3, "applying")  # it wrote no history after the loss

    code, out, err = run_rollgate(
        "db", "migrate", "--migrations", str(killable), "--json", dsn=fresh_dsn
    )
    assert code == 0, err
    step = json.loads(out)["result"]["executed"][0]
    assert step["resumed"] is True
    assert history(fresh_dsn)[-1] == (3, "applied")
    assert (
        scalar(
            fresh_dsn,
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'jobs_name_key_idx'",
        )
        is True
    )
