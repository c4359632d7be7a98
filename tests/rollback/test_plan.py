"""The rollback planner: pure choices between app-only, down, table-restore and restores."""

from __future__ import annotations

import pytest

from db.destructive import DestructiveRevert
from rollback.ecs import Services, ServiceState
from rollback.plan import (
    APP_ONLY,
    DOWN,
    RESTORE,
    TABLE_RESTORE,
    WARM_SWAP,
    RollbackFacts,
    RollbackRefused,
    SnapshotChoice,
    plan_rollback,
)
from rollback.releases import Release


def release(sequence: int, schema: int, tag: str) -> Release:
    services = Services(
        "cluster",
        {
            "web": ServiceState("web", f"arn:web:{tag}", 2),
            "worker": ServiceState("worker", f"arn:worker:{tag}", 3),
        },
    )
    return Release(sequence, f"commit{sequence}" * 3, f"image:{tag}", schema, services)


N, N1 = release(1, 3, "n"), release(2, 4, "n1")
ADDED = DestructiveRevert("0004_x", "drop column", "public.orders", ("discount",), expected=True)
TRUNCATES = DestructiveRevert("0004_x", "truncate", "public.audit", (), expected=False)
SNAPSHOT = SnapshotChoice("s1", restore_seconds=12.0, slot="rollgate_s1")


def facts(**overrides) -> RollbackFacts:
    values = {
        "current": N1,
        "target": N,
        "live_version": 4,
        "reverted": ["0004_x"],
        "reverts": [ADDED],
        "snapshot": SNAPSHOT,
        "changes_since_snapshot": {"public.orders": 5},
    }
    values.update(overrides)
    return RollbackFacts(**values)


def kinds(plan) -> list[str]:
    return [step.kind for step in plan.steps]


def test_same_schema_rolls_back_the_app_only():
    plan = plan_rollback(facts(live_version=3, reverted=[], reverts=[]))
    assert plan.path == APP_ONLY
    assert kinds(plan) == ["stop-writers", "app", "app", "verify", "resume-writers"]


def test_down_when_nothing_the_target_has_is_destroyed_and_the_loss_is_named():
    plan = plan_rollback(facts())
    assert plan.path == DOWN
    assert kinds(plan) == ["stop-writers", "app", "app", "down", "verify", "resume-writers"]
    assert any("public.orders(discount)" in loss for loss in plan.losses)


def test_destroying_target_data_with_no_writes_since_is_a_table_restore():
    plan = plan_rollback(facts(reverts=[ADDED, TRUNCATES], changes_since_snapshot={}))
    assert plan.path == TABLE_RESTORE
    restore = next(s for s in plan.steps if s.kind == TABLE_RESTORE)
    assert restore.details["targets"] == [{"table": "public.audit", "columns": None}]
    assert "RPO 0" in plan.rpo


def test_writes_since_the_snapshot_on_the_harmed_table_choose_a_restore_with_replay():
    plan = plan_rollback(facts(reverts=[TRUNCATES], changes_since_snapshot={"public.audit": 7}))
    assert plan.path == RESTORE
    assert "7 change(s) since the snapshot will be replayed" in plan.rpo


def test_a_warm_standby_is_swapped_in_rather_than_restored():
    warm = SnapshotChoice("s1", 12.0, "rollgate_s1", warm_database="app__warm_s1")
    plan = plan_rollback(
        facts(reverts=[TRUNCATES], snapshot=warm, changes_since_snapshot={"public.audit": 1})
    )
    assert plan.path == WARM_SWAP


def test_without_a_slot_the_loss_of_writes_since_the_snapshot_is_stated():
    plan = plan_rollback(facts(reverts=[TRUNCATES], changes_since_snapshot=None))
    assert plan.path == TABLE_RESTORE
    assert any("no replication slot" in loss for loss in plan.losses)


def test_destruction_without_a_verified_snapshot_is_refused_unless_accepted():
    with pytest.raises(RollbackRefused, match="no verified snapshot protects"):
        plan_rollback(facts(reverts=[TRUNCATES], snapshot=None, changes_since_snapshot=None))
    accepted = plan_rollback(
        facts(
            reverts=[TRUNCATES], snapshot=None, changes_since_snapshot=None, accept_data_loss=True
        )
    )
    assert accepted.path == DOWN and any("accepted" in loss for loss in accepted.losses)


def test_a_target_with_a_newer_schema_is_a_roll_forward_not_a_rollback():
    with pytest.raises(RollbackRefused, match="roll forward"):
        plan_rollback(facts(live_version=2))


def test_the_fingerprint_changes_with_what_the_plan_does_not_with_estimates():
    base = plan_rollback(facts())
    assert base.fingerprint() == plan_rollback(facts(down_seconds=99.0)).fingerprint()
    assert (
        base.fingerprint()
        != plan_rollback(facts(reverts=[TRUNCATES], changes_since_snapshot={})).fingerprint()
    )
