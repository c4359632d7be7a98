"""The queue worker: long-polls SQS, claims task rows atomically, runs them.

Guarantees, and how:
* a task runs once per delivery that claims it: the claim is one UPDATE that
  moves it from ``queued`` (or ``running`` with an expired lease: its worker
  died) to ``running``; a duplicate delivery or a message for a finished task
  claims nothing and is acknowledged;
* a failure is retried with exponential backoff by changing the message's
  visibility; after ``max_attempts`` runs the task is ``failed`` and its
  message is left to SQS's redrive, which moves it to the DLQ;
* a message that cannot be parsed is left to the redrive too, at once;
* while a task runs, a helper thread extends the message's visibility, the
  task's lease and the heartbeat file;
* on SIGTERM the worker stops polling, lets the task in hand finish within the
  grace period, then interrupts it and releases it (back to ``queued``, the
  message visible again): nothing is lost.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final

import psycopg
from psycopg.rows import tuple_row

from app.executor import Executor, TaskInterrupted, TaskRun, describe_error
from app.logs import get_logger
from app.metrics import Metrics
from app.protection import TaskProtection
from app.settings import Settings
from app.sqs import PoisonMessage, parse_task_message
from infra import outputs

#: SQS caps a message's visibility timeout at 12 hours.
MAX_VISIBILITY_SECONDS: Final = 43200
#: Backoff never exceeds 15 minutes.
MAX_BACKOFF_SECONDS: Final = 900

log = get_logger(role="worker")


@dataclass(frozen=True)
class Claimed:
    task_id: int
    attempt: int
    ai_model: str
    payload: dict[str, Any]


def backoff_seconds(base: float, attempt: int) -> int:
    """Delay before retry ``attempt + 1``: base x 2^(attempt-1), capped."""
    return int(min(base * 2 ** max(attempt - 1, 0), MAX_BACKOFF_SECONDS))


class Worker:
    """One worker process's loop; `run()` returns after a stop request."""

    def __init__(
        self,
        settings: Settings,
        conn: psycopg.Connection[Any],
        sqs: Any,
        executor: Executor,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.conn = conn
        self.sqs = sqs
        self.executor = executor
        self.metrics = metrics
        self.protection = TaskProtection(settings.ecs_agent_uri)
        self.stopping = threading.Event()
        self.cancel = threading.Event()
        self._db_lock = threading.Lock()
        self.heartbeat_path = Path(settings.heartbeat_file)

    # --- lifecycle -------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        log.info("worker_stopping", reason=signal.Signals(signum).name)
        # The task in hand gets the grace period to finish, then it is interrupted.
        timer = threading.Timer(self.settings.stop_grace_seconds, self.cancel.set)
        timer.daemon = True
        timer.start()

    def heartbeat(self) -> None:
        """Touch the file the container health check reads."""
        try:
            self.heartbeat_path.touch()
        except OSError as exc:
            log.warning("heartbeat_failed", error_type=type(exc).__name__)

    def run(self) -> None:
        log.info("worker_started", max_attempts=self.settings.max_attempts)
        while not self.stopping.is_set():
            self.heartbeat()
            self.poll_once()
        self.protection.set(False)
        log.info("worker_stopped")

    def poll_once(self) -> int:
        """One long poll and the messages it returned; how many were handled."""
        try:
            response = self.sqs.receive_message(
                QueueUrl=self.settings.queue_url,
                MaxNumberOfMessages=1,
                WaitTimeSeconds=self.settings.poll_wait_seconds,
                VisibilityTimeout=self.settings.visibility_timeout_seconds,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        except Exception as exc:
            log.warning("receive_failed", error_type=type(exc).__name__)
            self.stopping.wait(1.0)
            return 0
        messages = response.get("Messages", [])
        for message in messages:
            if self.stopping.is_set():
                # Received after the stop request: hand it straight back.
                self._change_visibility(message, 0)
                continue
            self.handle(message)
        return len(messages)

    # --- one message -----------------------------------------------------------

    def handle(self, message: dict[str, Any]) -> None:
        message_id = str(message.get("MessageId", ""))
        receive_count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
        try:
            task_id = parse_task_message(str(message.get("Body", "")))
        except PoisonMessage as exc:
            self._poison(message, message_id, receive_count, str(exc))
            return
        claimed = self._claim(task_id)
        if claimed is None:
            self._not_claimed(message, message_id, task_id)
            return
        self._execute(message, message_id, claimed)

    def _poison(
        self, message: dict[str, Any], message_id: str, receive_count: int, why: str
    ) -> None:
        # Not deleted: visible again at once, so SQS's redrive moves it to the DLQ
        # after maxReceiveCount receives. The worker never crashes on it.
        self.metrics.count(outputs.METRIC_POISON_MESSAGES)
        log.warning(
            "poison_message", message_id=message_id, receive_count=receive_count, reason=why
        )
        self._change_visibility(message, 0)

    def _claim(self, task_id: int) -> Claimed | None:
        with self._db_lock, self.conn.transaction():
            row = self.conn.execute(
                "UPDATE public.execution_tasks SET status = 'running', attempts = attempts + 1, "
                "started_at = now(), finished_at = NULL, "
                "ai_model = coalesce(ai_model, %(model)s), "
                "lease_expires_at = now() + make_interval(secs => %(lease)s) "
                "WHERE id = %(id)s AND (status = 'queued' "
                "  OR (status = 'running' AND lease_expires_at < now())) "
                "RETURNING attempts, ai_model, payload",
                {
                    "id": task_id,
                    "model": self.executor.model,
                    "lease": self.settings.visibility_timeout_seconds,
                },
            ).fetchone()
        if row is None:
            return None
        attempts, ai_model, payload = row
        return Claimed(task_id, int(attempts), str(ai_model), dict(payload))

    def _not_claimed(self, message: dict[str, Any], message_id: str, task_id: int) -> None:
        with self._db_lock, self.conn.transaction():
            row = self.conn.execute(
                "SELECT status, greatest(0, extract(epoch FROM lease_expires_at - now()))::int "
                "FROM public.execution_tasks WHERE id = %s",
                (task_id,),
            ).fetchone()
        if row is None:
            self._poison(message, message_id, 1, "no such task")
            return
        status, lease_left = row
        if status == "succeeded":
            log.info("duplicate_delivery", task_id=task_id, message_id=message_id, status=status)
            self._delete(message)
        elif status == "running":
            # Another worker holds a live lease and its own receipt of the message;
            # look again when that lease would have run out.
            log.info("duplicate_delivery", task_id=task_id, message_id=message_id, status=status)
            self._change_visibility(message, min(int(lease_left) + 1, MAX_VISIBILITY_SECONDS))
        else:
            # failed (or dead): leave the message to SQS's redrive, which takes it to the DLQ.
            log.info("finished_task_message", task_id=task_id, message_id=message_id, status=status)
            self._change_visibility(message, 0)

    def _execute(self, message: dict[str, Any], message_id: str, claimed: Claimed) -> None:
        self.protection.set(True)
        context = {
            "task_id": claimed.task_id,
            "message_id": message_id,
            "attempt": claimed.attempt,
            "ai_model": claimed.ai_model,
        }
        log.info("task_started", **context)
        started = time.monotonic()
        done = threading.Event()
        keeper = threading.Thread(
            target=self._keep_alive, args=(message, claimed, done), name="keep-alive", daemon=True
        )
        keeper.start()
        outcome = "succeeded"
        error: BaseException | None = None
        try:
            self.executor.run(
                TaskRun(claimed.task_id, claimed.attempt, claimed.ai_model, claimed.payload),
                self.cancel,
            )
        except TaskInterrupted:
            outcome = "released"
        except Exception as exc:
            outcome = "error"
            error = exc
        finally:
            done.set()
            keeper.join()
        duration_ms = int((time.monotonic() - started) * 1000)
        if outcome == "succeeded":
            self._finish_success(message, claimed, duration_ms, context)
        elif outcome == "released":
            self._release(message, claimed, duration_ms, context)
        else:
            assert error is not None
            self._finish_failure(message, claimed, error, duration_ms, context)
        if not self.stopping.is_set():
            self.protection.set(False)

    def _keep_alive(self, message: dict[str, Any], claimed: Claimed, done: threading.Event) -> None:
        period = max(self.settings.visibility_timeout_seconds / 3, 0.5)
        while not done.wait(period):
            self.heartbeat()
            self._change_visibility(message, self.settings.visibility_timeout_seconds)
            try:
                with self._db_lock, self.conn.transaction():
                    self.conn.execute(
                        "UPDATE public.execution_tasks "
                        "SET lease_expires_at = now() + make_interval(secs => %s) "
                        "WHERE id = %s AND status = 'running' AND attempts = %s",
                        (
                            self.settings.visibility_timeout_seconds,
                            claimed.task_id,
                            claimed.attempt,
                        ),
                    )
            except psycopg.Error as exc:
                log.warning("lease_extension_failed", error_type=type(exc).__name__)

    def _finish_success(
        self, message: dict[str, Any], claimed: Claimed, duration_ms: int, context: dict[str, Any]
    ) -> None:
        self._update(
            "UPDATE public.execution_tasks SET status = 'succeeded', finished_at = now(), "
            "last_error = NULL, lease_expires_at = NULL "
            "WHERE id = %s AND status = 'running' AND attempts = %s",
            (claimed.task_id, claimed.attempt),
        )
        self._delete(message)
        self.metrics.emit({outputs.METRIC_TASKS_SUCCEEDED: 1})
        self.metrics.milliseconds(outputs.METRIC_TASK_DURATION_MS, duration_ms)
        log.info("task_succeeded", outcome="succeeded", duration_ms=duration_ms, **context)

    def _release(
        self, message: dict[str, Any], claimed: Claimed, duration_ms: int, context: dict[str, Any]
    ) -> None:
        # An interrupted run is not an attempt: the next worker starts it afresh.
        self._update(
            "UPDATE public.execution_tasks SET status = 'queued', attempts = attempts - 1, "
            "started_at = NULL, lease_expires_at = NULL "
            "WHERE id = %s AND status = 'running' AND attempts = %s",
            (claimed.task_id, claimed.attempt),
        )
        self._change_visibility(message, 0)
        log.info("task_released", outcome="released", duration_ms=duration_ms, **context)

    def _finish_failure(
        self,
        message: dict[str, Any],
        claimed: Claimed,
        error: BaseException,
        duration_ms: int,
        context: dict[str, Any],
    ) -> None:
        last_error = describe_error(error)
        error_type = type(error).__name__
        self.metrics.milliseconds(outputs.METRIC_TASK_DURATION_MS, duration_ms)
        if claimed.attempt >= self.settings.max_attempts:
            self._update(
                "UPDATE public.execution_tasks SET status = 'failed', finished_at = now(), "
                "last_error = %s, lease_expires_at = NULL "
                "WHERE id = %s AND status = 'running' AND attempts = %s",
                (last_error, claimed.task_id, claimed.attempt),
            )
            # Visible again now; the next receive exceeds maxReceiveCount and SQS
            # moves the message to the DLQ.
            self._change_visibility(message, 0)
            self.metrics.count(outputs.METRIC_TASKS_FAILED)
            log.error(
                "task_failed",
                outcome="failed",
                duration_ms=duration_ms,
                error_type=error_type,
                max_attempts=self.settings.max_attempts,
                **context,
            )
            return
        delay = backoff_seconds(self.settings.retry_base_seconds, claimed.attempt)
        self._update(
            "UPDATE public.execution_tasks SET status = 'queued', last_error = %s, "
            "lease_expires_at = NULL WHERE id = %s AND status = 'running' AND attempts = %s",
            (last_error, claimed.task_id, claimed.attempt),
        )
        self._change_visibility(message, delay)
        self.metrics.count(outputs.METRIC_TASK_RETRIES)
        log.warning(
            "task_retry_scheduled",
            outcome="retry",
            duration_ms=duration_ms,
            error_type=error_type,
            retry_in_seconds=delay,
            **context,
        )

    # --- helpers ---------------------------------------------------------------

    def _update(self, query: str, params: tuple[Any, ...]) -> None:
        with self._db_lock, self.conn.transaction():
            self.conn.execute(query, params)

    def _delete(self, message: dict[str, Any]) -> None:
        try:
            self.sqs.delete_message(
                QueueUrl=self.settings.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        except Exception as exc:
            # The message comes back; the claim then finds the task finished and acks it.
            log.warning("delete_failed", error_type=type(exc).__name__)

    def _change_visibility(self, message: dict[str, Any], seconds: int) -> None:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.settings.queue_url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=max(0, min(seconds, MAX_VISIBILITY_SECONDS)),
            )
        except Exception as exc:
            log.warning("visibility_change_failed", error_type=type(exc).__name__)


def connect_worker_database(settings: Settings) -> psycopg.Connection[Any]:
    """The worker's one connection (autocommit; transactions are explicit)."""
    return psycopg.connect(
        settings.database_url,
        autocommit=True,
        application_name="rollgate-app-worker",
        connect_timeout=10,
        row_factory=tuple_row,
    )
