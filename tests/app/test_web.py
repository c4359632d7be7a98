"""The web API in-process (FastAPI's TestClient) against real Postgres and moto's SQS."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from app.outbox import OutboxRelay
from app.sqs import sqs_client
from app.web import create_app
from tests.app.conftest import (
    Queues,
    free_port,
    settings_for,
    stripe_event,
    stripe_signature,
)


@pytest.fixture
def client(app_env: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(app_env), start_relay=False)) as test_client:
        yield test_client


def relay_of(client: TestClient) -> OutboxRelay:
    relay: OutboxRelay = client.app.state.relay  # type: ignore[attr-defined]
    return relay


def rows(dsn: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def task_ids_in(queues: Queues) -> list[int]:
    return sorted(json.loads(m["Body"])["task_id"] for m in queues.messages())


# --- tasks and the outbox ------------------------------------------------------


def test_a_task_is_stored_with_its_outbox_row_and_published_once(
    client: TestClient, app_env: dict[str, str], queues: Queues
) -> None:
    response = client.post("/tasks", json={"payload": {"n": 1}, "ai_model": "model-a"})
    assert response.status_code == 201
    task_id = response.json()["id"]
    dsn = app_env["DATABASE_URL"]
    assert rows(dsn, "SELECT status, ai_model, payload FROM execution_tasks") == [
        ("queued", "model-a", {"n": 1})
    ]
    assert rows(dsn, "SELECT task_id, sent_at IS NULL FROM task_outbox") == [(task_id, True)]
    assert relay_of(client).publish_pending() == 1
    assert relay_of(client).publish_pending() == 0
    assert rows(dsn, "SELECT sent_at IS NOT NULL FROM task_outbox") == [(True,)]
    assert task_ids_in(queues) == [task_id]


def test_the_idempotency_key_makes_retries_safe(
    client: TestClient, app_env: dict[str, str]
) -> None:
    body = {"payload": {"invoice": 7}}
    first = client.post("/tasks", json=body, headers={"Idempotency-Key": "req-123"})
    again = client.post("/tasks", json=body, headers={"Idempotency-Key": "req-123"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    other = client.post(
        "/tasks", json={"payload": {"invoice": 8}}, headers={"Idempotency-Key": "req-123"}
    )
    assert other.status_code == 409
    assert "Idempotency-Key" in other.json()["detail"]
    dsn = app_env["DATABASE_URL"]
    assert rows(dsn, "SELECT count(*) FROM execution_tasks") == [(1,)]
    assert rows(dsn, "SELECT count(*) FROM task_outbox") == [(1,)]


def test_no_task_is_lost_when_sqs_fails_between_commit_and_send(
    app_env: dict[str, str], queues: Queues
) -> None:
    # The web process's SQS endpoint is dead: nothing listens on that port.
    dead = {**app_env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    with TestClient(create_app(settings_for(dead), start_relay=False)) as client:
        ids = [client.post("/tasks", json={"payload": {"i": i}}).json()["id"] for i in range(3)]
        with pytest.raises(Exception, match="Could not connect"):
            relay_of(client).publish_pending()
    dsn = app_env["DATABASE_URL"]
    # Committed, not sent, not lost.
    assert rows(dsn, "SELECT count(*) FROM task_outbox WHERE sent_at IS NULL") == [(3,)]
    assert queues.count(queues.url) == 0
    # SQS is back: the next pass publishes each task exactly once.
    settings = settings_for(app_env)
    with TestClient(create_app(settings, start_relay=False)) as client:
        relay = relay_of(client)
        assert relay.publish_pending() == 3
        assert relay.publish_pending() == 0
    assert task_ids_in(queues) == sorted(ids)


def test_the_background_relay_publishes_without_being_asked(
    app_env: dict[str, str], queues: Queues
) -> None:
    with TestClient(create_app(settings_for(app_env))) as client:
        task_id = client.post("/tasks", json={"payload": {}}).json()["id"]
        messages = queues.messages(wait=5)
    assert [json.loads(m["Body"])["task_id"] for m in messages] == [task_id]


@pytest.mark.parametrize(
    "body",
    [
        {"payload": [1, 2]},
        {"payload": {"a": 1}, "ai_model": "bad model name with spaces"},
        {"payload": {"a": 1}, "extra": True},
        {"ai_model": "x"},
        {"payload": {"a": "nul\u0000byte"}},
    ],
)
def test_bad_task_requests_get_a_4xx_naming_the_field(
    client: TestClient, app_env: dict[str, str], body: dict[str, Any]
) -> None:
    response = client.post("/tasks", json=body)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("invalid request:")
    assert rows(app_env["DATABASE_URL"], "SELECT count(*) FROM execution_tasks") == [(0,)]


# --- Stripe webhooks -------------------------------------------------------------


def post_webhook(client: TestClient, payload: bytes, signature: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    headers["Stripe-Signature"] = signature if signature is not None else stripe_signature(payload)
    return client.post("/webhooks/stripe", content=payload, headers=headers)


def add_customer(dsn: str, name: str, email: str) -> int:
    [(customer_id,)] = rows(
        dsn, "INSERT INTO customers (name, email) VALUES (%s, %s) RETURNING id", (name, email)
    )
    return int(customer_id)


def test_a_signed_event_is_recorded_once_in_minor_units(
    client: TestClient, app_env: dict[str, str]
) -> None:
    dsn = app_env["DATABASE_URL"]
    customer = add_customer(dsn, "Ada Example", "ada@example.com")
    payload = stripe_event(event_id="evt_once1", amount=1999, email="ADA@example.com")
    first = post_webhook(client, payload)
    second = post_webhook(client, payload)
    assert first.status_code == second.status_code == 200
    assert (first.json()["recorded"], second.json()["recorded"]) == (True, False)
    assert rows(
        dsn,
        "SELECT stripe_event_id, event_type, amount_minor, currency, customer_id "
        "FROM payment_events",
    ) == [("evt_once1", "charge.succeeded", 1999, "usd", customer)]


@pytest.mark.parametrize(
    "tamper",
    ["wrong_secret", "stale_timestamp", "altered_body", "malformed_body", "no_header"],
)
def test_unverifiable_webhooks_get_400_and_write_nothing(
    client: TestClient, app_env: dict[str, str], tamper: str
) -> None:
    payload = stripe_event(event_id="evt_bad1")
    signature: str | None = stripe_signature(payload)
    if tamper == "wrong_secret":
        signature = stripe_signature(payload, secret="whsec_someone_else_000000")
    elif tamper == "stale_timestamp":
        signature = stripe_signature(payload, timestamp=int(time.time()) - 3600)
    elif tamper == "altered_body":
        payload = payload.replace(b"1999", b"1")
    elif tamper == "malformed_body":
        payload = b"{not json"
        signature = stripe_signature(payload)
    response = post_webhook(client, payload, "" if tamper == "no_header" else signature)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("webhook rejected:")
    assert rows(app_env["DATABASE_URL"], "SELECT count(*) FROM payment_events") == [(0,)]


def test_signed_but_invalid_amounts_get_400(client: TestClient, app_env: dict[str, str]) -> None:
    for payload in (
        stripe_event(amount=-5),
        stripe_event(currency="USD"),
        stripe_event(extra={"amount": 19.99}),
    ):
        assert post_webhook(client, payload).status_code == 400
    assert rows(app_env["DATABASE_URL"], "SELECT count(*) FROM payment_events") == [(0,)]


def test_unknown_event_types_are_acknowledged_and_counted(
    client: TestClient, app_env: dict[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    response = post_webhook(client, stripe_event("customer.subscription.paused"))
    assert response.status_code == 200
    assert response.json() == {"received": True, "recorded": False}
    assert rows(app_env["DATABASE_URL"], "SELECT count(*) FROM payment_events") == [(0,)]
    emf = [json.loads(line) for line in capfd.readouterr().out.splitlines() if '"_aws"' in line]
    counted = [
        record
        for record in emf
        if record.get("WebhookEventsIgnored") == 1 and record.get("Stack") == "test"
    ]
    assert counted, emf
    [directive] = counted[0]["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Rollgate"
    assert directive["Dimensions"] == [["Stack"]]


# --- ROI -----------------------------------------------------------------------------


def test_roi_reports_gross_refunds_and_net_per_day_currency_and_customer(
    client: TestClient, app_env: dict[str, str]
) -> None:
    dsn = app_env["DATABASE_URL"]
    ada = add_customer(dsn, "Ada Example", "ada@example.com")
    bob = add_customer(dsn, "Bob Example", "bob@example.com")
    for payload in (
        stripe_event(amount=5000, customer_id=ada),
        stripe_event(amount=2500, customer_id=ada),
        stripe_event("refund.created", amount=1000, customer_id=ada),
        stripe_event(amount=700, currency="eur", customer_id=bob),
        stripe_event(amount=300),
    ):
        assert post_webhook(client, payload).json()["recorded"] is True
    today = dt.datetime.now(dt.UTC).date()
    response = client.get("/roi", params={"from": str(today), "to": str(today)})
    assert response.status_code == 200
    report = response.json()
    assert report["daily"] == [
        {
            "day": str(today),
            "currency": "eur",
            "gross_minor": 700,
            "refunds_minor": 0,
            "net_minor": 700,
        },
        {
            "day": str(today),
            "currency": "usd",
            "gross_minor": 7800,
            "refunds_minor": 1000,
            "net_minor": 6800,
        },
    ]
    by_customer = {(c["customer_id"], c["currency"]): c["net_minor"] for c in report["customers"]}
    assert by_customer == {(ada, "usd"): 6500, (bob, "eur"): 700, (None, "usd"): 300}
    yesterday = today - dt.timedelta(days=1)
    empty = client.get("/roi", params={"from": str(yesterday), "to": str(yesterday)}).json()
    assert empty["daily"] == empty["customers"] == []


def test_roi_rejects_bad_windows(client: TestClient) -> None:
    assert client.get("/roi", params={"from": "2026-02-02", "to": "2026-02-01"}).status_code == 400
    assert client.get("/roi", params={"from": "2024-01-01", "to": "2026-01-01"}).status_code == 400
    assert client.get("/roi", params={"from": "yesterday", "to": "2026-01-01"}).status_code == 422
    assert client.get("/roi").status_code == 422


def test_sqs_client_honours_the_endpoint(app_env: dict[str, str], queues: Queues) -> None:
    client = sqs_client(settings_for(app_env))
    assert client.get_queue_url(QueueName=queues.url.rsplit("/", 1)[1])["QueueUrl"] == queues.url
