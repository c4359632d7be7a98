"""``rollgate db bootstrap-roles``: variables from the migrate task's environment, exit codes."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from db.throwaway import ThrowawayPostgres, create_database, drop_database
from infra import outputs
from tests.db.test_roles import owner_may_grant_the_groups
from tests.rollgate.conftest import run

APP_PASSWORD = "cli-app-pässword-'\\\"-0123"
AUDIT_PASSWORD = "cli-audit-password-4567"


@pytest.fixture
def owner_database(docker_server: ThrowawayPostgres) -> Iterator[str]:
    owner_may_grant_the_groups(docker_server)
    name = f"cli_roles_{secrets.token_hex(3)}"
    yield create_database(docker_server, name, owner=True)
    drop_database(docker_server, name)


@pytest.fixture
def role_env(
    monkeypatch: pytest.MonkeyPatch, docker_server: ThrowawayPostgres
) -> Iterator[dict[str, str]]:
    suffix = secrets.token_hex(3)
    env = {
        outputs.SECRET_DB_APP_USER: f"cli_app_{suffix}",
        outputs.SECRET_DB_APP_PASSWORD: APP_PASSWORD,
        outputs.SECRET_DB_AUDIT_USER: f"cli_audit_{suffix}",
        outputs.SECRET_DB_AUDIT_PASSWORD: AUDIT_PASSWORD,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield env
    with psycopg.connect(docker_server.dsn(), autocommit=True) as conn:
        for user in (env[outputs.SECRET_DB_APP_USER], env[outputs.SECRET_DB_AUDIT_USER]):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))


@pytest.mark.docker
def test_bootstrap_then_migrate_then_bootstrap_again_changes_nothing(
    capsys: pytest.CaptureFixture[str], owner_database: str, role_env: dict[str, str]
) -> None:
    code, out, err = run(capsys, "db", "bootstrap-roles", "--dsn", owner_database)
    assert code == 0, err
    assert (
        f"{role_env[outputs.SECRET_DB_APP_USER]} (app, member of rollgate_writer): created" in out
    )
    assert run(capsys, "db", "migrate", "--dsn", owner_database)[0] == 0
    code, out, err = run(capsys, "--json", "db", "bootstrap-roles", "--dsn", owner_database)
    assert code == 0, err
    result = json.loads(out)["result"]
    assert result["changed"] is False
    assert [r["changes"] for r in result["roles"]] == [[], []]
    code, out, _ = run(capsys, "db", "bootstrap-roles", "--dsn", owner_database)
    assert code == 0 and "nothing to change: roles already as wanted" in out
    with psycopg.connect(
        owner_database,
        user=role_env[outputs.SECRET_DB_APP_USER],
        password=APP_PASSWORD,
        autocommit=True,
    ) as conn:
        conn.execute("INSERT INTO customers (name, email) VALUES ('a', 'a@example.com')")


@pytest.mark.parametrize(
    "variable",
    [
        outputs.SECRET_DB_APP_USER,
        outputs.SECRET_DB_APP_PASSWORD,
        outputs.SECRET_DB_AUDIT_USER,
        outputs.SECRET_DB_AUDIT_PASSWORD,
    ],
)
def test_a_missing_variable_exits_2_naming_it_never_a_password(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    migrated_dsn: str,
    variable: str,
) -> None:
    monkeypatch.setenv(outputs.SECRET_DB_APP_USER, "cli_app_missing")
    monkeypatch.setenv(outputs.SECRET_DB_APP_PASSWORD, APP_PASSWORD)
    monkeypatch.setenv(outputs.SECRET_DB_AUDIT_USER, "cli_audit_missing")
    monkeypatch.setenv(outputs.SECRET_DB_AUDIT_PASSWORD, AUDIT_PASSWORD)
    monkeypatch.delenv(variable)
    for as_json in (False, True):
        args = ("--json",) if as_json else ()
        code, out, err = run(capsys, *args, "db", "bootstrap-roles", "--dsn", migrated_dsn)
        assert code == 2
        assert f"{variable} is not set" in out + err
        assert APP_PASSWORD not in out + err and AUDIT_PASSWORD not in out + err
        assert "Traceback" not in err


def test_a_wrong_variable_exits_2_without_echoing_the_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, migrated_dsn: str
) -> None:
    monkeypatch.setenv(outputs.SECRET_DB_APP_USER, "cli_app_wrong")
    monkeypatch.setenv(outputs.SECRET_DB_APP_PASSWORD, APP_PASSWORD)
    # A password where the name belongs (a swapped secret key): never echoed.
    monkeypatch.setenv(outputs.SECRET_DB_AUDIT_USER, AUDIT_PASSWORD + " ")
    monkeypatch.setenv(outputs.SECRET_DB_AUDIT_PASSWORD, AUDIT_PASSWORD)
    code, out, err = run(capsys, "db", "bootstrap-roles", "--dsn", migrated_dsn)
    assert code == 2
    assert outputs.SECRET_DB_AUDIT_USER in err
    assert AUDIT_PASSWORD not in out + err
