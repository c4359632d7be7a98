"""Task creation and the transactional outbox relay.

`create_task` writes the task row and its outbox row in one transaction: both
or neither exist. `OutboxRelay` publishes unsent outbox rows to SQS and marks
them sent in the transaction that holds their row locks (``FOR UPDATE SKIP
LOCKED``, so several relays share the work). SQS failing mid-way leaves rows
unsent and the next pass sends them; the only duplicate left is a send whose
commit then fails, which the worker's atomic claim absorbs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from app.logs import get_logger
from app.metrics import Metrics
from app.sqs import task_message
from infra import outputs

#: SQS SendMessageBatch takes at most 10 entries.
BATCH_SIZE: Final = 10

log = get_logger()


class IdempotencyConflict(Exception):
    """The idempotency key was used before with a different request."""


@dataclass(frozen=True)
class CreatedTask:
    task_id: int
    created: bool


def create_task(
    conn: psycopg.Connection[Any],
    *,
    payload: dict[str, Any],
    ai_model: str | None,
    idempotency_key: str | None,
) -> CreatedTask:
    """Insert a queued task and its outbox row atomically; replay an idempotent retry."""
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO public.execution_tasks (payload, ai_model, idempotency_key) "
            "VALUES (%s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
            (Jsonb(payload), ai_model, idempotency_key),
        ).fetchone()
        if row is not None:
            conn.execute("INSERT INTO public.task_outbox (task_id) VALUES (%s)", (row[0],))
            return CreatedTask(int(row[0]), created=True)
        existing = conn.execute(
            "SELECT id, payload, ai_model FROM public.execution_tasks WHERE idempotency_key = %s",
            (idempotency_key,),
        ).fetchone()
    assert existing is not None  # the conflict was on this key
    task_id, stored_payload, stored_model = existing
    if stored_payload != payload or (ai_model is not None and stored_model != ai_model):
        raise IdempotencyConflict(task_id)
    return CreatedTask(int(task_id), created=False)


class OutboxRelay:
    """Publishes unsent outbox rows; `wake()` asks for a pass now."""

    def __init__(
        self, pool: ConnectionPool[Any], sqs: Any, queue_url: str, metrics: Metrics, interval: float
    ) -> None:
        self.pool = pool
        self.sqs = sqs
        self.queue_url = queue_url
        self.metrics = metrics
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish_pending(self) -> int:
        """One pass: publish what is unsent, batch by batch; the number published."""
        published = 0
        while True:
            with self.pool.connection() as conn:
                count = publish_batch(conn, self.sqs, self.queue_url)
            published += count
            if count < BATCH_SIZE:
                break
        if published:
            self.metrics.count(outputs.METRIC_OUTBOX_PUBLISHED, published)
        return published

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.publish_pending()
            except Exception as exc:
                # SQS or the database is down: the rows stay unsent; retry next pass.
                self.metrics.count(outputs.METRIC_OUTBOX_PUBLISH_FAILURES)
                log.warning("outbox_publish_failed", error_type=type(exc).__name__)


def publish_batch(conn: psycopg.Connection[Any], sqs: Any, queue_url: str) -> int:
    """Send up to `BATCH_SIZE` unsent rows and mark the accepted ones sent, in one transaction."""
    with conn.transaction():
        rows = conn.execute(
            "SELECT id, task_id FROM public.task_outbox WHERE sent_at IS NULL "
            "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (BATCH_SIZE,),
        ).fetchall()
        if not rows:
            return 0
        response = sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(outbox_id), "MessageBody": task_message(int(task_id))}
                for outbox_id, task_id in rows
            ],
        )
        sent = [int(entry["Id"]) for entry in response.get("Successful", [])]
        if sent:
            conn.execute(
                "UPDATE public.task_outbox SET sent_at = now() WHERE id = ANY(%s)", (sent,)
            )
        for failed in response.get("Failed", []):
            log.warning("outbox_entry_rejected", error_code=str(failed.get("Code", ""))[:64])
    for outbox_id, task_id in rows:
        if int(outbox_id) in sent:
            log.info("task_published", task_id=int(task_id), outcome="published")
    return len(sent)
