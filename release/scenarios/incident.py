"""The rehearsal's incident: an executor that fails every task.

The app loads its executor from ``ROLLGATE_EXECUTOR`` (``module:factory``,
see app/executor.py); the rehearsal starts release N+1's worker with
``release.scenarios.incident:FailingExecutor``. The worker records a
non-``TaskError`` failure by its type only and retries the task later, so
no task is lost: after the rollback, release N's worker runs it.
"""

from __future__ import annotations

import threading
from typing import Any


class IncidentFailure(RuntimeError):
    """The injected failure (its type is what the worker stores)."""


class FailingExecutor:
    """Fails every task, as a broken release's worker would."""

    model = "rollgate-reference-1"

    def run(self, task: Any, cancel: threading.Event) -> None:
        raise IncidentFailure("release N+1's worker is broken (rehearsal incident)")
