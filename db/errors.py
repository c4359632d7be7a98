"""Errors specific to migrations and schemas; the root and categories live in ``core.errors``."""

from __future__ import annotations

from core.errors import CannotRun, CheckFailed, DatabaseUnreachable, RollgateError, ToolUnavailable

__all__ = [
    "CannotRun",
    "CheckFailed",
    "ContractViolation",
    "DatabaseUnreachable",
    "HistoryMismatch",
    "LockLost",
    "LockNotAcquired",
    "MigrationFailed",
    "MigrationFileError",
    "PlanChanged",
    "PrivilegeMissing",
    "RollgateError",
    "ToolUnavailable",
]


class MigrationFileError(CheckFailed):
    """A migration file is missing, malformed or misnamed; nothing was applied."""


class HistoryMismatch(CheckFailed):
    """schema_migrations disagrees with the files (changed checksum, gaps, order)."""


class LockNotAcquired(CheckFailed):
    """Another runner holds the migration lock and did not release it in time."""


class MigrationFailed(CheckFailed):
    """A migration's SQL or its verify script failed while being applied."""


class ContractViolation(CheckFailed):
    """The migrations and the canonical schema disagree."""


class LockLost(MigrationFailed):
    """The runner's session, and with it the migration lock, ended mid-run; it stopped."""


class PlanChanged(CheckFailed):
    """The plan computed under the lock is not the plan that was confirmed; nothing ran."""


class PrivilegeMissing(CannotRun):
    """The connecting role lacks a privilege the runner or a migration needs."""
