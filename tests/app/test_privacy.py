"""A full run of web and worker processes, with personal data planted everywhere it can
enter, and every log line of both processes scanned for it."""

from __future__ import annotations

import datetime as dt
import json
import signal
from collections.abc import Callable

import psycopg
import pytest

from tests.app.conftest import (
    WEBHOOK_SECRET,
    AppProcess,
    Queues,
    http_get,
    http_post,
    stripe_event,
    stripe_signature,
    wait_until,
)

pytestmark = pytest.mark.slow

EMAIL = "zelda.planted@example.org"
NAME = "Zelda Plantedname"
CARD = "4000056655665556"
PLANTED = (EMAIL, NAME, CARD, "Plantedname", "zelda.planted", WEBHOOK_SECRET)


def test_no_personal_data_or_secret_in_any_log_line(
    app_env: dict[str, str], queues: Queues, start_app: Callable[..., AppProcess]
) -> None:
    dsn = app_env["DATABASE_URL"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO customers (name, email) VALUES (%s, %s)", (NAME, EMAIL))
    web = start_app("web", app_env)
    worker = start_app("worker", app_env)
    pii = {"email": EMAIL, "name": NAME, "card": CARD}

    ok = http_post(web.url + "/tasks", {"payload": pii}, {"Idempotency-Key": "k1"})
    doomed = http_post(web.url + "/tasks", {"payload": {**pii, "fail": True}})
    assert (ok[0], doomed[0]) == (201, 201)
    # Retried, and the same key with a different body: a conflict.
    assert http_post(web.url + "/tasks", {"payload": pii}, {"Idempotency-Key": "k1"})[0] == 200
    assert (
        http_post(web.url + "/tasks", {"payload": {"x": EMAIL}}, {"Idempotency-Key": "k1"})[0]
        == 409
    )
    # Invalid requests carrying personal data.
    assert http_post(web.url + "/tasks", {"payload": pii, EMAIL: NAME})[0] == 422
    assert http_post(web.url + "/tasks", {"payload": pii, "ai_model": EMAIL})[0] == 422

    charge = stripe_event(email=EMAIL, extra={"description": f"order for {NAME} card {CARD}"})
    for _ in range(2):  # recorded, then a duplicate
        assert (
            http_post(
                web.url + "/webhooks/stripe", charge, {"Stripe-Signature": stripe_signature(charge)}
            )[0]
            == 200
        )
    forged = stripe_signature(charge, secret="whsec_forged_0000000000")
    assert http_post(web.url + "/webhooks/stripe", charge, {"Stripe-Signature": forged})[0] == 400
    unknown = stripe_event("customer.updated", email=EMAIL)
    assert (
        http_post(
            web.url + "/webhooks/stripe", unknown, {"Stripe-Signature": stripe_signature(unknown)}
        )[0]
        == 200
    )
    today = dt.datetime.now(dt.UTC).date()
    status, report = http_get(f"{web.url}/roi?from={today}&to={today}")
    assert status == 200 and report["daily"][0]["gross_minor"] == 1999

    def finished() -> bool:
        with psycopg.connect(dsn, autocommit=True) as conn:
            statuses: dict[int, str] = dict(
                conn.execute("SELECT id, status FROM execution_tasks").fetchall()
            )
        return statuses == {ok[1]["id"]: "succeeded", doomed[1]["id"]: "failed"}

    wait_until(finished, 60, "both tasks to finish")
    wait_until(
        lambda: queues.count(queues.dlq_url) == 1, 30, "the failed task's message in the DLQ"
    )
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why.
    assert web.terminate() in (0, -signal.SIGTERM)
    assert worker.terminate() == 0

    lines = web.log_lines() + worker.log_lines()
    assert len(lines) > 20
    for line in lines:
        record = json.loads(line)  # every line is structured JSON (logs and EMF alike)
        assert isinstance(record, dict)
        for planted in PLANTED:
            assert planted.lower() not in line.lower(), f"{planted!r} leaked into: {line}"
    names = {event.get("event") for event in web.events() + worker.events()}
    assert {
        "task_created",
        "task_published",
        "task_started",
        "task_succeeded",
        "task_retry_scheduled",
        "task_failed",
        "webhook_recorded",
        "webhook_duplicate",
        "webhook_rejected",
        "webhook_ignored",
        "http_request",
        "web_stopped",
        "worker_stopped",
    } <= names
    emf_metrics = {
        metric["Name"]
        for record in web.events() + worker.events()
        if "_aws" in record
        for directive in record["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    }
    assert {"TasksSucceeded", "TasksFailed", "TaskRetries", "WebhookEventsRecorded"} <= emf_metrics
