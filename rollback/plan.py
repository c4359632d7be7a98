"""The rollback plan: pure, from facts gathered elsewhere, and exactly what ``run`` executes.

``plan_rollback(facts)`` decides how to take the app and the database back to
a release, as one unit, by the least destructive path:

* **app-only**: the database is already at the target's schema version; only
  the ECS services go back to the target's task definitions.
* **down**: the down migrations back to the target's version destroy nothing
  the target release had. What they drop was created by the release being
  rolled back, and has no place in the target release: it is listed, not
  hidden.
* **table-restore**: some down migration destroys data the target release
  had (a TRUNCATE, a DELETE, a type change, or re-creating a column an up
  dropped). The downs run, then exactly those tables and columns are filled
  back from the verified snapshot that protects the target. Chosen when no
  write since the snapshot touched those tables, or when there is no slot to
  replay them (then it still loses less than a full restore).
* **warm-swap** / **restore**: otherwise, the whole database goes back to the
  snapshot (by renaming a warm standby into place when one is ready, else by
  a verified restore beside the live one), and every write made since the
  snapshot is replayed onto it from the snapshot's slot before the swap.

Every step says what it will lose and how long it should take, before
anything runs. The plan's fingerprint is what ``run`` re-checks: if the world
changed between "plan" and "run", it refuses rather than improvise
(Terraform's saved plans, pip-tools' sync).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import CheckFailed
from db.destructive import DestructiveRevert
from rollback.releases import Release

APP_ONLY = "app-only"
DOWN = "down"
TABLE_RESTORE = "table-restore"
WARM_SWAP = "warm-swap"
RESTORE = "restore"

# Estimates when nothing was measured yet (say so in the plan).
ECS_ROLLOUT_SECONDS = 60.0
DEFAULT_REPLAY_ROWS_PER_SECOND = 2000.0
WARM_SWAP_SECONDS = 2.0


class RollbackRefused(CheckFailed):
    """No path back meets the safety rules; the plan says what is missing."""


@dataclass(frozen=True)
class SnapshotChoice:
    """The verified snapshot that protects the target release."""

    id: str
    restore_seconds: float | None
    slot: str | None
    warm_database: str | None = None


@dataclass(frozen=True)
class RollbackFacts:
    current: Release
    target: Release
    live_version: int
    reverted: Sequence[str]  # labels of the migrations to revert, newest first
    reverts: Sequence[DestructiveRevert]  # classified destructive reverts of those
    snapshot: SnapshotChoice | None
    changes_since_snapshot: Mapping[str, int] | None  # table -> changes; None without a slot
    down_seconds: float = 0.0  # measured durations of those migrations' ups, as a proxy
    accept_data_loss: bool = False


@dataclass(frozen=True)
class RollbackStep:
    kind: str
    description: str
    details: Mapping[str, Any] = field(default_factory=dict)
    expected_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "description": self.description,
            "details": dict(self.details),
            "expected_seconds": round(self.expected_seconds, 1),
        }


@dataclass(frozen=True)
class RollbackPlan:
    current: Release
    target: Release
    path: str
    steps: tuple[RollbackStep, ...]
    losses: tuple[str, ...]
    rpo: str
    snapshot_id: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def expected_seconds(self) -> float:
        return sum(step.expected_seconds for step in self.steps)

    def fingerprint(self) -> str:
        """sha256 of what the plan will do (not of its time estimates)."""
        essence = {
            "current": self.current.sequence,
            "target": self.target.sequence,
            "path": self.path,
            "snapshot": self.snapshot_id,
            "steps": [{"kind": s.kind, "details": dict(s.details)} for s in self.steps],
        }
        canonical = json.dumps(essence, sort_keys=True, default=str).encode()
        return hashlib.sha256(canonical).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "current": self.current.to_dict(),
            "target": self.target.to_dict(),
            "path": self.path,
            "steps": [step.to_dict() for step in self.steps],
            "losses": list(self.losses),
            "rpo": self.rpo,
            "snapshot": self.snapshot_id,
            "expected_seconds": round(self.expected_seconds, 1),
            "notes": list(self.notes),
            "fingerprint": self.fingerprint(),
        }


def plan_rollback(facts: RollbackFacts) -> RollbackPlan:
    """The least destructive way back to ``facts.target`` (see module docstring). Pure."""
    current, target = facts.current, facts.target
    if facts.live_version < target.schema_version:
        raise RollbackRefused(
            f"the database is at {facts.live_version:04d} but {target.label} needs "
            f"{target.schema_version:04d}: going there is a roll forward (`rollgate db migrate`), "
            "not a rollback"
        )
    app = _app_steps(current, target)
    if facts.live_version == target.schema_version:
        return RollbackPlan(
            current, target, APP_ONLY, _wrap(app, facts), (), "RPO 0: no data is touched"
        )
    lost_with_release = tuple(
        _describe(r) + " (exists only in the release being rolled back)"
        for r in facts.reverts
        if r.loses_data and r.expected
    )
    destroys = [r for r in facts.reverts if r.loses_data and not r.expected]
    down = RollbackStep(
        DOWN,
        f"revert {', '.join(facts.reverted)} with their down migrations, to "
        f"{target.schema_version:04d}",
        {"to": target.schema_version, "migrations": list(facts.reverted)},
        max(1.0, facts.down_seconds * 1.5),
    )
    if not destroys:
        return RollbackPlan(
            current,
            target,
            DOWN,
            _wrap([*app, down], facts),
            lost_with_release,
            "RPO 0 for everything the target release has",
        )
    snapshot = facts.snapshot
    harmed = tuple(_describe(r) for r in destroys)
    if snapshot is None:
        if facts.accept_data_loss:
            return RollbackPlan(
                current,
                target,
                DOWN,
                _wrap([*app, down], facts),
                lost_with_release
                + tuple(f"{h} (accepted with --accept-data-loss)" for h in harmed),
                "data loss accepted",
            )
        raise RollbackRefused(
            f"no verified snapshot protects {target.label}, and the down migrations would "
            f"destroy data it has: {'; '.join(harmed)}. Verify a snapshot of that release "
            "(`rollgate snapshot verify`), or pass --accept-data-loss",
            details={"losses": list(harmed)},
        )
    changes = facts.changes_since_snapshot
    affected_tables = sorted({r.table for r in destroys if r.table})
    table_level = all(r.table for r in destroys)
    touched = {t: (changes or {}).get(t, 0) for t in affected_tables}
    if table_level and (changes is None or not any(touched.values())):
        restore_step = RollbackStep(
            TABLE_RESTORE,
            f"fill {', '.join(_describe(r) for r in destroys)} back from snapshot {snapshot.id}",
            {
                "snapshot": snapshot.id,
                "targets": [
                    {"table": r.table, "columns": list(r.columns) or None} for r in destroys
                ],
            },
            (snapshot.restore_seconds or 30.0) * 0.5,
        )
        unreplayed = (
            ()
            if changes is not None
            else (
                "writes made since the snapshot to "
                + ", ".join(affected_tables)
                + " (no replication slot to replay them)",
            )
        )
        return RollbackPlan(
            current,
            target,
            TABLE_RESTORE,
            _wrap([*app, down, restore_step], facts),
            lost_with_release + unreplayed,
            "RPO 0" if not unreplayed else "writes to the restored tables since the snapshot",
            snapshot.id,
        )
    return _full_restore(facts, snapshot, app, lost_with_release)


def _full_restore(
    facts: RollbackFacts,
    snapshot: SnapshotChoice,
    app: list[RollbackStep],
    lost_with_release: tuple[str, ...],
) -> RollbackPlan:
    changes = facts.changes_since_snapshot
    total = sum((changes or {}).values())
    replay_seconds = total / DEFAULT_REPLAY_ROWS_PER_SECOND
    steps = list(app)
    if snapshot.warm_database:
        path = WARM_SWAP
        steps.append(
            RollbackStep(
                WARM_SWAP,
                f"rename the warm standby {snapshot.warm_database} (snapshot {snapshot.id}) "
                "into place",
                {"snapshot": snapshot.id, "database": snapshot.warm_database},
                WARM_SWAP_SECONDS + replay_seconds,
            )
        )
    else:
        path = RESTORE
        steps.append(
            RollbackStep(
                RESTORE,
                f"restore snapshot {snapshot.id} beside the live database, verify it, "
                "replay, then swap it in by rename",
                {"snapshot": snapshot.id},
                (snapshot.restore_seconds or 60.0) * 1.3 + replay_seconds,
            )
        )
    if changes is None:
        losses = (
            *lost_with_release,
            "every write made since the snapshot (it has no replication slot to replay them)",
        )
        rpo = "writes since the snapshot are lost"
    else:
        per_table = ", ".join(f"{t}: {n}" for t, n in sorted(changes.items()) if n) or "none"
        losses = lost_with_release
        rpo = (
            f"RPO 0 expected: {total} change(s) since the snapshot will be replayed "
            f"({per_table}); any the target release rejects are listed after the run"
        )
    return RollbackPlan(
        facts.current, facts.target, path, _wrap(steps, facts), tuple(losses), rpo, snapshot.id
    )


def _app_steps(current: Release, target: Release) -> list[RollbackStep]:
    steps = []
    for role, state in sorted(target.services.by_role.items()):
        now = current.services.by_role.get(role)
        if now is not None and now.task_definition == state.task_definition:
            continue
        steps.append(
            RollbackStep(
                "app",
                f"point the {role} service {state.name} at {state.task_definition}",
                {
                    "cluster": target.services.cluster,
                    "role": role,
                    "service": state.name,
                    "task_definition": state.task_definition,
                },
                ECS_ROLLOUT_SECONDS,
            )
        )
    return steps


def _wrap(steps: list[RollbackStep], facts: RollbackFacts) -> tuple[RollbackStep, ...]:
    """Stop writers first, verify and resume them last: the same frame for every path."""
    worker = facts.current.services.by_role.get("worker")
    frame_before = []
    frame_after = []
    if worker is not None:
        frame_before.append(
            RollbackStep(
                "stop-writers",
                f"scale the worker service {worker.name} to 0 (it was {worker.desired_count})",
                {
                    "cluster": facts.current.services.cluster,
                    "service": worker.name,
                    "restore_count": worker.desired_count,
                },
                30.0,
            )
        )
        frame_after.append(
            RollbackStep(
                "resume-writers",
                f"scale the worker service {worker.name} back to {worker.desired_count}",
                {
                    "cluster": facts.current.services.cluster,
                    "service": worker.name,
                    "count": worker.desired_count,
                },
                30.0,
            )
        )
    verify = RollbackStep(
        "verify",
        f"check the schema is at {facts.target.schema_version:04d}, the catalog is the target "
        "release's, and the services run its task definitions",
        {"schema_version": facts.target.schema_version},
        5.0,
    )
    return (*frame_before, *steps, verify, *frame_after)


def _describe(revert: DestructiveRevert) -> str:
    if revert.table and revert.columns:
        return f"{revert.table}({', '.join(revert.columns)}) by {revert.kind} in {revert.migration}"
    if revert.table:
        return f"{revert.table} by {revert.kind} in {revert.migration}"
    return f"{revert.target or revert.kind} in {revert.migration}"
