"""The CLI without --dsn or DATABASE_URL: libpq's PG* variables (the ECS tasks' way)."""

from __future__ import annotations

import json

import pytest
from psycopg.conninfo import conninfo_to_dict

from rollgate.commands import libpq_environment_dsn
from tests.conftest import MakeDatabase
from tests.rollgate.conftest import run

_LIBPQ_VARIABLES = ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSERVICE")


@pytest.fixture
def no_database_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for name in _LIBPQ_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_db_status_reads_the_libpq_variables(
    capsys: pytest.CaptureFixture[str],
    make_database: MakeDatabase,
    no_database_environment: pytest.MonkeyPatch,
) -> None:
    # Only PG* variables, as the migrate and audit task definitions set them.
    parts = conninfo_to_dict(make_database())
    for name, key in (
        ("PGHOST", "host"),
        ("PGPORT", "port"),
        ("PGUSER", "user"),
        ("PGDATABASE", "dbname"),
        ("PGPASSWORD", "password"),
    ):
        if parts.get(key):
            no_database_environment.setenv(name, str(parts[key]))
    code, out, err = run(capsys, "--json", "db", "status")
    assert code == 0, err
    assert json.loads(out)["ok"] is True


def test_without_dsn_and_without_libpq_host_there_is_no_database(
    capsys: pytest.CaptureFixture[str], no_database_environment: pytest.MonkeyPatch
) -> None:
    # A user name alone must not mean "the local socket's database".
    no_database_environment.setenv("PGUSER", "app")
    code, _, err = run(capsys, "db", "status")
    assert code == 2
    assert err.startswith("FAILED: no database given")
    assert len(err.strip().splitlines()) == 1


def test_an_empty_dsn_is_still_a_usage_error_with_libpq_variables(
    capsys: pytest.CaptureFixture[str], no_database_environment: pytest.MonkeyPatch
) -> None:
    no_database_environment.setenv("PGHOST", "127.0.0.1")
    code, _, err = run(capsys, "db", "status", "--dsn", "")
    assert code == 2
    assert "must not be empty" in err


def test_the_libpq_password_stays_out_of_the_conninfo() -> None:
    dsn = libpq_environment_dsn({"PGHOST": "db.internal", "PGPASSWORD": "hunter2"})
    assert dsn is not None and "hunter2" not in dsn
    assert conninfo_to_dict(dsn) == {"host": "db.internal"}
    assert libpq_environment_dsn({"PGSERVICE": "rollgate"}) == "service=rollgate"
    assert libpq_environment_dsn({"PGUSER": "app"}) is None
