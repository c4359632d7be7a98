"""Pluggable task executors, and the deterministic offline reference executor.

An executor runs one task's payload. It must:
* watch ``cancel`` and raise `TaskInterrupted` promptly when it is set (the
  worker is shutting down and will hand the task to another worker);
* raise `TaskError` with a message that holds no personal data for a failure:
  that message is stored in ``last_error``. Any other exception is recorded
  by its type name only.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import threading
from dataclasses import dataclass
from typing import Any, Final, Protocol

#: ``last_error`` never exceeds this many characters.
MAX_ERROR_LENGTH: Final = 300


@dataclass(frozen=True)
class TaskRun:
    """One run of a task, as an executor sees it."""

    task_id: int
    attempt: int
    ai_model: str
    payload: dict[str, Any]


class TaskError(Exception):
    """A task failed; ``str(self)`` is stored, so it must carry no personal data."""


class TaskInterrupted(Exception):
    """The run stopped because the worker is shutting down; the task is released, not failed."""


class Executor(Protocol):
    """What the worker needs of an executor."""

    #: The model used when a task names none.
    model: str

    def run(self, task: TaskRun, cancel: threading.Event) -> None:
        """Run ``task``; return on success, raise `TaskError` or `TaskInterrupted` otherwise."""
        ...


class ReferenceExecutor:
    """Deterministic and offline: no model weights, no network.

    It hashes the payload with the model name (the "inference") and obeys a few
    control keys, so tests and the rehearsal can drive every path:
    ``sleep_seconds`` (a long task; interruptible), ``fail_times`` (fail the
    first N attempts) and ``fail`` (always fail).
    """

    model = "rollgate-reference-1"

    def run(self, task: TaskRun, cancel: threading.Event) -> None:
        payload = task.payload
        sleep = payload.get("sleep_seconds")
        if isinstance(sleep, bool) or not isinstance(sleep, int | float):
            sleep = 0.0
        if sleep > 0 and cancel.wait(min(float(sleep), 3600.0)):
            raise TaskInterrupted
        fail_times = payload.get("fail_times")
        if isinstance(fail_times, int) and task.attempt <= fail_times:
            raise TaskError(f"reference executor: planned failure on attempt {task.attempt}")
        if payload.get("fail") is True:
            raise TaskError("reference executor: planned failure")
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        hashlib.sha256(f"{task.ai_model}\n{canonical}".encode()).hexdigest()


def load_executor(spec: str) -> Executor:
    """``reference`` or ``module:attribute`` (a class or factory taking no arguments)."""
    if spec == "reference":
        return ReferenceExecutor()
    module_name, _, attribute = spec.partition(":")
    factory = getattr(importlib.import_module(module_name), attribute)
    executor: Executor = factory()
    return executor


def describe_error(exc: BaseException) -> str:
    """The bounded, personal-data-free text stored in ``last_error``."""
    if isinstance(exc, TaskError):
        text = f"TaskError: {' '.join(str(exc).split())}"
    else:
        # Arbitrary exception messages can quote data (psycopg's DETAIL lines do): type only.
        text = f"{type(exc).__name__} (message withheld)"
    return text[:MAX_ERROR_LENGTH]
