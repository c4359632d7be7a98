"""Extensions the throwaway server lacks: switch to docker, or exit 2 naming them; never exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from db.migrations import load_migrations
from db.throwaway.extensions import required_extensions
from rollgate.cli import main
from tests.db.conftest import MigrationSet, WriteMigrations

TOKENS: MigrationSet = {
    "0001_create_tokens": (
        "CREATE EXTENSION IF NOT EXISTS pgcrypto;\n"
        "CREATE TABLE tokens (id bigint PRIMARY KEY,\n"
        "    secret bytea NOT NULL DEFAULT gen_random_bytes(16));",
        "-- squawk-ignore-file ban-drop-table, ban-drop-extension -- reverts what the up made\n"
        "DROP TABLE tokens;\nDROP EXTENSION pgcrypto;",
        "SELECT length(gen_random_bytes(4));",
    ),
}
TOKENS_SCHEMA = (
    "CREATE EXTENSION pgcrypto;\n"
    "CREATE TABLE tokens (id bigint PRIMARY KEY,\n"
    "    secret bytea NOT NULL DEFAULT gen_random_bytes(16));\n"
)


@pytest.fixture
def tokens(write_migrations: WriteMigrations, tmp_path: Path) -> tuple[Path, Path]:
    schema = tmp_path / "schema.sql"
    schema.write_text(TOKENS_SCHEMA)
    return write_migrations(TOKENS), schema


def _check(capsys: pytest.CaptureFixture[str], paths: tuple[Path, Path]) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    migrations, schema = paths
    code = main(
        ["--json", "db", "check", "--backend", "embedded",
         "--migrations", str(migrations), "--schema", str(schema)]
    )  # fmt: skip
    out, err = capsys.readouterr()
    return code, json.loads(out), err


@pytest.mark.docker
def test_an_extension_embedded_lacks_moves_the_check_to_docker(
    capsys: pytest.CaptureFixture[str], tokens: tuple[Path, Path]
) -> None:
    code, payload, err = _check(capsys, tokens)
    assert code == 0, payload
    result = payload["result"]
    assert result["backend"] == "docker" and result["contract"]["ok"]
    [warning] = [w for w in result["warnings"] if "switched" in w]
    assert "embedded cannot create pgcrypto" in warning
    assert "0001_create_tokens.up.sql:1" in warning
    assert "switching to the docker backend" in err


def test_without_docker_a_missing_extension_cannot_run_and_names_the_remedy(
    capsys: pytest.CaptureFixture[str],
    tokens: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker-here.sock")
    code, payload, _ = _check(capsys, tokens)
    assert code == 2, payload  # could not run -- not "contract BROKEN"
    message = payload["error"]["message"]
    assert "pgcrypto" in message and "--backend docker" in message
    assert "0001_create_tokens.up.sql:1" in message


def test_an_extension_rds_refuses_is_a_finding_not_a_backend_problem(
    capsys: pytest.CaptureFixture[str], write_migrations: WriteMigrations, tmp_path: Path
) -> None:
    # file_fdw reads the server's files; RDS does not offer it, and the
    # owner role may not create it: a real finding (exit 1), no handover.
    schema = tmp_path / "schema.sql"
    schema.write_text("CREATE EXTENSION file_fdw;\n")
    migrations = write_migrations(
        {"0001_files": ("CREATE EXTENSION file_fdw;", "DROP EXTENSION file_fdw;", "SELECT 1;")}
    )
    code, payload, _ = _check(capsys, (migrations, schema))
    assert code == 1
    result = payload["result"]
    assert result["backend"] == "embedded"
    [finding] = result["contract"]["findings"]
    assert finding["stage"] == "schema"
    assert 'permission denied to create extension "file_fdw"' in finding["message"]


def test_required_extensions_come_from_the_parse_tree(write_migrations: WriteMigrations) -> None:
    directory = write_migrations(
        {
            "0001_ext": (
                "-- CREATE EXTENSION citext; (a comment is not a statement)\n"
                'CREATE TABLE t (id int);\nCREATE EXTENSION IF NOT EXISTS "uuid-ossp" '
                "WITH SCHEMA public;\nSELECT 'CREATE EXTENSION hstore';\n"
                "CREATE EXTENSION vector;",
                'DROP EXTENSION vector;\nDROP EXTENSION "uuid-ossp";\nDROP TABLE t;',
                "SELECT 1;",
            )
        }
    )
    [migration] = load_migrations(directory)
    found = required_extensions([migration.up, migration.down])
    assert sorted(found) == ["uuid-ossp", "vector"]
    assert found["uuid-ossp"].where.endswith("0001_ext.up.sql:3")
