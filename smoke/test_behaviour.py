"""What the app relies on the database to enforce, on the migrated, filled database.

Each check writes its own tagged rows and removes them; nothing it asserts
depends on timing. The planner check reads ``EXPLAIN (FORMAT JSON)``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from core.postgres import connect
from smoke.prepare import Prepared


@pytest.fixture
def conn(prepared: Prepared) -> Iterator[psycopg.Connection[Any]]:
    if prepared.migrate_error:
        pytest.skip(f"migrations did not apply: {prepared.migrate_error}")
    with connect(prepared.dsn, application_name="rollgate-smoke") as connection:
        yield connection


def _email() -> str:
    return f"smoke-{secrets.token_hex(6)}@example.com"


def _customer(conn: psycopg.Connection[Any], email: str) -> int:
    row = conn.execute(
        "INSERT INTO public.customers (name, email) VALUES ('Smoke Test', %s) RETURNING id",
        (email,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _rejects(conn: psycopg.Connection[Any], statement: str, params: tuple[Any, ...]) -> str | None:
    """The error's constraint/message if the statement is rejected, else None (rolled back)."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(statement, params)
    except psycopg.errors.IntegrityError as exc:
        return exc.diag.constraint_name or str(exc)
    return None


def test_updated_at_moves_on_update(conn: psycopg.Connection[Any]) -> None:
    customer = _customer(conn, _email())  # committed: now() differs per transaction
    try:
        conn.execute(
            "UPDATE public.customers SET name = 'Smoke Renamed' WHERE id = %s", (customer,)
        )
        row = conn.execute(
            "SELECT created_at, updated_at FROM public.customers WHERE id = %s", (customer,)
        ).fetchone()
        assert row is not None
        assert row[1] > row[0], "customers.updated_at did not move on UPDATE (trigger missing?)"
    finally:
        conn.execute("DELETE FROM public.customers WHERE id = %s", (customer,))


def test_deleting_a_customer_cascades_to_orders(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction(force_rollback=True):
        customer = _customer(conn, _email())
        conn.execute(
            "INSERT INTO public.orders (customer_id, order_details) VALUES (%s, '{\"sku\": 1}')",
            (customer,),
        )
        conn.execute("DELETE FROM public.customers WHERE id = %s", (customer,))
        row = conn.execute(
            "SELECT count(*) FROM public.orders WHERE customer_id = %s", (customer,)
        ).fetchone()
        assert row == (0,), "orders outlived their deleted customer (FK is not ON DELETE CASCADE)"


def test_email_uniqueness_ignores_case(conn: psycopg.Connection[Any]) -> None:
    email = _email()
    with conn.transaction(force_rollback=True):
        _customer(conn, email)
        rejected = _rejects(
            conn,
            "INSERT INTO public.customers (name, email) VALUES ('Smoke Twin', %s)",
            (email.upper(),),
        )
    assert rejected, f"{email.upper()} was accepted next to {email}: uniqueness is case-sensitive"


@pytest.mark.parametrize(
    ("what", "statement", "params"),
    [
        (
            "a bad email",
            "INSERT INTO public.customers (name, email) VALUES ('Smoke', %s)",
            ("not an email",),
        ),
        (
            "a non-object order_details",
            "INSERT INTO public.orders (customer_id, order_details) "
            "SELECT id, %s::jsonb FROM public.customers LIMIT 1",
            ("[1, 2]",),
        ),
        (
            "an unknown task status",
            "INSERT INTO public.execution_tasks (status, payload) VALUES (%s, '{}')",
            ("exploded",),
        ),
    ],
    ids=["bad_email", "non_object_order_details", "unknown_task_status"],
)
def test_invalid_rows_are_rejected(
    conn: psycopg.Connection[Any], what: str, statement: str, params: tuple[Any, ...]
) -> None:
    if what == "a non-object order_details":
        with conn.transaction(force_rollback=True):
            _customer(conn, _email())
            rejected = _rejects(conn, statement, params)
    else:
        rejected = _rejects(conn, statement, params)
    assert rejected, f"{what} was accepted: its CHECK constraint is missing"


def test_payment_events_are_idempotent_on_the_stripe_event_id(
    conn: psycopg.Connection[Any],
) -> None:
    event_id = "evt_smoke" + secrets.token_hex(8)
    insert = (
        "INSERT INTO public.payment_events (stripe_event_id, event_type, amount_minor, currency) "
        "VALUES (%s, 'charge.succeeded', 100, 'usd') ON CONFLICT (stripe_event_id) DO NOTHING"
    )
    with conn.transaction(force_rollback=True):
        conn.execute(insert, (event_id,))
        conn.execute(insert, (event_id,))
        row = conn.execute(
            "SELECT count(*) FROM public.payment_events WHERE stripe_event_id = %s", (event_id,)
        ).fetchone()
    assert row == (1,), f"{event_id} was recorded {row} times: no unique key on stripe_event_id"


def _index_names(plan: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(plan, dict):
        if "Index Name" in plan:
            found.add(str(plan["Index Name"]))
        for value in plan.values():
            found |= _index_names(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= _index_names(value)
    return found


def test_the_planner_uses_idx_ai_model(conn: psycopg.Connection[Any]) -> None:
    conn.execute("ANALYZE public.execution_tasks")
    count_row = conn.execute("SELECT count(*) FROM public.execution_tasks").fetchone()
    model_row = conn.execute(
        "SELECT ai_model FROM public.execution_tasks WHERE ai_model IS NOT NULL "
        "GROUP BY ai_model ORDER BY count(*) LIMIT 1"
    ).fetchone()
    model = model_row[0] if model_row else "smoke-model"
    plan = conn.execute(
        "EXPLAIN (FORMAT JSON) SELECT id, status FROM public.execution_tasks WHERE ai_model = %s",
        (model,),
    ).fetchone()
    assert plan is not None
    document = plan[0] if not isinstance(plan[0], str) else json.loads(plan[0])
    used = _index_names(document)
    assert "idx_ai_model" in used, (
        f"a lookup by ai_model = {model!r} on {count_row[0] if count_row else 0} rows does not "
        f"use idx_ai_model (indexes used: {sorted(used) or 'none, a sequential scan'})"
    )
