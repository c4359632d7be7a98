"""ECS task scale-in protection: a busy worker is not picked for scale-in.

The ECS agent serves ``$ECS_AGENT_URI/task-protection/v1/state`` inside every
task. Outside ECS (no ``ECS_AGENT_URI``) this is a no-op. A failed call is
logged and ignored: protection is a courtesy that shortens lost work; the
task lease and SQS visibility are what guarantee no task is lost.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Final

from app.logs import get_logger

#: Longer than any task should run; the worker clears protection when idle anyway.
EXPIRES_IN_MINUTES: Final = 60

log = get_logger()


class TaskProtection:
    """Turns protection on when the worker takes a task and off when it is idle again."""

    def __init__(self, agent_uri: str | None) -> None:
        self.agent_uri = agent_uri.rstrip("/") if agent_uri else None
        self.enabled = False

    def set(self, enabled: bool) -> None:
        """Ask the agent for ``enabled``; only transitions are sent."""
        if self.agent_uri is None or enabled == self.enabled:
            return
        body: dict[str, object] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = EXPIRES_IN_MINUTES
        request = urllib.request.Request(  # noqa: S310 (the agent's http:// URI from settings)
            f"{self.agent_uri}/task-protection/v1/state",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="PUT",
        )
        try:
            with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310
                response.read()
        except Exception as exc:
            log.warning("task_protection_failed", protected=enabled, error_type=type(exc).__name__)
            return
        self.enabled = enabled
        log.info("task_protection", protected=enabled)
