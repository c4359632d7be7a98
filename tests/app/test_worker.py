"""The worker as a real process: claims, duplicates, retries to the DLQ, poison, SIGTERM.

Tasks are created with the app's own outbox code and published by its relay
function to moto's SQS; the worker runs as ``python -m app worker``.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest

from app.executor import ReferenceExecutor
from app.outbox import create_task, publish_batch
from app.sqs import task_message
from tests.app.conftest import MAX_RECEIVE, AppProcess, Queues, wait_until

pytestmark = pytest.mark.slow

StartApp = Callable[..., AppProcess]


def submit(dsn: str, queues: Queues, payload: dict[str, Any], ai_model: str | None = None) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        task_id = create_task(
            conn, payload=payload, ai_model=ai_model, idempotency_key=None
        ).task_id
        publish_batch(conn, queues.client, queues.url)
    return task_id


def task(dsn: str, task_id: int) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(
            "SELECT status, attempts, ai_model, last_error, started_at, finished_at "
            "FROM execution_tasks WHERE id = %s",
            (task_id,),
        )
        row = cursor.fetchone()
        assert row is not None
        names = [column.name for column in cursor.description or ()]
        return dict(zip(names, row, strict=True))


def status_is(dsn: str, task_id: int, *statuses: str) -> Callable[[], bool]:
    return lambda: task(dsn, task_id)["status"] in statuses


def events(worker: AppProcess, name: str) -> list[dict[str, Any]]:
    return [event for event in worker.events() if event.get("event") == name]


def test_tasks_run_once_record_their_model_and_duplicates_are_acked(
    app_env: dict[str, str], queues: Queues, start_app: StartApp
) -> None:
    dsn = app_env["DATABASE_URL"]
    default = submit(dsn, queues, {"n": 1})
    chosen = submit(dsn, queues, {"n": 2}, ai_model="model-x")
    # A duplicate delivery: the same task's message, twice more.
    for _ in range(2):
        queues.client.send_message(QueueUrl=queues.url, MessageBody=task_message(default))
    worker = start_app("worker", app_env)
    wait_until(status_is(dsn, default, "succeeded"), what="first task")
    wait_until(status_is(dsn, chosen, "succeeded"), what="second task")
    wait_until(lambda: queues.count(queues.url) == 0, what="every message acked")
    # A message for a task that finished long ago is acked too, and runs nothing.
    queues.client.send_message(QueueUrl=queues.url, MessageBody=task_message(chosen))
    wait_until(lambda: queues.count(queues.url) == 0, what="late message acked")
    assert worker.terminate() == 0
    first, second = task(dsn, default), task(dsn, chosen)
    assert (first["attempts"], second["attempts"]) == (1, 1)
    assert first["ai_model"] == ReferenceExecutor.model
    assert second["ai_model"] == "model-x"
    assert first["finished_at"] >= first["started_at"]
    assert len(events(worker, "task_succeeded")) == 2
    assert len(events(worker, "duplicate_delivery")) == 3
    assert queues.count(queues.dlq_url) == 0


def test_a_failing_task_is_retried_then_failed_and_its_message_reaches_the_dlq(
    app_env: dict[str, str], queues: Queues, start_app: StartApp
) -> None:
    dsn = app_env["DATABASE_URL"]
    doomed = submit(dsn, queues, {"fail": True, "email": "planted@example.com"})
    flaky = submit(dsn, queues, {"fail_times": 1})
    worker = start_app("worker", {**app_env, "ROLLGATE_RETRY_BASE_SECONDS": "1"})
    wait_until(status_is(dsn, flaky, "succeeded"), what="flaky task to succeed on retry")
    wait_until(status_is(dsn, doomed, "failed"), what="doomed task to fail")
    dead = wait_until(lambda: queues.messages(queues.dlq_url), what="message in the DLQ")
    assert worker.process.poll() is None
    assert worker.terminate() == 0
    assert [json.loads(m["Body"])["task_id"] for m in dead] == [doomed]
    failed = task(dsn, doomed)
    assert failed["attempts"] == MAX_RECEIVE
    assert failed["last_error"] == "TaskError: reference executor: planned failure"
    recovered = task(dsn, flaky)
    assert (recovered["attempts"], recovered["last_error"]) == (2, None)
    # Backoff doubles per attempt: 1 s after the first failure, 2 s after the second.
    delays = {
        (e["task_id"], e["attempt"]): e["retry_in_seconds"]
        for e in events(worker, "task_retry_scheduled")
    }
    assert delays == {(doomed, 1): 1, (doomed, 2): 2, (flaky, 1): 1}
    assert [e["task_id"] for e in events(worker, "task_failed")] == [doomed]


def test_a_poison_message_goes_to_the_dlq_and_the_worker_carries_on(
    app_env: dict[str, str], queues: Queues, start_app: StartApp
) -> None:
    dsn = app_env["DATABASE_URL"]
    for body in ("not json at all", '{"task_id": "seven"}', '{"task_id": 999999}'):
        queues.client.send_message(QueueUrl=queues.url, MessageBody=body)
    worker = start_app("worker", app_env)
    wait_until(lambda: queues.count(queues.dlq_url) == 3, what="three poison messages in the DLQ")
    good = submit(dsn, queues, {"after": "poison"})
    wait_until(status_is(dsn, good, "succeeded"), what="a good task after the poison")
    assert worker.terminate() == 0
    assert {e["reason"] for e in events(worker, "poison_message")} == {
        "body is not JSON",
        "body has no positive integer task_id",
        "no such task",
    }


class AgentRecorder(BaseHTTPRequestHandler):
    """Stands in for the ECS agent's task-protection endpoint; records what it was asked."""

    calls: ClassVar[list[tuple[str, str, dict[str, Any]]]] = []

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        AgentRecorder.calls.append(("PUT", self.path, json.loads(self.rfile.read(length))))
        body = b'{"protection": {}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def ecs_agent() -> Iterator[str]:
    AgentRecorder.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), AgentRecorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/task-id"
    server.shutdown()
    server.server_close()


def test_a_long_task_keeps_its_message_and_the_worker_is_protected_while_busy(
    app_env: dict[str, str], queues: Queues, start_app: StartApp, ecs_agent: str
) -> None:
    dsn = app_env["DATABASE_URL"]
    # The visibility timeout (2 s) is much shorter than the task (6 s): without the
    # extension the second worker would receive the message and run the task again.
    env = {**app_env, "ROLLGATE_VISIBILITY_TIMEOUT_SECONDS": "2", "ECS_AGENT_URI": ecs_agent}
    long_task = submit(dsn, queues, {"sleep_seconds": 6})
    first = start_app("worker", env)
    wait_until(status_is(dsn, long_task, "running"), what="the long task to start")
    second = start_app("worker", env)
    wait_until(status_is(dsn, long_task, "succeeded"), timeout=60, what="the long task")
    wait_until(lambda: queues.count(queues.url) == 0, what="its message acked")
    assert first.terminate() == 0 and second.terminate() == 0
    assert task(dsn, long_task)["attempts"] == 1
    assert Path(env["ROLLGATE_HEARTBEAT_FILE"]).exists()
    # Protected while busy, released when idle, through the agent's endpoint.
    protection = [
        body for _m, path, body in AgentRecorder.calls if path.endswith("/task-protection/v1/state")
    ]
    assert protection[:2] == [
        {"ProtectionEnabled": True, "ExpiresInMinutes": 60},
        {"ProtectionEnabled": False},
    ]


def test_sigterm_mid_task_releases_it_and_loses_nothing(
    app_env: dict[str, str], queues: Queues, start_app: StartApp
) -> None:
    dsn = app_env["DATABASE_URL"]
    long_task = submit(dsn, queues, {"sleep_seconds": 600})
    worker = start_app("worker", {**app_env, "ROLLGATE_STOP_GRACE_SECONDS": "0.5"})
    wait_until(status_is(dsn, long_task, "running"), what="the task to start")
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(30) == 0
    released = task(dsn, long_task)
    assert (released["status"], released["attempts"]) == ("queued", 0)
    # Its message is visible again at once, for the next worker.
    [message] = queues.messages(wait=2)
    assert json.loads(message["Body"]) == {"task_id": long_task}
    assert [e["outcome"] for e in events(worker, "task_released")] == ["released"]


def test_sigterm_mid_task_lets_a_short_task_finish(
    app_env: dict[str, str], queues: Queues, start_app: StartApp
) -> None:
    dsn = app_env["DATABASE_URL"]
    short_task = submit(dsn, queues, {"sleep_seconds": 2})
    worker = start_app("worker", {**app_env, "ROLLGATE_STOP_GRACE_SECONDS": "20"})
    wait_until(status_is(dsn, short_task, "running"), what="the task to start")
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(30) == 0
    assert task(dsn, short_task)["status"] == "succeeded"
    assert queues.count(queues.url) == 0


def test_a_task_whose_worker_was_killed_is_reclaimed_after_its_lease(
    app_env: dict[str, str], queues: Queues, start_app: StartApp
) -> None:
    dsn = app_env["DATABASE_URL"]
    # SIGKILL: no handler runs, the row stays `running`. Its message comes back after
    # the visibility timeout (2 s) and the claim takes the row once the lease expires.
    env = {**app_env, "ROLLGATE_VISIBILITY_TIMEOUT_SECONDS": "2"}
    orphan = submit(dsn, queues, {"sleep_seconds": 3})
    doomed = start_app("worker", env)
    wait_until(status_is(dsn, orphan, "running"), what="the task to start")
    doomed.process.kill()
    doomed.process.wait(10)
    assert task(dsn, orphan)["status"] == "running"
    rescuer = start_app("worker", env)
    wait_until(status_is(dsn, orphan, "succeeded"), timeout=60, what="another worker to finish it")
    assert rescuer.terminate() == 0
    assert task(dsn, orphan)["attempts"] == 2
