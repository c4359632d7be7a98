"""The canonical contract: migrations == schema.sql, and up -> down -> up is an identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.contract import check_contract
from db.migrations import BUNDLED_MIGRATIONS, BUNDLED_SCHEMA, load_migrations
from db.throwaway import ThrowawayPostgres
from tests.db.conftest import WIDGETS, MigrationSet, WriteMigrations

WIDGETS_SCHEMA = """
CREATE TABLE widgets (id bigint PRIMARY KEY, name text NOT NULL, colour text);
CREATE INDEX widgets_colour_idx ON widgets (colour);
CREATE INDEX widgets_name_idx ON widgets (name);
"""


def test_bundled_migrations_honour_the_contract_on_every_backend(
    each_server: ThrowawayPostgres,
) -> None:
    report = check_contract(each_server, load_migrations(BUNDLED_MIGRATIONS), BUNDLED_SCHEMA)
    assert report.ok, [f.describe() for f in report.findings]
    assert report.migrations_fingerprint == report.schema_fingerprint
    assert [s.migration for s in report.steps] == [
        "0001_create_base_tables",
        "0002_add_ai_model",
        "0003_add_task_outbox",
        "0004_create_roi_views",
    ]
    assert all(step.reversible for step in report.steps)
    # Each step changed the catalog, so the fingerprints really discriminate.
    assert len({report.steps[0].before, report.steps[0].after_up, report.steps[1].after_up}) == 3


@pytest.fixture
def widgets_schema(tmp_path: Path) -> Path:
    path = tmp_path / "schema.sql"
    path.write_text(WIDGETS_SCHEMA)
    return path


def test_a_down_that_forgets_something_is_caught(
    server: ThrowawayPostgres, write_migrations: WriteMigrations, widgets_schema: Path
) -> None:
    leaky: MigrationSet = dict(WIDGETS)
    up, _, verify = leaky["0002_add_widget_colour"]
    leaky["0002_add_widget_colour"] = (up, "DROP INDEX widgets_colour_idx;", verify)
    report = check_contract(server, load_migrations(write_migrations(leaky)), widgets_schema)
    assert not report.ok
    finding = report.findings[0]
    assert (finding.stage, finding.migration) == ("down", "0002_add_widget_colour")
    assert "down does not undo up" in finding.message
    assert "public.widgets.colour" in finding.message


def test_schema_that_disagrees_with_migrations_is_caught(
    server: ThrowawayPostgres, widgets_dir: Path, tmp_path: Path
) -> None:
    schema = tmp_path / "schema.sql"
    schema.write_text(WIDGETS_SCHEMA.replace("colour text", "colour varchar(20)"))
    report = check_contract(server, load_migrations(widgets_dir), schema)
    assert [f.stage for f in report.findings] == ["final"]
    assert "public.widgets.colour" in report.findings[0].message
    assert "character varying(20)" in report.findings[0].message


def test_a_verify_script_that_fails_is_a_finding(
    server: ThrowawayPostgres, write_migrations: WriteMigrations, widgets_schema: Path
) -> None:
    strict: MigrationSet = dict(WIDGETS)
    up, down, _ = strict["0001_create_widgets"]
    strict["0001_create_widgets"] = (up, down, "SELECT weight FROM widgets WHERE false;")
    report = check_contract(server, load_migrations(write_migrations(strict)), widgets_schema)
    assert [(f.stage, f.migration) for f in report.findings] == [("up", "0001_create_widgets")]
    assert "0001_create_widgets.verify.sql:1:8" in report.findings[0].message


def test_a_migration_that_cannot_be_reapplied_is_caught(
    server: ThrowawayPostgres, write_migrations: WriteMigrations, widgets_schema: Path
) -> None:
    # The down leaves a table behind, so the second up collides with it.
    sticky: MigrationSet = dict(WIDGETS)
    sticky["0001_create_widgets"] = (
        "CREATE TABLE widgets (id bigint PRIMARY KEY, name text NOT NULL);\n"
        "CREATE TABLE widget_audit (id bigint);",
        "DROP TABLE widgets;",
        "SELECT 1;",
    )
    report = check_contract(server, load_migrations(write_migrations(sticky)), widgets_schema)
    stages = [f.stage for f in report.findings]
    assert stages[0] == "down"
    assert "public.widget_audit" in report.findings[0].message


def test_a_broken_schema_file_is_reported_with_its_line(
    server: ThrowawayPostgres, widgets_dir: Path, tmp_path: Path
) -> None:
    schema = tmp_path / "schema.sql"
    schema.write_text("CREATE TABLE widgets (\n    id bigint PRIMARY KEY,\n);\n")
    report = check_contract(server, load_migrations(widgets_dir), schema)
    assert report.findings[0].stage == "schema"
    assert "schema.sql:3:1: syntax error" in report.findings[0].message
