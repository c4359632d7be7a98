"""db.catalog against real Postgres: what a catalog holds, and every drift it catches.

The canonical schema is loaded once per module into a template database; each
test clones it (CREATE DATABASE ... TEMPLATE), drifts the clone with real DDL,
and compares the clone's catalog with the template's.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from core.errors import CannotRun
from db.catalog import (
    Catalog,
    Constraint,
    Difference,
    Function,
    Index,
    Table,
    TypeDef,
    diff_catalogs,
    read_catalog,
)
from db.config import CatalogScope
from db.throwaway import ThrowawayPostgres, create_database, drop_database

SCHEMA_SQL = Path(__file__).resolve().parents[2] / "db" / "schema.sql"


@pytest.fixture(scope="module")
def schema_template(server: ThrowawayPostgres) -> Iterator[str]:
    """A database holding db/schema.sql, used only as a clone source."""
    name = f"catalog_tpl_{secrets.token_hex(3)}"
    dsn = create_database(server, name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SCHEMA_SQL.read_text())
        yield name
    finally:
        drop_database(server, name)


@pytest.fixture(scope="module")
def canonical(server: ThrowawayPostgres, schema_template: str) -> Catalog:
    """The catalog of db/schema.sql (the connection closes before any clone)."""
    return catalog_of(server.dsn(schema_template))


@pytest.fixture
def schema_dsn(make_database, schema_template: str) -> str:
    """A fresh clone of the canonical schema."""
    dsn: str = make_database(template=schema_template)
    return dsn


def catalog_of(dsn: str, **options) -> Catalog:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return read_catalog(conn, **options)


def run(dsn: str, statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statements)


def drift(expected: Catalog, dsn: str) -> list[str]:
    return [difference.describe() for difference in diff_catalogs(expected, catalog_of(dsn))]


# --- the canonical schema ------------------------------------------------------


def test_schema_loaded_into_two_fresh_databases_gives_one_fingerprint(make_database):
    # One load in autocommit, one inside a transaction: psycopg runs a
    # parameterless multi-statement string either way, and the result must not
    # depend on which.
    first, second = make_database(), make_database()
    run(first, SCHEMA_SQL.read_text())
    with psycopg.connect(second) as conn:
        conn.execute(SCHEMA_SQL.read_text())
        conn.commit()

    one, two = catalog_of(first), catalog_of(second)

    assert one.fingerprint() == two.fingerprint()
    assert one == two
    assert diff_catalogs(one, two) == []


def test_catalog_covers_every_object_in_the_schema(canonical: Catalog):
    tables = canonical.objects("table")
    assert sorted(tables) == [
        "public.customers",
        "public.execution_tasks",
        "public.orders",
        "public.payment_events",
        "public.task_outbox",
    ]
    assert sorted(canonical.objects("view")) == ["public.roi_customer_daily", "public.roi_daily"]
    assert sorted(canonical.objects("function")) == ["public.set_updated_at()"]
    assert sorted(canonical.objects("trigger")) == [
        "public.customers.customers_set_updated_at",
        "public.execution_tasks.execution_tasks_set_updated_at",
        "public.orders.orders_set_updated_at",
    ]
    assert sorted(canonical.objects("constraint")) == [
        "public.customers.customers_email_shape",
        "public.customers.customers_name_length",
        "public.customers.customers_pkey",
        "public.execution_tasks.execution_tasks_attempts_nonnegative",
        "public.execution_tasks.execution_tasks_finished_after_started",
        "public.execution_tasks.execution_tasks_payload_is_object",
        "public.execution_tasks.execution_tasks_pkey",
        "public.execution_tasks.execution_tasks_status_valid",
        "public.orders.orders_customer_id_fkey",
        "public.orders.orders_order_details_is_object",
        "public.orders.orders_pkey",
        "public.payment_events.payment_events_amount_nonnegative",
        "public.payment_events.payment_events_currency_iso4217",
        "public.payment_events.payment_events_customer_id_fkey",
        "public.payment_events.payment_events_event_type_shape",
        "public.payment_events.payment_events_pkey",
        "public.payment_events.payment_events_stripe_event_id_key",
        "public.payment_events.payment_events_stripe_event_id_shape",
        "public.task_outbox.task_outbox_pkey",
        "public.task_outbox.task_outbox_task_id_fkey",
    ]
    assert sorted(canonical.objects("index")) == [
        "public.customers_email_lower_key",
        "public.customers_pkey",
        "public.execution_tasks_idempotency_key_key",
        "public.execution_tasks_pkey",
        "public.execution_tasks_status_created_at_idx",
        "public.idx_ai_model",
        "public.orders_customer_id_idx",
        "public.orders_pkey",
        "public.payment_events_customer_id_idx",
        "public.payment_events_pkey",
        "public.payment_events_received_at_idx",
        "public.payment_events_stripe_event_id_key",
        "public.task_outbox_pkey",
        "public.task_outbox_task_id_idx",
        "public.task_outbox_unsent_idx",
    ]
    assert [schema.name for schema in canonical.schemas] == ["public"]
    assert [extension.name for extension in canonical.extensions] == ["plpgsql"]

    email_key = canonical.objects("index")["public.customers_email_lower_key"]
    assert isinstance(email_key, Index)
    assert email_key.definition == (
        "CREATE UNIQUE INDEX customers_email_lower_key ON public.customers "
        "USING btree (lower(email))"
    )
    assert (email_key.valid, email_key.ready) == (True, True)

    tasks = tables["public.execution_tasks"]
    assert isinstance(tasks, Table)
    assert [(c.position, c.name) for c in tasks.columns] == list(
        enumerate(
            [
                "id", "status", "payload", "attempts", "last_error", "created_at",
                "updated_at", "started_at", "finished_at", "ai_model",
                "idempotency_key", "lease_expires_at",
            ],
            start=1,
        )
    )  # fmt: skip
    identity, status = tasks.columns[0], tasks.columns[1]
    assert (identity.type, identity.identity, identity.default) == ("bigint", "always", None)
    assert identity.sequence is not None and identity.sequence.increment == 1
    assert (status.type, status.not_null, status.default) == ("text", True, "'queued'::text")
    assert status.not_null_constraint == "execution_tasks_status_not_null"

    # Deparsed with search_path pinned: references come out schema-qualified.
    fkey = canonical.objects("constraint")["public.orders.orders_customer_id_fkey"]
    assert isinstance(fkey, Constraint)
    assert fkey.definition == (
        "FOREIGN KEY (customer_id) REFERENCES public.customers(id) ON DELETE CASCADE"
    )


# --- drift, one class at a time -----------------------------------------------

STATUS_CHECK = (
    "CHECK ((status = ANY (ARRAY['queued'::text, 'running'::text, 'succeeded'::text, "
    "'failed'::text, 'dead'::text{}])))"
)
PAUSED = ", 'paused'::text"

DRIFTS = [
    pytest.param(
        "CREATE TABLE public.refunds (id bigint PRIMARY KEY, note text)",
        # Its primary key constraint and index are not listed one by one.
        ["table public.refunds: unexpected (2 columns)"],
        id="added-table",
    ),
    pytest.param(
        "DROP TABLE public.task_outbox",
        ["table public.task_outbox: missing (4 columns)"],
        id="missing-table",
    ),
    pytest.param(
        "ALTER TABLE public.orders ADD COLUMN note text",
        ["column public.orders.note: unexpected (text)"],
        id="added-column",
    ),
    pytest.param(
        # Dropping the column drops its index too: both are reported, column first.
        "ALTER TABLE public.execution_tasks DROP COLUMN ai_model",
        [
            "column public.execution_tasks.ai_model: missing (text)",
            "index public.idx_ai_model: missing "
            "(CREATE INDEX idx_ai_model ON public.execution_tasks USING btree (ai_model))",
        ],
        id="missing-column",
    ),
    pytest.param(
        "ALTER TABLE public.orders ALTER COLUMN customer_id TYPE integer",
        ["column public.orders.customer_id: type changed: expected bigint, found integer"],
        id="column-type",
    ),
    pytest.param(
        "ALTER TABLE public.execution_tasks ALTER COLUMN status SET DEFAULT 'running'",
        [
            "column public.execution_tasks.status: default changed: "
            "expected 'queued'::text, found 'running'::text"
        ],
        id="changed-default",
    ),
    pytest.param(
        "ALTER TABLE public.orders ALTER COLUMN created_at DROP DEFAULT",
        ["column public.orders.created_at: default changed: expected now(), found none"],
        id="dropped-default",
    ),
    pytest.param(
        "ALTER TABLE public.execution_tasks ALTER COLUMN last_error SET NOT NULL",
        [
            "column public.execution_tasks.last_error: nullability changed: "
            "expected nullable, found NOT NULL"
        ],
        id="gained-not-null",
    ),
    pytest.param(
        # The not-null constraint goes with it; that is not reported again.
        "ALTER TABLE public.payment_events ALTER COLUMN currency DROP NOT NULL",
        [
            "column public.payment_events.currency: nullability changed: "
            "expected NOT NULL, found nullable"
        ],
        id="lost-not-null",
    ),
    pytest.param(
        """
        ALTER TABLE public.payment_events ALTER COLUMN currency DROP NOT NULL;
        ALTER TABLE public.payment_events
            ADD CONSTRAINT payment_events_currency_not_null NOT NULL currency NOT VALID;
        """,
        [
            "column public.payment_events.currency: NOT NULL constraint is NOT VALID "
            "(existing rows were never checked); expected a validated one"
        ],
        id="not-valid-not-null",
    ),
    pytest.param(
        "ALTER TABLE public.payment_events DROP CONSTRAINT payment_events_currency_iso4217",
        [
            "constraint public.payment_events.payment_events_currency_iso4217: missing "
            "(CHECK ((currency ~ '^[a-z]{3}$'::text)))"
        ],
        id="dropped-constraint",
    ),
    pytest.param(
        """
        ALTER TABLE public.execution_tasks DROP CONSTRAINT execution_tasks_status_valid;
        ALTER TABLE public.execution_tasks ADD CONSTRAINT execution_tasks_status_valid
            CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'dead', 'paused'));
        """,
        [
            "constraint public.execution_tasks.execution_tasks_status_valid: definition changed: "
            f"expected {STATUS_CHECK.format('')}, found {STATUS_CHECK.format(PAUSED)}"
        ],
        id="changed-check",
    ),
    pytest.param(
        """
        ALTER TABLE public.orders DROP CONSTRAINT orders_customer_id_fkey;
        ALTER TABLE public.orders ADD CONSTRAINT orders_customer_id_fkey
            FOREIGN KEY (customer_id) REFERENCES public.customers (id) ON DELETE CASCADE
            NOT VALID;
        """,
        [
            "constraint public.orders.orders_customer_id_fkey: NOT VALID "
            "(existing rows were never checked); expected a validated constraint"
        ],
        id="not-valid-constraint",
    ),
    pytest.param(
        "ALTER TABLE public.orders ALTER CONSTRAINT orders_customer_id_fkey "
        "DEFERRABLE INITIALLY DEFERRED",
        [
            "constraint public.orders.orders_customer_id_fkey: deferrable changed: "
            "expected false, found true",
            "constraint public.orders.orders_customer_id_fkey: initially deferred changed: "
            "expected false, found true",
        ],
        id="deferrable-constraint",
    ),
    pytest.param(
        "CREATE INDEX orders_created_at_idx ON public.orders (created_at)",
        [
            "index public.orders_created_at_idx: unexpected "
            "(CREATE INDEX orders_created_at_idx ON public.orders USING btree (created_at))"
        ],
        id="extra-index",
    ),
    pytest.param(
        """
        DROP INDEX public.idx_ai_model;
        CREATE INDEX idx_ai_model ON public.execution_tasks (ai_model, status);
        """,
        [
            "index public.idx_ai_model: definition changed: "
            "expected CREATE INDEX idx_ai_model ON public.execution_tasks USING btree (ai_model), "
            "found CREATE INDEX idx_ai_model ON public.execution_tasks "
            "USING btree (ai_model, status)"
        ],
        id="changed-index",
    ),
    pytest.param(
        "DROP TRIGGER orders_set_updated_at ON public.orders",
        [
            "trigger public.orders.orders_set_updated_at: missing (CREATE TRIGGER "
            "orders_set_updated_at BEFORE UPDATE ON public.orders FOR EACH ROW "
            "EXECUTE FUNCTION public.set_updated_at())"
        ],
        id="dropped-trigger",
    ),
    pytest.param(
        "ALTER TABLE public.orders DISABLE TRIGGER orders_set_updated_at",
        ["trigger public.orders.orders_set_updated_at: disabled; expected enabled"],
        id="disabled-trigger",
    ),
    pytest.param(
        """
        CREATE OR REPLACE FUNCTION public.set_updated_at() RETURNS trigger
            LANGUAGE plpgsql
            AS $$
        BEGIN
            NEW.updated_at := clock_timestamp();
            RETURN NEW;
        END;
        $$;
        """,
        [
            "function public.set_updated_at(): definition changed at line 3: "
            "expected 'NEW.updated_at := now();', found 'NEW.updated_at := clock_timestamp();'"
        ],
        id="changed-function-body",
    ),
    pytest.param(
        "ALTER FUNCTION public.set_updated_at() SECURITY DEFINER",
        ["function public.set_updated_at(): security definer changed: expected false, found true"],
        id="changed-function-attribute",
    ),
    pytest.param(
        # The column is re-added with everything it had, but last: only the
        # order differs, and it is reported once for the table.
        """
        ALTER TABLE public.orders DROP COLUMN order_details;
        ALTER TABLE public.orders ADD COLUMN order_details jsonb NOT NULL,
            ADD CONSTRAINT orders_order_details_is_object
                CHECK (jsonb_typeof(order_details) = 'object');
        """,
        [
            "table public.orders: column order changed: "
            "expected (id, customer_id, order_details, created_at, updated_at), "
            "found (id, customer_id, created_at, updated_at, order_details)"
        ],
        id="column-order",
    ),
    pytest.param(
        "ALTER TABLE public.orders ALTER COLUMN id SET INCREMENT BY 10",
        ["column public.orders.id: sequence changed: expected increment=1, found increment=10"],
        id="identity-sequence-options",
    ),
    pytest.param(
        "ALTER TABLE public.orders ENABLE ROW LEVEL SECURITY",
        ["table public.orders: row security changed: expected false, found true"],
        id="row-security",
    ),
    pytest.param(
        "COMMENT ON COLUMN public.orders.order_details IS 'what was bought'",
        [
            "column public.orders.order_details: comment changed: "
            "expected none, found what was bought"
        ],
        id="comment",
    ),
]


@pytest.mark.parametrize(("statements", "expected"), DRIFTS)
def test_each_drift_is_reported_precisely(
    canonical: Catalog, schema_dsn: str, statements: str, expected: list[str]
):
    run(schema_dsn, statements)

    assert drift(canonical, schema_dsn) == expected


def test_invalid_index_left_by_a_cancelled_concurrent_build(canonical: Catalog, schema_dsn: str):
    # Migration 0002's failure mode: CREATE INDEX CONCURRENTLY commits the
    # index entry first, then waits for writers; cancelled while waiting, it
    # leaves idx_ai_model with the right definition but INVALID and not ready.
    run(schema_dsn, "DROP INDEX public.idx_ai_model")
    with (
        psycopg.connect(schema_dsn) as writer,
        psycopg.connect(schema_dsn, autocommit=True) as builder,
    ):
        writer.execute("INSERT INTO public.execution_tasks (ai_model) VALUES ('m1')")
        builder.execute("SET statement_timeout = '300ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            builder.execute(
                "CREATE INDEX CONCURRENTLY idx_ai_model ON public.execution_tasks (ai_model)"
            )
        writer.rollback()

    differences = diff_catalogs(canonical, catalog_of(schema_dsn))

    # One difference: "not ready" is implied by INVALID and not repeated.
    assert [d.describe() for d in differences] == [
        "index public.idx_ai_model: INVALID (a failed CREATE INDEX CONCURRENTLY); "
        "expected a valid index"
    ]
    assert (differences[0].attribute, differences[0].expected, differences[0].actual) == (
        "valid",
        True,
        False,
    )


def test_invalid_index_left_by_a_failed_unique_concurrent_build(make_database, schema_template):
    # The other classic: duplicates make CREATE UNIQUE INDEX CONCURRENTLY fail
    # during its build. Expected: the same index built on clean data.
    clean = make_database(template=schema_template)
    dirty = make_database(template=schema_template)
    unique_index = (
        "CREATE UNIQUE INDEX{} execution_tasks_ai_model_key ON public.execution_tasks (ai_model)"
    )
    run(clean, unique_index.format(""))
    run(dirty, "INSERT INTO public.execution_tasks (ai_model) VALUES ('m1'), ('m1')")
    with pytest.raises(psycopg.errors.UniqueViolation):
        run(dirty, unique_index.format(" CONCURRENTLY"))

    assert drift(catalog_of(clean), dirty) == [
        "index public.execution_tasks_ai_model_key: INVALID (a failed CREATE INDEX "
        "CONCURRENTLY); expected a valid index"
    ]


def test_differences_come_in_a_fixed_order(canonical: Catalog, schema_dsn: str):
    # Containers before contents (kind order), then by name: stable output
    # whatever order the drift happened in.
    run(
        schema_dsn,
        """
        CREATE INDEX payment_events_currency_idx ON public.payment_events (currency);
        ALTER TABLE public.payment_events ADD COLUMN refunded boolean;
        CREATE TABLE public.audit_log (id bigint);
        ALTER TABLE public.customers ALTER COLUMN name DROP NOT NULL;
        CREATE SCHEMA reporting;
        """,
    )

    differences = diff_catalogs(canonical, catalog_of(schema_dsn))

    assert [(d.kind, d.name, d.change) for d in differences] == [
        ("schema", "reporting", "unexpected"),
        ("table", "public.audit_log", "unexpected"),
        ("column", "public.customers.name", "changed"),
        ("column", "public.payment_events.refunded", "unexpected"),
        ("index", "public.payment_events_currency_idx", "unexpected"),
    ]


# --- dropped columns and physical order ---------------------------------------


def test_a_dropped_column_gap_does_not_change_the_fingerprint(canonical: Catalog, schema_dsn: str):
    # A down -> up of the newest column: lease_expires_at (0003) is dropped and
    # re-added. It lands last again, but at attnum 13 (12 is the dropped
    # column's gap). Positions count live columns only, so the catalog is the
    # canonical one.
    run(
        schema_dsn,
        """
        ALTER TABLE public.execution_tasks DROP COLUMN lease_expires_at;
        ALTER TABLE public.execution_tasks ADD COLUMN lease_expires_at timestamptz;
        """,
    )
    with psycopg.connect(schema_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT attnum FROM pg_attribute "
            "WHERE attrelid = 'public.execution_tasks'::regclass AND attname = 'lease_expires_at'"
        ).fetchone()
    assert row == (13,)  # the gap is real

    assert catalog_of(schema_dsn).fingerprint() == canonical.fingerprint()


def test_a_column_added_after_a_dropped_one_keeps_its_live_position(make_database):
    # (a, b) built directly vs. (a), add x, drop x, add b: b's attnum is 3, its
    # live position 2, the same as in the direct build.
    direct, detour = make_database(), make_database()
    run(direct, "CREATE TABLE public.t (a int, b text)")
    run(
        detour,
        """
        CREATE TABLE public.t (a int);
        ALTER TABLE public.t ADD COLUMN x int;
        ALTER TABLE public.t DROP COLUMN x;
        ALTER TABLE public.t ADD COLUMN b text;
        """,
    )

    assert catalog_of(direct).fingerprint() == catalog_of(detour).fingerprint()


def test_dropping_and_re_adding_a_middle_column_moves_it_last(make_database):
    # What is true, and what the contract check relies on: a down that drops a
    # middle column and an up that re-adds it do NOT round-trip. The column
    # comes back last, and that is a difference.
    original, rebuilt = make_database(), make_database()
    run(original, "CREATE TABLE public.t (a int, b text, c date)")
    run(
        rebuilt,
        """
        CREATE TABLE public.t (a int, b text, c date);
        ALTER TABLE public.t DROP COLUMN b;
        ALTER TABLE public.t ADD COLUMN b text;
        """,
    )
    expected, actual = catalog_of(original), catalog_of(rebuilt)

    assert expected.fingerprint() != actual.fingerprint()
    assert [d.describe() for d in diff_catalogs(expected, actual)] == [
        "table public.t: column order changed: expected (a, b, c), found (a, c, b)"
    ]


# --- other object kinds --------------------------------------------------------

OTHER_KINDS = """
CREATE EXTENSION citext;
CREATE SCHEMA reporting;
CREATE TYPE public.task_state AS ENUM ('queued', 'running');
CREATE DOMAIN public.currency_code AS text COLLATE "C" DEFAULT 'usd' NOT NULL
    CONSTRAINT currency_code_shape CHECK (VALUE ~ '^[a-z]{3}$');
CREATE TYPE public.money_amount AS (amount_minor bigint, currency text);
CREATE TYPE public.float_range AS RANGE (subtype = float8);
CREATE SEQUENCE public.invoice_number START 1000 INCREMENT 5;
CREATE VIEW public.recent_orders AS
    SELECT id, customer_id FROM public.orders WHERE created_at > now() - interval '1 day';
CREATE MATERIALIZED VIEW public.order_counts AS
    SELECT customer_id, count(*) AS orders FROM public.orders GROUP BY customer_id;
CREATE UNIQUE INDEX order_counts_customer_id_key ON public.order_counts (customer_id);
CREATE POLICY orders_by_customer ON public.orders USING (customer_id = 42);
CREATE TABLE public.events (id bigint, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE public.events_2025 PARTITION OF public.events
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
"""


def test_other_object_kinds_are_read_and_reported(canonical: Catalog, schema_dsn: str):
    run(schema_dsn, OTHER_KINDS)
    actual = catalog_of(schema_dsn)

    # citext's own functions and types belong to the extension, the range's
    # constructors to the range, the view's index to the view: none is listed.
    assert drift(canonical, schema_dsn) == [
        "schema reporting: unexpected",
        "extension citext: unexpected (version 1.8)",  # PG18's contrib,
        "type public.currency_code: unexpected (domain)",
        "type public.float_range: unexpected (range)",
        "type public.money_amount: unexpected (composite)",
        "type public.task_state: unexpected (enum)",
        "sequence public.invoice_number: unexpected",
        "table public.events: unexpected (2 columns)",
        "table public.events_2025: unexpected (2 columns)",
        "view public.order_counts: unexpected (materialized view)",
        "view public.recent_orders: unexpected (view)",
        "policy public.orders.orders_by_customer: unexpected",
    ]
    domain = actual.objects("type")["public.currency_code"]
    assert isinstance(domain, TypeDef)
    assert (domain.base_type, domain.default) == ("text", "'usd'::text")
    assert domain.collation == 'pg_catalog."C"'  # the domain's own, not text's
    partition = actual.objects("table")["public.events_2025"]
    assert isinstance(partition, Table)
    assert partition.partition_bound == "FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')"
    assert partition.parents == ("public.events",)
    # Everything survives the JSON round trip, nested records included.
    assert Catalog.from_dict(json.loads(json.dumps(actual.to_dict()))) == actual


def test_changes_to_other_object_kinds_are_reported(schema_dsn: str):
    run(schema_dsn, OTHER_KINDS)
    before = catalog_of(schema_dsn)
    run(
        schema_dsn,
        """
        ALTER TYPE public.task_state ADD VALUE 'done';
        ALTER DOMAIN public.currency_code DROP CONSTRAINT currency_code_shape;
        ALTER DOMAIN public.currency_code ADD CONSTRAINT currency_code_shape
            CHECK (VALUE ~ '^[a-z]{3}$') NOT VALID;
        ALTER SEQUENCE public.invoice_number INCREMENT 10;
        CREATE OR REPLACE VIEW public.recent_orders AS
            SELECT id, customer_id FROM public.orders WHERE created_at > now() - interval '2 days';
        DROP INDEX public.order_counts_customer_id_key;
        ALTER POLICY orders_by_customer ON public.orders USING (customer_id = 7);
        """,
    )

    assert [d.describe() for d in diff_catalogs(before, catalog_of(schema_dsn))] == [
        "type public.currency_code: constraints changed: "
        "expected (currency_code_shape CHECK ((VALUE ~ '^[a-z]{3}$'::text))), "
        "found (currency_code_shape CHECK ((VALUE ~ '^[a-z]{3}$'::text)) NOT VALID)",
        "type public.task_state: labels changed: "
        "expected (queued, running), found (queued, running, done)",
        "sequence public.invoice_number: increment changed: expected 5, found 10",
        "index public.order_counts_customer_id_key: missing (CREATE UNIQUE INDEX "
        "order_counts_customer_id_key ON public.order_counts USING btree (customer_id))",
        "view public.recent_orders: definition changed at line 4: "
        "expected \"WHERE (created_at > (now() - '1 day'::interval));\", "
        "found \"WHERE (created_at > (now() - '2 days'::interval));\"",
        "policy public.orders.orders_by_customer: using changed: "
        "expected (customer_id = 42), found (customer_id = 7)",
    ]


# --- scope, determinism, serialisation ----------------------------------------


RUNNER_HISTORY_COLUMNS = """
    version integer PRIMARY KEY, name text NOT NULL, state text NOT NULL,
    up_sha256 text NOT NULL, down_sha256 text NOT NULL, verify_sha256 text NOT NULL
"""


def test_rollgates_legacy_history_table_is_ignored_but_another_tools_is_not(
    canonical: Catalog, schema_dsn: str
):
    # Rollgate's history in its legacy location (public, before the move to
    # the rollgate schema) is recognised by its checksum columns and left out
    # with everything on it ...
    run(
        schema_dsn,
        f"""
        CREATE TABLE public.schema_migrations ({RUNNER_HISTORY_COLUMNS});
        CREATE INDEX schema_migrations_state_idx ON public.schema_migrations (state);
        """,
    )
    assert catalog_of(schema_dsn).fingerprint() == canonical.fingerprint()

    # ... while Rails' (or golang-migrate's) table of that name is project
    # schema like any other, and compared.
    run(schema_dsn, "CREATE TABLE app_rails (version text PRIMARY KEY)")
    run(schema_dsn, "DROP TABLE public.schema_migrations")
    run(schema_dsn, "ALTER TABLE app_rails RENAME TO schema_migrations")
    assert [d.describe() for d in diff_catalogs(canonical, catalog_of(schema_dsn))] == [
        "table public.schema_migrations: unexpected (1 columns)"
    ]


def test_the_rollgate_schema_is_never_read(canonical: Catalog, schema_dsn: str):
    run(
        schema_dsn,
        f"""
        CREATE SCHEMA rollgate;
        CREATE TABLE rollgate.schema_migrations ({RUNNER_HISTORY_COLUMNS});
        CREATE FUNCTION rollgate.touch() RETURNS int LANGUAGE sql AS 'SELECT 1';
        """,
    )
    catalog = catalog_of(schema_dsn)

    assert catalog.fingerprint() == canonical.fingerprint()
    assert "rollgate" not in [schema.name for schema in catalog.schemas]
    with pytest.raises(CannotRun, match="rollgate"):
        catalog_of(schema_dsn, scope=CatalogScope(schemas=("public", "rollgate")))


APP_SCHEMA = """
CREATE SCHEMA app;
CREATE TYPE app.plan AS ENUM ('free', 'paid');
CREATE DOMAIN app.handle AS text CHECK (VALUE ~ '^[a-z]+$');
CREATE SEQUENCE app.invoice_number START 100;
CREATE TABLE app.accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    handle app.handle NOT NULL UNIQUE,
    plan app.plan NOT NULL DEFAULT 'free',
    owner_id bigint
);
CREATE INDEX accounts_owner_idx ON app.accounts (owner_id);
ALTER TABLE app.accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY accounts_own ON app.accounts USING (owner_id = 42);
CREATE VIEW app.paid_accounts AS SELECT id, handle FROM app.accounts WHERE plan = 'paid';
CREATE FUNCTION app.upgrade(account bigint) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = app, pg_temp
    AS $$ BEGIN UPDATE accounts SET plan = 'paid' WHERE id = account; END $$;
CREATE FUNCTION app.stamp() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER accounts_stamp BEFORE UPDATE ON app.accounts
    FOR EACH ROW EXECUTE FUNCTION app.stamp();
"""


def test_every_user_schema_is_read_by_default(canonical: Catalog, schema_dsn: str):
    run(schema_dsn, APP_SCHEMA)
    catalog = catalog_of(schema_dsn)

    assert [schema.name for schema in catalog.schemas] == ["app", "public"]
    assert set(catalog.objects("table")) == {*canonical.objects("table"), "app.accounts"}
    assert {"app.plan", "app.handle"} <= set(catalog.objects("type"))
    assert "app.invoice_number" in catalog.objects("sequence")
    assert "app.paid_accounts" in catalog.objects("view")
    assert "app.accounts.accounts_own" in catalog.objects("policy")
    assert "app.accounts.accounts_stamp" in catalog.objects("trigger")
    assert {"app.accounts_owner_idx", "app.accounts_handle_key"} <= set(catalog.objects("index"))
    assert "app.accounts.accounts_pkey" in catalog.objects("constraint")
    accounts = catalog.objects("table")["app.accounts"]
    assert isinstance(accounts, Table) and accounts.row_security
    assert [(c.name, c.type) for c in accounts.columns][1:3] == [
        ("handle", "app.handle"),
        ("plan", "app.plan"),
    ]

    # What matters for security is recorded on a function in any schema.
    upgrade = catalog.objects("function")["app.upgrade(account bigint)"]
    assert isinstance(upgrade, Function)
    assert (upgrade.security_definer, upgrade.config) == (True, ("search_path=app, pg_temp",))
    assert (upgrade.language, upgrade.volatility) == ("plpgsql", "volatile")
    assert upgrade.definition is not None and "UPDATE accounts" in upgrade.definition


@pytest.mark.parametrize(
    "change, expected",
    [
        pytest.param(
            "ALTER FUNCTION app.upgrade(bigint) SECURITY INVOKER",
            "function app.upgrade(account bigint): security definer changed: "
            "expected true, found false",
            id="security-definer",
        ),
        pytest.param(
            "ALTER FUNCTION app.upgrade(bigint) RESET search_path",
            "function app.upgrade(account bigint): config changed: "
            "expected (search_path=app, pg_temp), found ()",
            id="search-path",
        ),
        pytest.param(
            "ALTER FUNCTION app.upgrade(bigint) STABLE",
            "function app.upgrade(account bigint): volatility changed: "
            "expected volatile, found stable",
            id="volatility",
        ),
        pytest.param(
            "ALTER TABLE app.accounts ADD COLUMN planted text",
            "column app.accounts.planted: unexpected (text)",
            id="column",
        ),
        pytest.param(
            "ALTER TYPE app.plan ADD VALUE 'team'",
            "type app.plan: labels changed: expected (free, paid), found (free, paid, team)",
            id="enum",
        ),
    ],
)
def test_drift_in_a_custom_schema_is_caught(schema_dsn: str, change: str, expected: str):
    run(schema_dsn, APP_SCHEMA)
    before = catalog_of(schema_dsn)
    run(schema_dsn, change)

    assert drift(before, schema_dsn) == [expected]


def test_extension_objects_are_left_out_and_the_extension_recorded(
    canonical: Catalog, schema_dsn: str
):
    run(
        schema_dsn,
        """
        CREATE SCHEMA ext;
        CREATE EXTENSION citext SCHEMA ext;
        CREATE EXTENSION hstore SCHEMA public VERSION '1.7';
        CREATE TABLE public.tags (id bigint PRIMARY KEY, label ext.citext, extra hstore);
        CREATE FUNCTION ext.shout(value ext.citext) RETURNS text
            LANGUAGE sql IMMUTABLE RETURN upper(value::text);
        """,
    )
    catalog = catalog_of(schema_dsn)

    extensions = {x.name: (x.version, x.schema) for x in catalog.extensions}
    assert extensions["citext"][1] == "ext" and extensions["citext"][0]
    assert extensions["hstore"] == ("1.7", "public")
    # The extension's own types and functions (hundreds, for these two) are
    # left out; the schema that holds them, and what the user put there, are not.
    assert [schema.name for schema in catalog.schemas] == ["ext", "public"]
    assert set(catalog.objects("type")) == set(canonical.objects("type"))
    assert set(catalog.objects("function")) == {
        *canonical.objects("function"),
        "ext.shout(value ext.citext)",
    }
    tags = catalog.objects("table")["public.tags"]
    assert isinstance(tags, Table)
    assert [c.type for c in tags.columns] == ["bigint", "ext.citext", "public.hstore"]

    # A different extension version is drift; what the update adds to the
    # extension's own objects is not.
    run(schema_dsn, "ALTER EXTENSION hstore UPDATE TO '1.8'")
    assert drift(catalog, schema_dsn) == [
        "extension hstore: version changed: expected 1.7, found 1.8"
    ]


def test_scope_narrows_schemas_and_excludes_tables(canonical: Catalog, schema_dsn: str):
    run(schema_dsn, APP_SCHEMA)

    only_app = catalog_of(schema_dsn, scope=CatalogScope(schemas=("app",)))
    assert [schema.name for schema in only_app.schemas] == ["app"]
    assert set(only_app.objects("table")) == {"app.accounts"}
    assert "public.set_updated_at()" not in only_app.objects("function")

    only_public = catalog_of(schema_dsn, scope=CatalogScope(schemas=("public",)))
    assert only_public.fingerprint() == canonical.fingerprint()

    # Excluded tables go with everything on them (indexes, policies, triggers).
    for excluded in ("app.accounts", "accounts"):
        narrowed = catalog_of(schema_dsn, scope=CatalogScope(exclude=(excluded,)))
        assert "app.accounts" not in narrowed.objects("table")
        assert not [name for name in narrowed.objects("index") if name.startswith("app.")]
        assert not narrowed.objects("policy") and not narrowed.objects("trigger").keys() - set(
            canonical.objects("trigger")
        )
    # A qualified name excludes only that schema's table.
    run(schema_dsn, "CREATE TABLE public.accounts (id int)")
    narrowed = catalog_of(schema_dsn, scope=CatalogScope(exclude=("app.accounts",)))
    assert "public.accounts" in narrowed.objects("table")


def test_fingerprint_is_stable_across_reads_and_sessions(canonical: Catalog, schema_dsn: str):
    # Deparsed text depends on session settings (search_path qualifies names,
    # TimeZone and DateStyle print constants): the reader pins them.
    with psycopg.connect(schema_dsn, autocommit=True) as conn:
        first = read_catalog(conn)
        second = read_catalog(conn)
        conn.execute("SET search_path = ''")
        conn.execute("SET TimeZone = 'Pacific/Auckland'")
        conn.execute("SET DateStyle = 'SQL, DMY'")
        odd_session = read_catalog(conn)

    assert first.fingerprint() == second.fingerprint() == odd_session.fingerprint()
    assert first.fingerprint() == canonical.fingerprint()


def test_reading_inside_a_transaction_leaves_it_as_it_was(canonical: Catalog, schema_dsn: str):
    with psycopg.connect(schema_dsn) as conn:
        conn.execute("SET search_path = public")
        conn.execute("CREATE TABLE public.pending (id int)")  # uncommitted

        catalog = read_catalog(conn)

        assert "public.pending" in catalog.objects("table")  # sees its own transaction
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert conn.execute("SHOW search_path").fetchone() == ("public",)
        conn.rollback()

        # Not in autocommit and idle: the read opens and closes its own transaction.
        assert read_catalog(conn).fingerprint() == canonical.fingerprint()
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_to_dict_and_from_dict_round_trip(canonical: Catalog):
    stored = json.dumps(canonical.to_dict(), sort_keys=True)
    restored = Catalog.from_dict(json.loads(stored))

    assert restored == canonical
    assert restored.fingerprint() == canonical.fingerprint()
    assert json.loads(stored)["format"] == 1


def test_from_dict_refuses_other_formats_and_malformed_data(canonical: Catalog):
    data = canonical.to_dict()
    with pytest.raises(CannotRun, match="format"):
        Catalog.from_dict({**data, "format": 99})
    broken = json.loads(json.dumps(data))
    del broken["tables"][0]["columns"][0]["type"]
    with pytest.raises(CannotRun, match="malformed catalog"):
        Catalog.from_dict(broken)


def test_catalog_order_is_canonical_however_it_was_built(canonical: Catalog):
    # Sections are sorted on construction, so == and fingerprints never depend
    # on the order a caller (or a query plan) produced the objects in.
    shuffled = Catalog(
        tables=tuple(reversed(canonical.tables)),
        indexes=tuple(reversed(canonical.indexes)),
    )
    in_order = Catalog(tables=canonical.tables, indexes=canonical.indexes)

    assert shuffled == in_order
    assert shuffled.fingerprint() == in_order.fingerprint()
    assert [t.name for t in shuffled.tables] == sorted(t.name for t in canonical.tables)


def test_system_schemas_are_refused(schema_dsn: str):
    with pytest.raises(CannotRun, match="pg_catalog"):
        catalog_of(schema_dsn, scope=CatalogScope(schemas=("public", "pg_catalog")))


def test_differences_serialise(canonical: Catalog, schema_dsn: str):
    run(schema_dsn, "ALTER TABLE public.orders ALTER COLUMN customer_id TYPE integer")
    (difference,) = diff_catalogs(canonical, catalog_of(schema_dsn))

    assert difference == Difference(
        "column", "public.orders.customer_id", "changed", "bigint", "integer", "type"
    )
    assert json.loads(json.dumps(difference.to_dict()))["message"] == difference.describe()


@pytest.mark.docker
def test_embedded_and_docker_servers_give_one_catalog(
    embedded_server: ThrowawayPostgres, docker_server: ThrowawayPostgres
):
    # Same major, different builds (wheel vs Debian packages), locales and
    # defaults: nothing server-specific may leak into the catalog.
    catalogs = []
    for server in (embedded_server, docker_server):
        name = f"catalog_x_{secrets.token_hex(3)}"
        dsn = create_database(server, name)
        try:
            run(dsn, SCHEMA_SQL.read_text())
            run(dsn, OTHER_KINDS)
            catalogs.append(catalog_of(dsn))
        finally:
            drop_database(server, name)
    on_embedded, on_docker = catalogs

    assert diff_catalogs(on_embedded, on_docker) == []
    assert on_embedded.fingerprint() == on_docker.fingerprint()
