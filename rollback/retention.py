"""Which snapshots exist, which are warm, and which may go.

``list_snapshots`` summarises every complete snapshot in a store with its
latest verification. ``plan_prune`` is pure: it decides, from that summary and
the retention policy, what to delete and why each kept snapshot stays;
``prune`` carries the plan out (and drops the replication slots of what it
deletes, since a slot pins WAL on the source for as long as it exists).

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

from core.errors import CheckFailed
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
            "verified": self.verified,
            "verified_at": (self.verification or {}).get("verified_at"),
            "restore_seconds": (self.verification or {}).get("restore_seconds"),
            "problem": self.problem,
        }


@dataclass(frozen=True)
class PrunePlan:
    delete: tuple[str, ...]
    keep: dict[str, str] = field(default_factory=dict)  # id -> why it stays

    def to_dict(self) -> dict[str, Any]:
        return {"delete": list(self.delete), "keep": dict(self.keep)}


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
    return PrunePlan(delete=delete, keep=reasons)


def prune(
    store: SnapshotStore,
    plan: PrunePlan,
    *,
    drop_slot: Callable[[str], bool] | None = None,
) -> list[str]:
    """Delete what ``plan`` says (slots first, when a ``drop_slot`` is given); returns ids."""
    by_id = {s.id: s for s in list_snapshots(store)}
    deleted = []
    for snapshot_id in plan.delete:
        summary = by_id.get(snapshot_id)
        if summary is None:
            continue  # gone already (a concurrent prune): nothing to do
        if drop_slot and summary.manifest and summary.manifest.slot:
            drop_slot(summary.manifest.slot.name)
        store.delete(snapshot_id)
        deleted.append(snapshot_id)
    return deleted
