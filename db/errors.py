"""Errors specific to migrations and schemas; the root and categories live in ``core.errors``."""

from __future__ import annotations

from core.errors import CannotRun, CheckFailed, DatabaseUnreachable, RollgateError, ToolUnavailable

__all__ = [
    "CannotRun",
    "CheckFailed",
    "ContractViolation",
    "DatabaseUnreachable",
    "HistoryMismatch",
    "LockNotAcquired",
    "MigrationFailed",
    "MigrationFileError",
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
