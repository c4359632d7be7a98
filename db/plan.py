"""Pure planning: migrations on disk + history in the database -> what to run.

Nothing here touches a connection, so every refusal can be tested with plain
values (as Alembic keeps its revision graph apart from its runtime).

History rows have a state:

* ``applied``   the migration ran to completion and its verify script passed;
* ``applying``  a non-transactional migration started and did not finish;
* ``reverting`` a non-transactional revert started and did not finish.

Transactional migrations never leave the last two behind: their history row is
written in the same transaction as their SQL. A non-transactional one is
idempotent by contract (squawk's prefer-robust-stmts enforces IF [NOT] EXISTS),
so an interrupted one is finished by running it again, in either direction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from core.errors import CannotRun, CheckFailed
from db.errors import HistoryMismatch
from db.migrations import KINDS, Migration

APPLIED = "applied"
APPLYING = "applying"
REVERTING = "reverting"
STATES = (APPLIED, APPLYING, REVERTING)


@dataclass(frozen=True)
class HistoryRow:
    """One row of Rollgate's history, ``rollgate.schema_migrations``."""

    version: int
    name: str
    state: str
    up_sha256: str
    down_sha256: str
    verify_sha256: str
    applied_at: datetime | None = None
    duration_ms: int | None = None
    applied_by: str | None = None

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    @property
    def complete(self) -> bool:
        return self.state == APPLIED

    @property
    def essence(self) -> tuple[int, str, str, str, str, str]:
        """What the row claims (not when or by whom): compared to detect tampering."""
        return (
            self.version,
            self.name,
            self.state,
            self.up_sha256,
            self.down_sha256,
            self.verify_sha256,
        )


@dataclass(frozen=True)
class Step:
    """Run ``migration`` in ``direction`` ("up" or "down")."""

    migration: Migration
    direction: str
    resume: bool = False  # finishing an interrupted non-transactional run

    def describe(self) -> str:
        verb = "apply" if self.direction == "up" else "revert"
        script = self.migration.script(self.direction)
        notes = [] if script.transactional else ["outside a transaction"]
        if self.resume:
            notes.append("resuming an interrupted run")
        suffix = f" ({'; '.join(notes)})" if notes else ""
        return f"{verb} {self.migration.label}{suffix}"


@dataclass(frozen=True)
class MigrationPlan:
    """The ordered steps that take the database from ``current`` to ``target``."""

    direction: str
    current: int
    target: int
    steps: tuple[Step, ...]
    # Digest of the history rows the plan was computed from (see history_digest).
    basis: str = ""

    @property
    def empty(self) -> bool:
        return not self.steps

    def fingerprint(self) -> str:
        """sha256 of exactly what this plan would do, and the history it was computed from.

        Two plans with the same fingerprint run the same steps, in the same order,
        with the same files, on the same recorded history. A plan confirmed by a
        person is carried into the locked phase by its fingerprint: if the plan
        computed under the lock differs, the runner refuses (Terraform's saved
        plans and pip-tools' hashes work this way).
        """
        document = {
            "direction": self.direction,
            "current": self.current,
            "target": self.target,
            "steps": [
                [
                    step.migration.label,
                    step.direction,
                    step.resume,
                    step.migration.up.sha256,
                    step.migration.down.sha256,
                    step.migration.verify.sha256,
                ]
                for step in self.steps
            ],
            "basis": self.basis,
        }
        encoded = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(encoded).hexdigest()


def history_digest(history: Sequence[HistoryRow]) -> str:
    """sha256 of what ``history`` claims: versions, names, states and checksums."""
    rows = sorted(row.essence for row in history)
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def check_history(migrations: Sequence[Migration], history: Sequence[HistoryRow]) -> None:
    """Refuse, naming the file, when history and files disagree.

    * an applied migration has no files any more;
    * an applied migration's name or any of its files changed since it ran;
    * history is out of order: a migration is pending below one already applied,
      or more than one migration is half-done.
    """
    by_version = {m.version: m for m in migrations}
    problems: list[str] = []
    for row in history:
        migration = by_version.get(row.version)
        if migration is None:
            problems.append(
                f"the history records {row.label}, but no such migration exists in the "
                f"migrations directory; restore its files or point --migrations at the right set"
            )
            continue
        if migration.name != row.name:
            problems.append(
                f"the history records {row.label}, but the files now call version "
                f"{row.version:04d} {migration.label}; a version must never be renamed"
            )
        recorded = {"up": row.up_sha256, "down": row.down_sha256, "verify": row.verify_sha256}
        for kind in KINDS:
            script = migration.script(kind)
            if recorded[kind] != script.sha256:
                problems.append(
                    f"{script.path}: changed since {row.label} was applied "
                    f"(recorded sha256 {recorded[kind][:12]}, file now {script.sha256[:12]}); "
                    f"never edit an applied migration, add a new one"
                )
    applied_versions = sorted(row.version for row in history)
    known_below = [
        m.version for m in migrations if applied_versions and m.version < applied_versions[-1]
    ]
    pending_below = sorted(set(known_below) - set(applied_versions))
    if pending_below:
        problems.append(
            "history is out of order: "
            + ", ".join(by_version[v].label for v in pending_below)
            + f" is pending but the later {_history_label(history, applied_versions[-1])} is "
            "already applied; renumber the new migration after the latest applied one"
        )
    unfinished = [row for row in history if not row.complete]
    if len(unfinished) > 1 or (unfinished and unfinished[0].version != applied_versions[-1]):
        problems.append(
            "history is out of order: interrupted migrations must be the latest one, found "
            + ", ".join(f"{row.label} ({row.state})" for row in unfinished)
        )
    if problems:
        listed = problems[0] if len(problems) == 1 else "\n  - " + "\n  - ".join(problems)
        raise HistoryMismatch(f"refusing to run: {listed}", details={"problems": problems})


def _history_label(history: Sequence[HistoryRow], version: int) -> str:
    return next(row.label for row in history if row.version == version)


def current_version(history: Sequence[HistoryRow]) -> int:
    """The highest version recorded as fully applied (0 when none)."""
    return max((row.version for row in history if row.complete), default=0)


def plan_upgrade(
    migrations: Sequence[Migration], history: Sequence[HistoryRow], target: int | None = None
) -> MigrationPlan:
    """Steps to apply, oldest first, up to ``target`` (default: the latest)."""
    check_history(migrations, history)
    current = current_version(history)
    latest = migrations[-1].version if migrations else 0
    goal = latest if target is None else _known_target(migrations, target)
    if goal < current:
        raise CheckFailed(
            f"the database is at {current:04d}; migrate only moves forward. "
            f"To go back to {goal:04d}, run: rollgate db revert --to {goal}"
        )
    states = {row.version: row.state for row in history}
    steps = tuple(
        Step(m, "up", resume=states.get(m.version) in (APPLYING, REVERTING))
        for m in migrations
        if m.version <= goal and states.get(m.version) != APPLIED
    )
    return MigrationPlan(
        direction="up", current=current, target=goal, steps=steps, basis=history_digest(history)
    )


def plan_revert(
    migrations: Sequence[Migration], history: Sequence[HistoryRow], target: int
) -> MigrationPlan:
    """Steps to revert, newest first, until only versions <= ``target`` remain."""
    check_history(migrations, history)
    current = current_version(history)
    goal = 0 if target == 0 else _known_target(migrations, target)
    if goal > current:
        raise CheckFailed(
            f"the database is at {current:04d}; revert only moves back. "
            f"To go forward to {goal:04d}, run: rollgate db migrate --to {goal}"
        )
    states = {row.version: row.state for row in history}
    steps = tuple(
        Step(m, "down", resume=states[m.version] != APPLIED)
        for m in reversed(migrations)
        if m.version > goal and m.version in states
    )
    return MigrationPlan(
        direction="down", current=current, target=goal, steps=steps, basis=history_digest(history)
    )


def _known_target(migrations: Sequence[Migration], target: int) -> int:
    versions = [m.version for m in migrations]
    if target not in versions:
        known = ", ".join(m.label for m in migrations) or "none"
        raise CannotRun(f"--to {target}: no migration has version {target:04d} (known: {known})")
    return target
