"""db.destructive: what each down file destroys, read from the SQL of up and down.

Pure parsing, no database: migrations are real files on disk, loaded the way
the runner loads them.
"""

from __future__ import annotations

from pathlib import Path

from db.destructive import (
    ALTER_COLUMN_TYPE,
    DELETE,
    DROP_COLUMN,
    DROP_CONSTRAINT,
    DROP_FUNCTION,
    DROP_INDEX,
    DROP_SCHEMA,
    DROP_SEQUENCE,
    DROP_TABLE,
    DROP_TYPE,
    DROP_VIEW,
    TRUNCATE,
    UPDATE,
    DestructiveRevert,
    affected_data,
    classify_reverts,
    destroys_data,
)
from db.migrations import BUNDLED_MIGRATIONS, load_migrations
from tests.db.conftest import WriteMigrations


def classify(write_migrations: WriteMigrations, up: str, down: str) -> list[DestructiveRevert]:
    directory = write_migrations({"0001_change": (up, down, "SELECT 1;")})
    return classify_reverts(load_migrations(directory))


def summary(reverts: list[DestructiveRevert]) -> list[tuple[str, str | None, str, bool]]:
    return [(r.kind, r.table, r.target, r.expected) for r in reverts]


def test_the_bundles_down_files_are_destructive_reverts_of_what_their_ups_created() -> None:
    reverts = classify_reverts(load_migrations(BUNDLED_MIGRATIONS))

    assert (
        DestructiveRevert(
            migration="0002_add_ai_model",
            kind=DROP_COLUMN,
            table="public.execution_tasks",
            columns=("ai_model",),
            target="public.execution_tasks.ai_model",
            expected=True,
            loses_data=True,
        )
        in reverts
    )
    assert all(r.expected for r in reverts), [r.describe() for r in reverts]
    lost = destroys_data(reverts)
    assert affected_data(lost["0002_add_ai_model"]) == {"public.execution_tasks": ("ai_model",)}
    assert affected_data(lost["0001_create_base_tables"]) == {
        "public.payment_events": None,
        "public.execution_tasks": None,
        "public.orders": None,
        "public.customers": None,
    }
    # Where each one is, for a person to jump to.
    column = next(r for r in reverts if r.kind == DROP_COLUMN)
    assert column.file.name == "0002_add_ai_model.down.sql" and column.line == 9


def test_qualified_and_unqualified_names_are_one_table(write_migrations: WriteMigrations) -> None:
    reverts = classify(
        write_migrations,
        "CREATE TABLE orders (id bigint PRIMARY KEY);\n"
        "CREATE TABLE public.items (id bigint PRIMARY KEY);",
        "DROP TABLE public.orders;\nDROP TABLE items;",
    )
    assert summary(reverts) == [
        (DROP_TABLE, "public.orders", "public.orders", True),
        (DROP_TABLE, "public.items", "public.items", True),
    ]


def test_names_resolve_through_the_files_search_path(write_migrations: WriteMigrations) -> None:
    up = "SET search_path = app;\nCREATE TABLE orders (id bigint PRIMARY KEY, note text);"
    assert summary(classify(write_migrations, up, "DROP TABLE app.orders;")) == [
        (DROP_TABLE, "app.orders", "app.orders", True)
    ]
    # The down runs with the default search_path: `orders` is public.orders,
    # which the up never created.
    assert summary(classify(write_migrations, up, "DROP TABLE orders;")) == [
        (DROP_TABLE, "public.orders", "public.orders", False)
    ]
    # Unqualified, found in the second schema of the path, as the server would.
    down = "SET search_path TO public, app;\nALTER TABLE orders DROP COLUMN note;"
    [revert] = classify(write_migrations, up, down)
    assert (revert.kind, revert.table, revert.columns, revert.expected) == (
        DROP_COLUMN,
        "app.orders",
        ("note",),
        True,
    )


def test_pg_dumps_set_config_search_path_is_followed(write_migrations: WriteMigrations) -> None:
    up = (
        "SELECT pg_catalog.set_config('search_path', 'app, public', false);\n"
        "CREATE TABLE orders (id bigint PRIMARY KEY);"
    )
    assert summary(classify(write_migrations, up, "DROP TABLE app.orders;")) == [
        (DROP_TABLE, "app.orders", "app.orders", True)
    ]
    # pg_dump's empty path: every name is qualified, creations fall back to public.
    down = "SELECT pg_catalog.set_config('search_path', '', false);\nDROP TABLE public.orders;"
    assert summary(classify(write_migrations, up, down)) == [
        (DROP_TABLE, "public.orders", "public.orders", False)
    ]


def test_a_drop_of_something_the_up_did_not_create_is_not_expected(
    write_migrations: WriteMigrations,
) -> None:
    reverts = classify(
        write_migrations,
        "ALTER TABLE public.orders ADD COLUMN discount numeric;",
        "ALTER TABLE public.orders DROP COLUMN discount, DROP COLUMN total;\n"
        "DROP TABLE public.orders_archive, orders;",
    )
    assert [(r.kind, r.target, r.expected) for r in reverts] == [
        (DROP_COLUMN, "public.orders.discount", True),
        (DROP_COLUMN, "public.orders.total", False),
        (DROP_TABLE, "public.orders_archive", False),
        (DROP_TABLE, "public.orders", False),
    ]
    assert affected_data(reverts) == {"public.orders": None, "public.orders_archive": None}


def test_every_kind_of_drop_with_whether_it_loses_data(write_migrations: WriteMigrations) -> None:
    up = """
        CREATE SCHEMA audit;
        CREATE TYPE mood AS ENUM ('ok', 'sad');
        CREATE SEQUENCE ticket_seq;
        CREATE FUNCTION audit.touch() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RETURN NEW; END $$;
        CREATE TABLE t (id bigint PRIMARY KEY, m mood);
        CREATE VIEW t_view AS SELECT id FROM t;
        CREATE INDEX t_m_idx ON t (m);
        ALTER TABLE t ADD CONSTRAINT t_m_set CHECK (m IS NOT NULL);
    """
    down = """
        DROP INDEX t_m_idx;
        ALTER TABLE t DROP CONSTRAINT t_m_set;
        DROP VIEW t_view;
        DROP TABLE t;
        DROP FUNCTION audit.touch();
        DROP SEQUENCE public.ticket_seq;
        DROP TYPE mood;
        DROP SCHEMA audit;
    """
    reverts = classify(write_migrations, up, down)
    assert [(r.kind, r.target, r.table, r.expected, r.loses_data) for r in reverts] == [
        (DROP_INDEX, "public.t_m_idx", "public.t", True, False),
        (DROP_CONSTRAINT, "t_m_set", "public.t", True, False),
        (DROP_VIEW, "public.t_view", None, True, False),
        (DROP_TABLE, "public.t", "public.t", True, True),
        (DROP_FUNCTION, "audit.touch", None, True, False),
        (DROP_SEQUENCE, "public.ticket_seq", None, True, True),
        (DROP_TYPE, "public.mood", None, True, False),
        (DROP_SCHEMA, "audit", None, True, True),
    ]


def test_statements_that_destroy_rows_are_destructive_reverts(
    write_migrations: WriteMigrations,
) -> None:
    up = (
        "INSERT INTO public.plans (name) VALUES ('pro');\n"
        "ALTER TABLE public.orders ALTER COLUMN total TYPE numeric(12, 2);"
    )
    down = (
        "DELETE FROM plans WHERE name = 'pro';\n"
        "ALTER TABLE public.orders ALTER COLUMN total TYPE integer;\n"
        "UPDATE public.customers SET email = lower(email), name = btrim(name);\n"
        "TRUNCATE public.events;"
    )
    reverts = classify(write_migrations, up, down)
    assert [(r.kind, r.table, r.columns, r.expected, r.loses_data) for r in reverts] == [
        (DELETE, "public.plans", (), True, True),
        (ALTER_COLUMN_TYPE, "public.orders", ("total",), True, True),
        (UPDATE, "public.customers", ("email", "name"), False, True),
        (TRUNCATE, "public.events", (), False, True),
    ]
    assert affected_data(reverts) == {
        "public.plans": None,
        "public.orders": ("total",),
        "public.customers": ("email", "name"),
        "public.events": None,
    }
    assert "NOT" not in reverts[0].describe()


def test_a_down_that_only_adds_back_is_not_destructive(
    write_migrations: WriteMigrations,
) -> None:
    reverts = classify(
        write_migrations,
        "ALTER TABLE public.orders DROP COLUMN legacy;",
        "ALTER TABLE public.orders ADD COLUMN legacy text;",
    )
    assert reverts == []


def test_to_dict_is_json_ready(write_migrations: WriteMigrations) -> None:
    [revert] = classify(
        write_migrations,
        "ALTER TABLE orders ADD COLUMN discount numeric;",
        "ALTER TABLE orders DROP COLUMN discount;",
    )
    data = revert.to_dict()
    assert data["migration"] == "0001_change"
    assert data["table"] == "public.orders" and data["columns"] == ["discount"]
    assert data["kind"] == "drop column" and data["expected"] is True
    assert Path(data["file"]).name == "0001_change.down.sql" and data["line"] == 1
