"""Which snapshots exist, which are warm, and which may go.

``list_snapshots`` summarises every complete snapshot in a store with its
latest verification. ``plan_prune`` is pure: it decides, from that summary and
the retention policy, what to delete and why each kept snapshot stays;
``prune`` carries the plan out (and drops the replication slots of what it
deletes, since a slot pins WAL on the source for as long as it exists).

An RDS-backed record has an RDS manual snapshot behind it, which costs money
for as long as it exists. ``prune`` deletes that DB snapshot first and the
record second (``rollback.rds.delete_rds_snapshot``, which touches only the
snapshot Rollgate took for that record). In that order a prune that dies in
between leaves a record whose DB snapshot is gone; the next prune finds it
"already gone" and removes the record, so reruns converge. The other order
would leave a DB snapshot that no record names, paid for and never found
again. When the DB snapshot cannot be deleted (RDS refuses, or it is not
Rollgate's) the record is kept, so nothing is orphaned silently, and the
prune ends with ``PruneIncomplete`` (exit 2) naming it.

The policy:

* keep the newest ``keep`` snapshots;
* keep every snapshot that protects a live release (the caller names them:
  the release deployed now and the one a rollback would return to);
* never delete the newest verified snapshot: if it were the only warm one,
  a rollback would have nothing proven to return to;
* a snapshot whose manifest is unreadable is reported, never silently kept
  or deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import CannotRun, CheckFailed, RollgateError
from core.progress import Progress, silent
from rollback.manifest import CorruptSnapshot, Manifest
from rollback.store import SnapshotStore
from rollback.verify import latest_verification, load_manifest


@dataclass(frozen=True)
class SnapshotSummary:
    id: str
    manifest: Manifest | None
    verification: dict[str, Any] | None
    problem: str | None = None

    @property
    def verified(self) -> bool:
        return bool(self.verification and self.verification.get("ok"))

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "id": self.id,
            "created_at": m.created_at if m else None,
            "database": m.database if m else None,
            "schema_version": m.release.schema_version if m else None,
            "bundle_commit": m.release.bundle_commit if m else None,
            "app_image": m.release.app_image if m else None,
            "rows": m.total_rows if m else None,
            "bytes": m.total_bytes if m else None,
            "slot": m.slot.name if m and m.slot else None,
            "rds": _rds_summary(m) if m else None,
            "verified": self.verified,
            "verified_at": (self.verification or {}).get("verified_at"),
            "restore_seconds": (self.verification or {}).get("restore_seconds"),
            "problem": self.problem,
        }


def _rds_summary(manifest: Manifest) -> dict[str, Any] | None:
    rds = manifest.rds
    if rds is None:
        return None
    return {
        "snapshot_identifier": rds.snapshot_identifier,
        "instance": rds.instance,
        "engine": rds.engine,
        "engine_version": rds.engine_version,
        "arn": rds.arn,
    }


@dataclass(frozen=True)
class PrunePlan:
    delete: tuple[str, ...]
    keep: dict[str, str] = field(default_factory=dict)  # id -> why it stays
    rds_snapshots: dict[str, str] = field(default_factory=dict)  # id -> its RDS snapshot, deleted

    def to_dict(self) -> dict[str, Any]:
        return {
            "delete": list(self.delete),
            "keep": dict(self.keep),
            "rds_snapshots": dict(self.rds_snapshots),
        }


@dataclass(frozen=True)
class PruneResult:
    """What ``prune`` did."""

    deleted: tuple[str, ...]
    rds: dict[str, str] = field(default_factory=dict)  # RDS identifier -> deleted | already gone
    kept: dict[str, str] = field(default_factory=dict)  # id -> why its record had to stay

    def to_dict(self) -> dict[str, Any]:
        return {"deleted": list(self.deleted), "rds": dict(self.rds), "kept": dict(self.kept)}


class PruneIncomplete(CannotRun):
    """Some records were kept because the RDS snapshot behind them could not be deleted."""


def list_snapshots(store: SnapshotStore) -> list[SnapshotSummary]:
    """Every complete snapshot, oldest first, with its newest verification."""
    summaries = []
    for snapshot_id in store.list_ids():
        try:
            manifest = load_manifest(store, snapshot_id)
        except CorruptSnapshot as exc:
            summaries.append(SnapshotSummary(snapshot_id, None, None, exc.message))
            continue
        summaries.append(
            SnapshotSummary(snapshot_id, manifest, latest_verification(store, snapshot_id))
        )
    return summaries


def plan_prune(
    summaries: Sequence[SnapshotSummary],
    *,
    keep: int,
    protected_releases: Collection[str] = (),
) -> PrunePlan:
    """What to delete under the policy in the module docstring. Pure."""
    if keep < 1:
        raise CheckFailed("--keep must be at least 1: a store with no snapshot protects nothing")
    reasons: dict[str, str] = {}
    for summary in summaries[-keep:]:
        reasons[summary.id] = f"among the newest {keep}"
    for summary in summaries:
        release = summary.manifest.release if summary.manifest else None
        if release and release.bundle_commit and release.bundle_commit in protected_releases:
            reasons.setdefault(summary.id, f"protects live release {release.bundle_commit}")
        if summary.problem:
            reasons.setdefault(summary.id, f"unreadable, left for a person: {summary.problem}")
    verified = [s for s in summaries if s.verified]
    if verified:
        reasons.setdefault(verified[-1].id, "the newest verified snapshot")
    delete = tuple(s.id for s in summaries if s.id not in reasons)
    rds_snapshots = {
        s.id: s.manifest.rds.snapshot_identifier
        for s in summaries
        if s.id in delete and s.manifest and s.manifest.rds
    }
    return PrunePlan(delete=delete, keep=reasons, rds_snapshots=rds_snapshots)


def prune(
    store: SnapshotStore,
    plan: PrunePlan,
    *,
    drop_slot: Callable[[str], bool] | None = None,
    delete_rds: Callable[[Manifest], str] | None = None,
    progress: Progress = silent,
) -> PruneResult:
    """Delete what ``plan`` says: slots (given ``drop_slot``) and RDS snapshots (given
    ``delete_rds``, returning "deleted" or "already gone") before their records.

    Raises ``PruneIncomplete`` after the rest is done when an RDS snapshot could
    not be deleted; its record is then kept.
    """
    by_id = {s.id: s for s in list_snapshots(store)}
    deleted: list[str] = []
    rds_outcomes: dict[str, str] = {}
    kept: dict[str, str] = {}
    for snapshot_id in plan.delete:
        summary = by_id.get(snapshot_id)
        if summary is None:
            continue  # gone already (a concurrent prune): nothing to do
        manifest = summary.manifest
        if manifest and manifest.rds:
            identifier = manifest.rds.snapshot_identifier
            if delete_rds is None:
                kept[snapshot_id] = f"no RDS client to delete RDS snapshot {identifier} with"
                continue
            try:
                rds_outcomes[identifier] = delete_rds(manifest)
            except RollgateError as exc:
                kept[snapshot_id] = exc.message
                progress(f"kept snapshot {snapshot_id}: {exc.message}")
                continue
            progress(f"RDS snapshot {identifier} {rds_outcomes[identifier]}")
        if drop_slot and manifest and manifest.slot:
            drop_slot(manifest.slot.name)
        store.delete(snapshot_id)
        deleted.append(snapshot_id)
    result = PruneResult(deleted=tuple(deleted), rds=rds_outcomes, kept=kept)
    if kept:
        reasons = "; ".join(f"{snapshot_id}: {why}" for snapshot_id, why in kept.items())
        raise PruneIncomplete(
            f"prune deleted {len(deleted)} snapshot(s) but kept the record of {len(kept)} "
            f"whose RDS snapshot could not be deleted, so none is orphaned: {reasons}",
            details=result.to_dict(),
        )
    return result
