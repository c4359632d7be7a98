"""The one error hierarchy of Rollgate.

Every expected failure is a ``RollgateError``. Its category decides the exit
code, and that mapping lives in exactly one place: ``rollgate.error_handler``.

* ``CheckFailed`` -> exit 1: a check found a problem, or an action was refused
  (a changed migration file, a lock held by another runner, a failed verify).
* ``CannotRun``   -> exit 2: the tool could not do its job at all (bad usage,
  bad config, an unreachable database, a missing tool).

Anything else that escapes is a bug and exits 3.

Messages are written for the person at the terminal: say what was checked,
name the file or object, and say how to fix it when we know. ``details`` carries
the same facts for ``--json`` consumers.
"""

from __future__ import annotations

from typing import Any


class RollgateError(Exception):
    """Root of every expected Rollgate failure."""

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


class CheckFailed(RollgateError):
    """A check found a problem or an action was refused (exit 1)."""


class CannotRun(RollgateError):
    """The tool could not run: usage, config, unreachable database (exit 2)."""


class DatabaseUnreachable(CannotRun):
    """Could not connect to the database at all."""


class ToolUnavailable(CannotRun):
    """An external tool (squawk, docker, pg_dump) is missing or crashed."""
