"""``rollgate sample`` against real Postgres: rows e, g, h and q of issue 6.

* e: a role that may only SELECT is refused with exit 2, naming the privileges.
* g: a backend terminated mid-run is exit 2 "lost the connection", not a bug.
* h: a second run while one is going is refused (exit 1) before it writes,
  and the data equals a single run with the same seed.
* q: a target above the cap or above the server's free disk is refused up front.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from core.sizes import parse_size
from db.sample import TABLES, generate_sample
from tests.rollgate.conftest import ROOT, run

# Per-table content checksums: every column of every row, in id order.
CHECKSUMS = " UNION ALL ".join(
    f"SELECT '{table}', count(*), md5(string_agg(t::text, E'\\n' ORDER BY t.id)) FROM {table} t"
    for table in TABLES
)


def rollgate(*argv: str, **options: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rollgate", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        **options,
    )


def scalar(dsn: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query.encode(), params).fetchone()
    return None if row is None else row[0]


def without_autovacuum(dsn: str) -> str:
    """Autovacuum could nudge a measured size and move a stop decision by a batch."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)".encode())
    return dsn


# --- e: privileges --------------------------------------------------------------


@pytest.fixture
def reader_dsn(migrated_dsn: str) -> Iterator[str]:
    """The migrated database as a role that may only SELECT from its tables."""
    role = f"reader_{os.getpid()}"
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN".encode())
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}".encode())
    try:
        yield make_conninfo(migrated_dsn, user=role)
    finally:
        with psycopg.connect(migrated_dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}".encode())
            conn.execute(f"DROP ROLE {role}".encode())


def test_a_select_only_role_is_refused_naming_the_privileges(
    capsys: pytest.CaptureFixture[str], reader_dsn: str
) -> None:
    code, out, _ = run(capsys, "--json", "sample", "--size", "1MB", "--dsn", reader_dsn)
    assert code == 2
    error = json.loads(out)["error"]
    assert "lacks INSERT on public.customers, public.orders" in error["message"]
    assert "GRANT SELECT, INSERT ON customers" in error["message"]
    assert error["details"]["missing_privileges"] == [
        "INSERT on public.customers, public.orders, public.execution_tasks, public.payment_events"
    ]
    assert scalar(reader_dsn, "SELECT count(*) FROM customers") == 0


def test_any_permission_denied_from_the_database_is_exit_2(
    capsys: pytest.CaptureFixture[str], reader_dsn: str
) -> None:
    # The runner names the privilege it lacks itself (PrivilegeMissing); either
    # way a missing privilege is "could not run", exit 2, never a bug.
    code, _, err = run(capsys, "db", "revert", "--to", "1", "--yes", "--dsn", reader_dsn)
    assert code == 2, err
    assert "permission denied" in err and "GRANT" in err


# --- g: the backend goes away -------------------------------------------------------


def terminate_sample_backend(dsn: str, *, only_when_active: bool) -> int:
    """Terminate the sample's session once it shows up (busy, if asked); return its pid."""
    database = conninfo_to_dict(dsn)["dbname"]
    state = "AND state = 'active' " if only_when_active else ""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(3000):  # polls for at most ~60 s, then gives up
            row = conn.execute(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = %s AND application_name = 'rollgate' {state}"
                "AND pid <> pg_backend_pid() LIMIT 1".encode(),
                (database,),
            ).fetchone()
            if row is not None:
                return int(row[0])
            time.sleep(0.02)
    raise AssertionError("the sample's session never showed up")


def test_a_terminated_backend_mid_run_is_exit_2(
    capsys: pytest.CaptureFixture[str], migrated_dsn: str
) -> None:
    killer = threading.Thread(
        target=terminate_sample_backend, args=(migrated_dsn,), kwargs={"only_when_active": True}
    )
    killer.start()
    try:
        code, out, err = run(capsys, "--json", "sample", "--size", "200MB", "--dsn", migrated_dsn)
    finally:
        killer.join()
    assert code == 2, err
    error = json.loads(out)["error"]
    assert error["message"].startswith("lost the connection to the database: ")
    # admin_shutdown when the termination lands mid-statement; between statements the
    # client only sees the socket close, and libpq reports no SQLSTATE (found by CI).
    assert error["details"].get("sqlstate") in ("57P01", None)
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_sample_process_whose_backend_is_terminated_exits_2(migrated_dsn: str) -> None:
    child = rollgate("sample", "--size", "200MB", "--dsn", migrated_dsn)
    assert child.stderr is not None
    for line in child.stderr:  # wait until a batch has committed: truly mid-run
        if line.startswith("rollgate: sample batch"):
            break
    terminate_sample_backend(migrated_dsn, only_when_active=False)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 2, err
    assert "FAILED: lost the connection to the database: terminating connection" in err
    assert "Traceback" not in err
    assert scalar(migrated_dsn, "SELECT count(*) FROM customers") > 0  # batches before it stay


# --- h: two runs at once --------------------------------------------------------


@pytest.mark.slow
def test_a_second_concurrent_run_is_refused_and_the_data_equals_one_run(
    make_database: Any, migrated_template: str
) -> None:
    shared = without_autovacuum(make_database(template=migrated_template))
    alone = without_autovacuum(make_database(template=migrated_template))
    database = conninfo_to_dict(shared)["dbname"]
    with psycopg.connect(shared) as blocker:
        # Hold the first run at its first INSERT, after it took the sample lock.
        blocker.execute("LOCK TABLE customers IN SHARE MODE")
        first = rollgate("--json", "sample", "--size", "4MB", "--seed", "7", "--dsn", shared)
        for _ in range(3000):
            waiting = scalar(
                shared,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND application_name = 'rollgate' AND wait_event_type = 'Lock'",
                (database,),
            )
            if waiting or first.poll() is not None:
                break
            time.sleep(0.02)
        second = rollgate("--json", "sample", "--size", "4MB", "--seed", "7", "--dsn", shared)
        second_out, second_err = second.communicate(timeout=120)
    first_out, first_err = first.communicate(timeout=300)

    assert first.returncode == 0, first_err
    assert second.returncode == 1, second_err
    refusal = json.loads(second_out)["error"]["message"]
    assert refusal.startswith("another sample run holds the sample lock on this database")
    assert "nothing was written" in refusal

    until = datetime.fromisoformat(json.loads(first_out)["result"]["until"])
    with psycopg.connect(alone, autocommit=True) as conn:
        generate_sample(conn, parse_size("4MB"), seed=7, until=until)
    with psycopg.connect(shared) as a, psycopg.connect(alone) as b:
        assert a.execute(CHECKSUMS).fetchall() == b.execute(CHECKSUMS).fetchall()


# --- q: too big for the cap or the disk ---------------------------------------------


def test_a_target_above_the_cap_is_refused_before_writing(migrated_dsn: str) -> None:
    # A real process with a deadline: the old code started writing a terabyte.
    child = rollgate("--json", "sample", "--size", "1TB", "--dsn", migrated_dsn)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 1, err
    error = json.loads(out)["error"]
    assert error["message"].startswith(
        "refusing to add sample data: the target 1024.0 GB is above the cap of 10.0 GB"
    )
    assert "--max-size" in error["message"]
    assert scalar(migrated_dsn, "SELECT count(*) FROM customers") == 0


def test_a_target_above_the_servers_free_disk_is_refused_before_writing(
    migrated_dsn: str,
) -> None:
    child = rollgate(
        "--json", "sample", "--size", "100TB", "--max-size", "1000TB", "--dsn", migrated_dsn
    )
    out, err = child.communicate(timeout=120)
    assert child.returncode == 1, err
    error = json.loads(out)["error"]
    assert "free on the server's disk" in error["message"]
    assert "nothing was written" in error["message"]
    details = error["details"]
    assert 0 < details["free_bytes"] < details["needed_bytes"]
    assert scalar(migrated_dsn, "SELECT count(*) FROM customers") == 0


def test_the_report_says_what_was_known_about_the_disk(
    capsys: pytest.CaptureFixture[str], migrated_dsn: str
) -> None:
    code, out, _ = run(capsys, "--json", "sample", "--size", "512kB", "--dsn", migrated_dsn)
    assert code == 0
    disk = json.loads(out)["result"]["server_disk"]
    data_directory = scalar(migrated_dsn, "SHOW data_directory")
    assert disk["directory"] == data_directory and disk["free_bytes"] > disk["needed_bytes"]
    code, out, _ = run(capsys, "sample", "--size", "1MB", "--dsn", migrated_dsn)
    assert code == 0 and "  server disk: " in out and "MB free before the run" in out
