"""The canonical contract: migrations == schema.sql, and up -> down -> up is an identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.config import CatalogScope
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
        "0005_grant_service_roles",
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


# --- a project that lives in its own schema ------------------------------------

UPGRADE_V1 = """CREATE FUNCTION app.upgrade(account bigint) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = app, pg_temp
    AS $$ BEGIN UPDATE accounts SET plan = 'paid' WHERE id = account; END $$;"""
UPGRADE_V2 = """CREATE OR REPLACE FUNCTION app.upgrade(account bigint) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = app, pg_temp
    AS $$ BEGIN
        UPDATE accounts SET plan = 'paid', upgraded_at = now() WHERE id = account;
    END $$;"""

APP: MigrationSet = {
    "0001_create_app": (
        "CREATE SCHEMA app;\n"
        "CREATE TABLE app.accounts (id bigint PRIMARY KEY, plan text NOT NULL DEFAULT 'free');\n"
        + UPGRADE_V1,
        "DROP SCHEMA app CASCADE;",
        "SELECT id, plan FROM app.accounts WHERE false;",
    ),
    "0002_stamp_upgrades": (
        "ALTER TABLE app.accounts ADD COLUMN upgraded_at timestamptz;\n" + UPGRADE_V2,
        UPGRADE_V1.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
        + "\nALTER TABLE app.accounts DROP COLUMN upgraded_at;",
        "SELECT upgraded_at FROM app.accounts WHERE false;",
    ),
    # Only the function changes: invisible to a reader of public alone.
    "0003_upgrade_invoker": (
        UPGRADE_V2.replace("SECURITY DEFINER", "SECURITY INVOKER"),
        UPGRADE_V2.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"),
        "SELECT 1;",
    ),
}

APP_SCHEMA = (
    "CREATE SCHEMA app;\n"
    "CREATE TABLE app.accounts (\n"
    "    id bigint PRIMARY KEY, plan text NOT NULL DEFAULT 'free', upgraded_at timestamptz\n"
    ");\n" + UPGRADE_V2.replace("SECURITY DEFINER", "SECURITY INVOKER")
)


def test_a_project_in_its_own_schema_is_really_checked(
    each_server: ThrowawayPostgres, write_migrations: WriteMigrations, tmp_path: Path
) -> None:
    schema = tmp_path / "schema.sql"
    schema.write_text(APP_SCHEMA)
    report = check_contract(each_server, load_migrations(write_migrations(APP)), schema)

    assert report.ok, [f.describe() for f in report.findings]
    assert report.migrations_fingerprint == report.schema_fingerprint
    assert all(step.reversible for step in report.steps)
    # Every up changed what the contract sees: no step passed vacuously.
    fingerprints = [report.steps[0].before] + [step.after_up for step in report.steps]
    assert len(set(fingerprints)) == len(fingerprints) == 4


def test_a_planted_column_in_a_custom_schema_is_caught(
    server: ThrowawayPostgres, write_migrations: WriteMigrations, tmp_path: Path
) -> None:
    schema = tmp_path / "schema.sql"
    schema.write_text(
        APP_SCHEMA.replace("upgraded_at timestamptz", "upgraded_at timestamptz, planted text")
    )
    report = check_contract(server, load_migrations(write_migrations(APP)), schema)

    assert [f.stage for f in report.findings] == ["final"]
    assert "column app.accounts.planted: missing" in report.findings[0].message


def test_a_down_that_forgets_a_function_change_is_caught(
    server: ThrowawayPostgres, write_migrations: WriteMigrations, tmp_path: Path
) -> None:
    forgetful = dict(APP)
    up, _, verify = forgetful["0003_upgrade_invoker"]
    forgetful["0003_upgrade_invoker"] = (up, "SELECT 1;", verify)
    schema = tmp_path / "schema.sql"
    schema.write_text(APP_SCHEMA)
    report = check_contract(server, load_migrations(write_migrations(forgetful)), schema)

    # Caught as the down's failure to undo (not as a vacuous down).
    assert [(f.stage, f.migration) for f in report.findings] == [("down", "0003_upgrade_invoker")]
    assert "function app.upgrade(account bigint): security definer changed" in (
        report.findings[0].message
    )


def test_a_migration_that_changes_nothing_visible_is_not_a_pass(
    server: ThrowawayPostgres, write_migrations: WriteMigrations, widgets_schema: Path
) -> None:
    data_only: MigrationSet = {
        "0001_create_widgets": WIDGETS["0001_create_widgets"],
        "0002_fill_widgets": (
            "INSERT INTO widgets VALUES (1, 'spoke');\nUPDATE widgets SET name = upper(name);",
            "DELETE FROM widgets;",
            "SELECT 1;",
        ),
        "0003_nothing": ("SELECT 1;", "SELECT 1;", "SELECT 1;"),
        "0004_add_widget_colour": WIDGETS["0002_add_widget_colour"],
        "0005_index_widget_name": WIDGETS["0003_index_widget_name"],
    }
    report = check_contract(server, load_migrations(write_migrations(data_only)), widgets_schema)

    assert not report.ok
    # Both vacuous steps are named, and the walk went on to judge the rest.
    assert [(f.stage, f.migration) for f in report.findings] == [
        ("up", "0002_fill_widgets"),
        ("up", "0003_nothing"),
    ]
    message = report.findings[0].message
    assert "changed nothing Rollgate can see in the catalog" in message
    assert "schemas read: public" in message
    assert "data-only change is not covered by the contract" in message
    assert len(report.steps) == 5
    assert report.migrations_fingerprint == report.schema_fingerprint


def test_the_scope_decides_what_the_contract_compares(
    server: ThrowawayPostgres, write_migrations: WriteMigrations, tmp_path: Path
) -> None:
    schema = tmp_path / "schema.sql"
    schema.write_text(
        APP_SCHEMA.replace("upgraded_at timestamptz", "upgraded_at timestamptz, planted text")
    )
    migrations = load_migrations(write_migrations(APP))

    # The project's [catalog] config narrows what is compared: with the
    # table excluded, the planted column is out of scope.
    report = check_contract(
        server, migrations, schema, scope=CatalogScope(exclude=("app.accounts",))
    )
    assert report.ok, [f.describe() for f in report.findings]

    # With only public in scope, nothing the migrations do is visible.
    report = check_contract(server, migrations, schema, scope=CatalogScope(schemas=("public",)))
    assert [f.stage for f in report.findings] == ["up", "up", "up"]
    assert "schemas read: public" in report.findings[0].message


def test_a_privileges_only_migration_passes_when_it_says_so_and_its_verify_checks(
    server: ThrowawayPostgres, write_migrations: WriteMigrations, widgets_schema: Path
) -> None:
    """Grants are invisible to the catalog comparison: ``catalog=unchanged`` declares that,
    and the verify script (not the catalog) proves the grant."""
    grant = (
        "GRANT SELECT ON widgets TO PUBLIC;",
        "REVOKE SELECT ON widgets FROM PUBLIC;",
        "DO $$ BEGIN IF NOT has_table_privilege('public', 'widgets', 'SELECT') "
        "THEN RAISE EXCEPTION 'not granted'; END IF; END $$;",
    )
    undeclared: MigrationSet = {
        "0001_create_widgets": WIDGETS["0001_create_widgets"],
        "0002_grant_widgets": grant,
        "0003_add_widget_colour": WIDGETS["0002_add_widget_colour"],
        "0004_index_widget_name": WIDGETS["0003_index_widget_name"],
    }
    report = check_contract(server, load_migrations(write_migrations(undeclared)), widgets_schema)
    assert [(f.stage, f.migration) for f in report.findings] == [("up", "0002_grant_widgets")]

    declared = dict(undeclared)
    declared["0002_grant_widgets"] = ("-- rollgate: catalog=unchanged\n" + grant[0], *grant[1:])
    report = check_contract(server, load_migrations(write_migrations(declared)), widgets_schema)
    assert report.ok, [f.describe() for f in report.findings]

    # The declaration is checked: an up that does change the catalog is named.
    lying = dict(declared)
    lying["0002_grant_widgets"] = (
        "-- rollgate: catalog=unchanged\nGRANT SELECT ON widgets TO PUBLIC;\n"
        "CREATE INDEX widgets_name_idx2 ON widgets (name);",
        "DROP INDEX widgets_name_idx2;\nREVOKE SELECT ON widgets FROM PUBLIC;",
        grant[2],
    )
    report = check_contract(server, load_migrations(write_migrations(lying)), widgets_schema)
    assert not report.ok
    assert "declares catalog=unchanged but changed the catalog" in report.findings[0].message
