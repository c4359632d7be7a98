"""The app (this release's, then the previous release's) on the migrated schema.

Parametrized by ``app_under_test``: ``[current]`` is the release being
deployed; ``[previous]`` is N-1, and any failure there means rolling back the
app alone would break (reported as not backward compatible).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from core.postgres import connect
from smoke.apps import MAX_RECEIVE, http_json, stripe_event, stripe_signature, wait_until
from smoke.conftest import AppUnderTest


def _require_ready(app: AppUnderTest) -> None:
    if not app.ready:
        pytest.fail(f"the {app.release} app never became ready: not checked", pytrace=False)


def test_readyz_answers(app_under_test: AppUnderTest) -> None:
    app = app_under_test
    if not app.ready:
        pytest.fail(
            f"the {app.release} app ({app.app.kind} {app.app.image or ''}) did not answer "
            f"/readyz with 200 within {app.readiness['timeout_seconds']:g}s; last answer: "
            f"{json.dumps(app.readiness['last_answer'], default=str)[:600]}; "
            f"logs: {app.app.logs(5)[-600:]}",
            pytrace=False,
        )


def test_a_task_runs_through_queue_and_worker(app_under_test: AppUnderTest) -> None:
    app = app_under_test
    _require_ready(app)
    model = "smoke-model-" + secrets.token_hex(3)
    status, body = http_json(
        app.app.url + "/tasks", {"payload": {"smoke": True}, "ai_model": model}
    )
    assert status == 201, f"POST /tasks answered {status}: {body}"
    task_id = body["id"]

    def finished() -> tuple[Any, ...] | None:
        with connect(app.dsn) as conn:
            row = conn.execute(
                "SELECT status, ai_model FROM public.execution_tasks WHERE id = %s", (task_id,)
            ).fetchone()
        return row if row is not None and row[0] in ("succeeded", "failed", "dead") else None

    row = wait_until(finished, 60)
    assert row == ("succeeded", model), (
        f"task {task_id} ended {row or 'unfinished after 60s'}, expected succeeded with "
        f"ai_model {model}; worker logs: {app.app.logs(5)[-600:]}"
    )


def test_a_signed_webhook_is_recorded_once(app_under_test: AppUnderTest) -> None:
    app = app_under_test
    _require_ready(app)
    event_id = "evt_smoke" + secrets.token_hex(8)
    payload = stripe_event(event_id)
    for _ in range(2):
        status, body = http_json(
            app.app.url + "/webhooks/stripe",
            payload,
            {"Stripe-Signature": stripe_signature(payload)},
        )
        assert status == 200, f"the signed webhook was answered {status}: {body}"
    with connect(app.dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM public.payment_events WHERE stripe_event_id = %s", (event_id,)
        ).fetchone()
    assert row == (1,), f"{event_id} sent twice was recorded {row[0] if row else 0} times"


def test_a_poison_message_reaches_the_dlq(app_under_test: AppUnderTest) -> None:
    app = app_under_test
    _require_ready(app)
    queues = app.queues
    queues.client.send_message(QueueUrl=queues.url, MessageBody="smoke poison: not json")
    arrived = wait_until(lambda: queues.depth(queues.dlq_url) >= 1, app.dlq_timeout, 0.5)
    if not arrived:
        attributes = queues.client.get_queue_attributes(
            QueueUrl=queues.url, AttributeNames=["RedrivePolicy"]
        ).get("Attributes", {})
        redrive = attributes.get("RedrivePolicy")
        why = (
            "the queue has no RedrivePolicy, so nothing ever moves to the DLQ"
            if not redrive
            else f"RedrivePolicy is {redrive}"
        )
        pytest.fail(
            f"a poison message did not reach the DLQ within {app.dlq_timeout:g}s "
            f"(expected after {MAX_RECEIVE} receives): {why}",
            pytrace=False,
        )
