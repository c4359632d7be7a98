"""Retention: keep the newest, what protects live releases, and the newest verified snapshot."""

from __future__ import annotations

import json

import pytest

from core.errors import CheckFailed
from rollback.manifest import Manifest, RdsSnapshot, Release, ReplicationSlot
from rollback.retention import (
    PruneIncomplete,
    SnapshotSummary,
    list_snapshots,
    plan_prune,
    prune,
)
from rollback.store import open_store


def summary(snapshot_id: str, *, verified: bool = False, commit: str | None = None):
    manifest = Manifest(
        id=snapshot_id,
        created_at="2026-11-30T00:00:00+00:00",
        database="app",
        server_version="18.6",
        server_major=18,
        catalog_fingerprint="0" * 64,
        release=Release(bundle_commit=commit),
        tables=(),
        files=(),
    )
    return SnapshotSummary(snapshot_id, manifest, {"ok": True} if verified else None)


def test_keeps_the_newest_n():
    plan = plan_prune([summary(f"s{i}") for i in range(5)], keep=2)
    assert plan.delete == ("s0", "s1", "s2")
    assert set(plan.keep) == {"s3", "s4"}


def test_never_deletes_the_newest_verified_snapshot():
    snapshots = [summary("s0", verified=True), summary("s1", verified=True), summary("s2")]
    plan = plan_prune(snapshots, keep=1)
    assert plan.delete == ("s0",)
    assert plan.keep["s1"] == "the newest verified snapshot"


def test_keeps_what_protects_a_live_release():
    snapshots = [summary("s0", commit="abc"), summary("s1", commit="def"), summary("s2")]
    plan = plan_prune(snapshots, keep=1, protected_releases={"abc"})
    assert plan.delete == ("s1",)
    assert "live release abc" in plan.keep["s0"]


def test_unreadable_snapshots_are_left_for_a_person():
    plan = plan_prune([SnapshotSummary("bad", None, None, "damaged"), summary("s1")], keep=1)
    assert plan.delete == ()
    assert "damaged" in plan.keep["bad"]


def test_keep_zero_is_refused():
    with pytest.raises(CheckFailed, match="at least 1"):
        plan_prune([summary("s0")], keep=0)


def test_prune_deletes_from_the_store_and_drops_slots(tmp_path):
    store = open_store(str(tmp_path / "store"))
    for i in range(3):
        with store.begin(f"s{i}") as draft:
            (draft.directory / "f").write_bytes(b"x")
            base = summary(f"s{i}").manifest
            slot = ReplicationSlot(f"slot{i}", "test_decoding", "0/1")
            draft.commit(Manifest(**{**base.__dict__, "slot": slot}).to_json())
    store.put_record(
        "s0", "verification-1.json", json.dumps({"ok": True, "snapshot": "s0"}).encode()
    )
    summaries = list_snapshots(store)
    assert [s.verified for s in summaries] == [True, False, False]
    plan = plan_prune(summaries, keep=1)
    dropped = []
    done = prune(store, plan, drop_slot=lambda name: dropped.append(name) or True)
    assert done.deleted == ("s1",)
    assert dropped == ["slot1"]
    assert store.list_ids() == ["s0", "s2"]


def test_an_rds_backed_record_is_kept_when_nothing_can_delete_its_db_snapshot(tmp_path):
    """Without an RDS client the record stays: deleting it would orphan the DB snapshot."""
    store = open_store(str(tmp_path / "store"))
    rds = RdsSnapshot("rollgate-s0", "prod", "postgres", "16.3", "arn:aws:rds:::snapshot:s0")
    for snapshot_id in ("s0", "s1"):
        base = summary(snapshot_id).manifest
        with store.begin(snapshot_id) as draft:
            draft.commit(Manifest(**{**base.__dict__, "rds": rds}).to_json())
    plan = plan_prune(list_snapshots(store), keep=1)
    assert plan.rds_snapshots == {"s0": "rollgate-s0"}
    with pytest.raises(PruneIncomplete, match="kept the record of 1") as refused:
        prune(store, plan)
    assert refused.value.details["kept"].keys() == {"s0"}
    assert store.list_ids() == ["s0", "s1"]
