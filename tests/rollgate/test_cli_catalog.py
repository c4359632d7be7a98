"""The command line reads every user schema, and the project's [catalog] scope narrows it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from db.migrations import load_migrations
from db.runner import MigrationRunner
from rollgate.cli import main
from tests.db.conftest import write_migration_set
from tests.db.test_contract import APP, APP_SCHEMA


@pytest.fixture
def app_project(tmp_path: Path, empty_dsn: str) -> tuple[Path, Path, str]:
    """A project living in schema ``app``, migrated, with a column planted in schema.sql."""
    migrations = write_migration_set(tmp_path / "migrations", APP)
    with MigrationRunner(empty_dsn, load_migrations(migrations)) as runner:
        runner.migrate()
    schema = tmp_path / "schema.sql"
    schema.write_text(
        APP_SCHEMA.replace("upgraded_at timestamptz", "upgraded_at timestamptz, planted text")
    )
    return migrations, schema, empty_dsn


def test_db_diff_exits_1_on_drift_in_a_custom_schema(
    capsys: pytest.CaptureFixture[str], app_project: tuple[Path, Path, str]
) -> None:
    migrations, schema, dsn = app_project
    code = main(
        ["--json", "db", "diff", "--dsn", dsn, "--migrations", str(migrations),
         "--schema", str(schema)]
    )  # fmt: skip
    out = capsys.readouterr().out

    assert code == 1, out
    differences = json.loads(out)["result"]["differences"]
    assert [d["name"] for d in differences] == ["app.accounts.planted"]


def test_db_diff_uses_the_catalog_scope_of_rollgate_toml(
    capsys: pytest.CaptureFixture[str], app_project: tuple[Path, Path, str], tmp_path: Path
) -> None:
    dsn = app_project[2]
    config = tmp_path / "rollgate.toml"
    config.write_text(
        'schema = "schema.sql"\nmigrations = "migrations"\n\n'
        '[catalog]\nexclude = ["app.accounts"]\n'
    )
    code = main(["--config", str(config), "db", "diff", "--dsn", dsn])
    out = capsys.readouterr().out

    assert code == 0, out
