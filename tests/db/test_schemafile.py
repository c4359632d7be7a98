"""The canonical schema file: RDS-like loading, bounded waits, pg_dump output, ``db schema``.

Everything runs ``rollgate db check`` / ``db diff`` / ``db schema`` (in-process,
through ``rollgate.cli.main``) or the contract on a real throwaway Postgres.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from core.pgtools import embedded_client_bin
from db.check import run_check
from db.migrations import load_migrations
from db.runner import MigrationRunner
from db.schemafile import normalize_dump, read_schema_file
from rollgate.cli import main
from tests.conftest import MakeDatabase
from tests.db.conftest import WIDGETS, MigrationSet, WriteMigrations

WIDGETS_SCHEMA = """
CREATE TABLE widgets (id bigint PRIMARY KEY, name text NOT NULL, colour text);
CREATE INDEX widgets_colour_idx ON widgets (colour);
CREATE INDEX widgets_name_idx ON widgets (name);
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def check(
    capsys: pytest.CaptureFixture[str], migrations: Path, schema: Path, *extra: str
) -> tuple[int, str, str]:
    return run(
        capsys, "db", "check", "--migrations", str(migrations), "--schema", str(schema), *extra
    )


# --- row w: the throwaway server behaves like RDS --------------------------------


def _pwned_path() -> Path:
    # /tmp on purpose: the embedded server's OS user can write there.
    return Path(f"/tmp/pwned-{secrets.token_hex(6)}")  # noqa: S108


@pytest.mark.parametrize("where", ["schema", "migration"])
def test_copy_to_program_is_refused_and_never_runs_on_the_host(
    capsys: pytest.CaptureFixture[str],
    write_migrations: WriteMigrations,
    tmp_path: Path,
    where: str,
) -> None:
    marker = _pwned_path()
    attack = f"COPY (SELECT 1) TO PROGRAM 'touch {marker}';"
    migrations: MigrationSet = dict(WIDGETS)
    schema = tmp_path / "schema.sql"
    if where == "schema":
        schema.write_text(WIDGETS_SCHEMA + attack + "\n")
    else:
        # Dynamic SQL: out of sight of the load-time rules (which refuse a plain
        # COPY), so only the owner role's missing privilege stands in the way.
        hidden = "DO $$ BEGIN EXECUTE $q$" + attack.rstrip(";") + "$q$; END $$;"
        up, down, verify = migrations["0001_create_widgets"]
        migrations["0001_create_widgets"] = (up + "\n" + hidden, down, verify)
        schema.write_text(WIDGETS_SCHEMA)
    code, out, err = check(capsys, write_migrations(migrations), schema)
    assert code == 1, out + err
    assert "permission denied to COPY to or from an external program" in out
    expected_file = "schema.sql:5" if where == "schema" else "0001_create_widgets.up.sql:2"
    assert expected_file in out
    assert not marker.exists(), "COPY ... TO PROGRAM ran on the host"


def test_creating_a_superuser_role_is_a_finding(
    capsys: pytest.CaptureFixture[str], write_migrations: WriteMigrations, tmp_path: Path
) -> None:
    migrations: MigrationSet = dict(WIDGETS)
    up, down, verify = migrations["0002_add_widget_colour"]
    migrations["0002_add_widget_colour"] = (
        up + "\nCREATE ROLE rollgate_backdoor SUPERUSER LOGIN;",
        down + "\nDROP ROLE rollgate_backdoor;",
        verify,
    )
    schema = tmp_path / "schema.sql"
    schema.write_text(WIDGETS_SCHEMA)
    code, out, _ = check(capsys, write_migrations(migrations), schema)
    assert code == 1
    assert "0002_add_widget_colour.up.sql:3" in out
    assert "Only roles with the SUPERUSER attribute" in out


# --- row v: loading the schema has a statement timeout ---------------------------


def test_a_schema_file_that_sleeps_is_stopped_and_named(widgets_dir: Path, tmp_path: Path) -> None:
    schema = tmp_path / "schema.sql"
    # pg_dump's own header lifts every timeout; it must not lift Rollgate's.
    schema.write_text(
        "SET statement_timeout = 0;\nSET lock_timeout = 0;\n"
        + WIDGETS_SCHEMA
        + "select pg_sleep(100000);\n"
    )
    report = run_check(widgets_dir, schema, schema_statement_timeout="300ms")
    assert not report.ok
    [finding] = report.contract.findings
    assert finding.stage == "schema"
    assert f"{schema}:7:1: canceling statement due to statement timeout" in finding.message
    assert "statement_timeout=300ms" in finding.message


@pytest.mark.parametrize(
    "lift",
    [
        "SELECT set_config('statement_timeout', '0', false);",
        "RESET ALL;",
        "SET statement_timeout TO DEFAULT;",
        "DO $$ BEGIN PERFORM set_config('statement_timeout', '0', true); END $$;",
    ],
)
def test_a_schema_file_cannot_lift_the_bound(widgets_dir: Path, tmp_path: Path, lift: str) -> None:
    schema = tmp_path / "schema.sql"
    schema.write_text(WIDGETS_SCHEMA + lift + "\nSELECT pg_sleep(100000);\n")
    report = run_check(widgets_dir, schema, schema_statement_timeout="200ms")
    [finding] = report.contract.findings
    assert f"{schema}:6:1: canceling statement due to statement timeout" in finding.message


def test_a_schema_directive_bounds_the_load_from_the_cli(
    capsys: pytest.CaptureFixture[str], widgets_dir: Path, tmp_path: Path
) -> None:
    schema = tmp_path / "schema.sql"
    # 20 s, not forever: without the bound the old loader sat it out and passed.
    schema.write_text(
        "-- rollgate: statement_timeout=300ms\n" + WIDGETS_SCHEMA + "SELECT pg_sleep(20);\n"
    )
    code, out, _ = check(capsys, widgets_dir, schema)
    assert code == 1
    assert "schema.sql:6:1: canceling statement due to statement timeout" in out


# --- section 3: pg_dump --schema-only output as schema.sql -----------------------

# Tables, a custom schema, an enum, a domain, views, a trigger, comments, and SQL
# functions whose bodies name tables: pg_dump writes the functions before the
# tables, so loading its output needs check_function_bodies = off.
SHOP: MigrationSet = {
    "0001_create_shop": (
        "-- squawk-ignore-file ban-create-domain-with-constraint -- a new, empty schema\n"
        "CREATE SCHEMA shop;\n"
        "CREATE TYPE shop.order_state AS ENUM ('new', 'paid', 'shipped');\n"
        "CREATE DOMAIN shop.money_cents AS bigint CHECK (VALUE >= 0);\n"
        "CREATE TABLE shop.customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
        "    email text NOT NULL UNIQUE);\n"
        "CREATE TABLE shop.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
        "    customer_id bigint NOT NULL REFERENCES shop.customers (id),\n"
        "    state shop.order_state NOT NULL DEFAULT 'new',\n"
        "    total shop.money_cents NOT NULL,\n"
        "    updated_at timestamptz NOT NULL DEFAULT now());\n"
        "CREATE INDEX orders_customer_idx ON shop.orders (customer_id);\n"
        "COMMENT ON TABLE shop.orders IS 'one row per checkout';\n",
        "-- squawk-ignore-file ban-drop-schema -- a revert drops what the up made\n"
        "DROP SCHEMA shop CASCADE;",
        "SELECT id FROM shop.orders WHERE false;",
    ),
    "0002_reporting": (
        "CREATE FUNCTION public.order_count(customer bigint) RETURNS bigint\n"
        "    LANGUAGE sql STABLE AS $$ SELECT count(*) FROM shop.orders o\n"
        "    WHERE o.customer_id = customer $$;\n"
        "CREATE FUNCTION shop.touch() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN NEW.updated_at := now(); RETURN NEW; END $$;\n"
        "CREATE TRIGGER orders_touch BEFORE UPDATE ON shop.orders\n"
        "    FOR EACH ROW EXECUTE FUNCTION shop.touch();\n"
        "CREATE VIEW public.customer_totals AS SELECT c.id, c.email,\n"
        "    public.order_count(c.id) AS orders FROM shop.customers c;\n",
        "-- squawk-ignore-file ban-drop-view, ban-drop-function -- reverts what the up made\n"
        "DROP VIEW public.customer_totals;\nDROP TRIGGER orders_touch ON shop.orders;\n"
        "DROP FUNCTION shop.touch();\nDROP FUNCTION public.order_count(bigint);",
        "SELECT public.order_count(1);",
    ),
}


def _pg_dump_schema_only(dsn: str, target: Path) -> str:
    """What a team does: ``pg_dump --schema-only`` of production, nothing else."""
    params = conninfo_to_dict(dsn)
    command = [str(embedded_client_bin() / "pg_dump"), "--schema-only", "--file", str(target)]
    for key, option in (("host", "--host"), ("port", "--port"), ("user", "--username")):
        if params.get(key):
            command.append(f"{option}={params[key]}")
    command.append(str(params["dbname"]))
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return target.read_text()


def test_pg_dump_output_is_accepted_verbatim_as_schema_sql(
    capsys: pytest.CaptureFixture[str],
    make_database: MakeDatabase,
    write_migrations: WriteMigrations,
    tmp_path: Path,
) -> None:
    migrations_dir = write_migrations(SHOP)
    live = make_database()
    with MigrationRunner(live, load_migrations(migrations_dir)) as runner:
        runner.migrate()
    dump = _pg_dump_schema_only(live, tmp_path / "schema.sql")
    # The premises: a PostgreSQL 18 dump with everything that tripped the old loader.
    assert "\n\\restrict " in dump and "\n\\unrestrict " in dump
    assert "SELECT pg_catalog.set_config('search_path', '', false);" in dump
    assert "SET check_function_bodies = false;" in dump
    assert dump.index("FUNCTION public.order_count") < dump.index("TABLE shop.orders (")
    assert "OWNER TO" in dump

    code, out, err = check(capsys, migrations_dir, tmp_path / "schema.sql")
    assert code == 0, out + err
    assert "migrations == schema.sql" in out

    code, out, err = run(
        capsys, "db", "diff", "--dsn", live, "--migrations", str(migrations_dir),
        "--schema", str(tmp_path / "schema.sql"),
    )  # fmt: skip
    assert code == 0, out + err
    assert out.startswith("no drift")


def test_restrict_lines_are_blanked_so_lines_stay_true(tmp_path: Path) -> None:
    schema = tmp_path / "schema.sql"
    schema.write_text("\\restrict AbC123\n\nCREATE TABLE t (id int);\n\n\\unrestrict AbC123\n")
    loaded = read_schema_file(schema)
    [statement] = loaded.script.statements
    assert statement.line == 3 and statement.text == "CREATE TABLE t (id int)"


# --- section 3: rollgate db schema --write / --check -----------------------------


def test_db_schema_write_satisfies_the_contract_and_is_deterministic(
    capsys: pytest.CaptureFixture[str], write_migrations: WriteMigrations, tmp_path: Path
) -> None:
    migrations_dir = str(write_migrations(SHOP))
    schema = tmp_path / "schema.sql"
    schema.write_text("-- stale\n")
    common = ("--migrations", migrations_dir, "--schema", str(schema))

    assert run(capsys, "db", "schema", "--check", *common)[0] == 1
    code, out, _ = run(capsys, "db", "schema", "--write", *common)
    assert code == 0 and out.startswith(f"wrote {schema}")
    first = schema.read_bytes()
    assert b"\\restrict" not in first and b"Dumped from database version" not in first
    assert b"CREATE TABLE shop.orders" in first
    # Rollgate's own bookkeeping is not the project's schema.
    assert b"schema_migrations" not in first and b"OWNER TO" not in first

    code, out, _ = run(capsys, "db", "schema", "--write", *common)
    assert code == 0 and out.startswith(f"unchanged: {schema}")
    assert schema.read_bytes() == first
    assert not list(tmp_path.glob(".schema.sql.*")), "temporary file left behind"

    code, out, err = check(capsys, Path(migrations_dir), schema)
    assert code == 0, out + err


def test_normalize_dump_drops_only_what_varies() -> None:
    dump = (
        "--\n-- PostgreSQL database dump\n--\n\n\\restrict Xy9\n\n"
        "-- Dumped from database version 18.6\n-- Dumped by pg_dump version 18.6\n\n"
        "SET lock_timeout = 0;\n\nCREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$\n"
        "SELECT '\n\n\n'$$;\n\n\\unrestrict Xy9\n\n"
    )
    assert normalize_dump(dump) == (
        "--\n-- PostgreSQL database dump\n--\n\n"
        "SET lock_timeout = 0;\n\nCREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$\n"
        "SELECT '\n\n\n'$$;\n\n"
    )


def test_schema_file_skips_production_roles_and_timeouts(tmp_path: Path) -> None:
    schema = tmp_path / "schema.sql"
    schema.write_text(
        "SET statement_timeout = 0;\n"
        "CREATE TABLE t (id int);\n"
        "ALTER TABLE public.t OWNER TO prod_owner;\n"
        "GRANT SELECT ON public.t TO reporting;\n"
        "ALTER TABLE t ADD COLUMN name text;\n"
    )
    loaded = read_schema_file(schema)
    assert [s.line for s in loaded.script.statements] == [2, 5]
    assert [s.line for s in loaded.skipped] == [1, 3, 4]


def test_loading_runs_as_the_owner_role(widgets_dir: Path, tmp_path: Path) -> None:
    schema = tmp_path / "schema.sql"
    schema.write_text(
        WIDGETS_SCHEMA
        + "DO $$ BEGIN IF current_user <> 'rollgate_owner' OR (SELECT rolsuper FROM pg_roles "
        "WHERE rolname = current_user) THEN RAISE EXCEPTION 'loaded as %', current_user; "
        "END IF; END $$;\n"
    )
    report = run_check(widgets_dir, schema)
    assert report.contract.ok, [f.describe() for f in report.contract.findings]


def test_db_schema_prints_and_check_accepts_what_it_printed(
    capsys: pytest.CaptureFixture[str], widgets_dir: Path, tmp_path: Path
) -> None:
    schema = tmp_path / "schema.sql"
    common = ("--migrations", str(widgets_dir), "--schema", str(schema))
    code, out, _ = run(capsys, "--json", "db", "schema", *common)
    printed = json.loads(out)["result"]["schema"]
    assert code == 0 and "CREATE TABLE public.widgets" in printed
    assert not schema.exists(), "printing must not write the file"
    schema.write_text(printed)
    code, out, _ = run(capsys, "db", "schema", "--check", *common)
    assert code == 0, out
