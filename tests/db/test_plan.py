"""Pure planning: history rows + files -> steps, and every refusal, without a database."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import CannotRun, CheckFailed
from db.errors import HistoryMismatch
from db.migrations import Migration, load_migrations
from db.plan import APPLIED, APPLYING, REVERTING, HistoryRow, plan_revert, plan_upgrade


def row(migration: Migration, state: str = APPLIED, **overrides: str) -> HistoryRow:
    values = {
        "up_sha256": migration.up.sha256,
        "down_sha256": migration.down.sha256,
        "verify_sha256": migration.verify.sha256,
    }
    values.update(overrides)
    return HistoryRow(migration.version, migration.name, state, **values)


@pytest.fixture
def widgets(widgets_dir: Path) -> list[Migration]:
    return load_migrations(widgets_dir)


def labels(plan: object) -> list[str]:
    return [step.describe() for step in plan.steps]  # type: ignore[attr-defined]


def test_fresh_database_plans_every_migration_in_order(widgets: list[Migration]) -> None:
    plan = plan_upgrade(widgets, [])
    assert (plan.current, plan.target) == (0, 3)
    assert labels(plan) == [
        "apply 0001_create_widgets",
        "apply 0002_add_widget_colour",
        "apply 0003_index_widget_name (outside a transaction)",
    ]


def test_upgrade_stops_at_target(widgets: list[Migration]) -> None:
    plan = plan_upgrade(widgets, [row(widgets[0])], target=2)
    assert labels(plan) == ["apply 0002_add_widget_colour"]


def test_up_to_date_database_plans_nothing(widgets: list[Migration]) -> None:
    assert plan_upgrade(widgets, [row(m) for m in widgets]).empty


def test_revert_goes_newest_first(widgets: list[Migration]) -> None:
    plan = plan_revert(widgets, [row(m) for m in widgets], target=1)
    assert labels(plan) == [
        "revert 0003_index_widget_name (outside a transaction)",
        "revert 0002_add_widget_colour",
    ]
    assert (
        plan_revert(widgets, [row(m) for m in widgets], target=0).steps[-1].migration.version == 1
    )


def test_changed_applied_file_is_refused_naming_the_file(widgets: list[Migration]) -> None:
    tampered = row(widgets[0], up_sha256="0" * 64)
    with pytest.raises(HistoryMismatch, match=r"0001_create_widgets\.up\.sql: changed since"):
        plan_upgrade(widgets, [tampered])


def test_changed_down_file_is_refused_too(widgets: list[Migration]) -> None:
    # A revert runs the down file: it must be the one reviewed with the migration.
    tampered = row(widgets[0], down_sha256="f" * 64)
    with pytest.raises(HistoryMismatch, match=r"0001_create_widgets\.down\.sql: changed"):
        plan_revert(widgets, [tampered], target=0)


def test_applied_migration_without_files_is_refused(widgets: list[Migration]) -> None:
    ghost = HistoryRow(9, "drop_everything", APPLIED, "a", "b", "c")
    with pytest.raises(
        HistoryMismatch, match="records 0009_drop_everything, but no such migration"
    ):
        plan_upgrade(widgets, [row(widgets[0]), ghost])


def test_renamed_migration_is_refused(widgets: list[Migration]) -> None:
    renamed = HistoryRow(1, "create_gadgets", APPLIED, *widgets[0].checksums.values())
    with pytest.raises(HistoryMismatch, match="must never be renamed"):
        plan_upgrade(widgets, [renamed])


def test_out_of_order_history_is_refused(widgets: list[Migration]) -> None:
    # 0002 arrived (say, from a merged branch) after 0003 was already applied.
    with pytest.raises(HistoryMismatch, match="out of order: 0002_add_widget_colour is pending"):
        plan_upgrade(widgets, [row(widgets[0]), row(widgets[2])])


def test_interrupted_migration_is_resumed_in_either_direction(widgets: list[Migration]) -> None:
    history = [row(widgets[0]), row(widgets[1]), row(widgets[2], APPLYING)]
    up = plan_upgrade(widgets, history)
    assert up.current == 2
    assert labels(up) == [
        "apply 0003_index_widget_name (outside a transaction; resuming an interrupted run)"
    ]
    down = plan_revert(widgets, history, target=2)
    assert [s.migration.version for s in down.steps] == [3]
    assert down.steps[0].resume


def test_interrupted_revert_can_be_finished_or_undone(widgets: list[Migration]) -> None:
    history = [row(widgets[0]), row(widgets[1]), row(widgets[2], REVERTING)]
    assert plan_upgrade(widgets, history).steps[0].resume
    assert plan_revert(widgets, history, target=2).steps[0].resume


def test_interrupted_migration_below_the_latest_is_refused(widgets: list[Migration]) -> None:
    history = [row(widgets[0], APPLYING), row(widgets[1]), row(widgets[2])]
    with pytest.raises(HistoryMismatch, match="interrupted migrations must be the latest"):
        plan_upgrade(widgets, history)


def test_migrate_backwards_is_refused_with_the_right_command(widgets: list[Migration]) -> None:
    with pytest.raises(CheckFailed, match="rollgate db revert --to 1"):
        plan_upgrade(widgets, [row(m) for m in widgets], target=1)


def test_revert_forwards_is_refused_with_the_right_command(widgets: list[Migration]) -> None:
    with pytest.raises(CheckFailed, match="rollgate db migrate --to 3"):
        plan_revert(widgets, [row(widgets[0])], target=3)


def test_unknown_target_cannot_run(widgets: list[Migration]) -> None:
    with pytest.raises(CannotRun, match="no migration has version 0007"):
        plan_upgrade(widgets, [], target=7)


# --- fingerprints: what a person confirmed, carried into the locked phase --------


def test_the_same_plan_on_the_same_history_has_the_same_fingerprint(
    widgets: list[Migration],
) -> None:
    history = [row(widgets[0]), row(widgets[1])]
    first = plan_revert(widgets, history, target=1).fingerprint()
    assert first == plan_revert(widgets, list(reversed(history)), target=1).fingerprint()
    assert len(first) == 64


def test_a_migration_applied_meanwhile_changes_the_fingerprint(widgets: list[Migration]) -> None:
    confirmed = plan_revert(widgets, [row(widgets[0]), row(widgets[1])], target=1)
    now = plan_revert(widgets, [row(m) for m in widgets], target=1)
    assert confirmed.fingerprint() != now.fingerprint()


def test_same_steps_on_a_different_history_differ(widgets: list[Migration]) -> None:
    # Same single step either way, but one history says 0003 was interrupted.
    finished = [row(widgets[0]), row(widgets[1])]
    interrupted = [*finished, row(widgets[2], APPLYING)]
    plain = plan_upgrade(widgets, finished, target=2)
    assert plain.empty
    to_three = plan_upgrade(widgets, finished)
    resumed = plan_upgrade(widgets, interrupted)
    assert labels(to_three) != labels(resumed)
    assert to_three.fingerprint() != resumed.fingerprint()


def test_a_changed_file_changes_the_fingerprint(widgets: list[Migration]) -> None:
    from dataclasses import replace

    plan = plan_upgrade(widgets, [])
    edited = [*widgets[:2], replace(widgets[2], down=replace(widgets[2].down, sha256="0" * 64))]
    assert plan.fingerprint() != plan_upgrade(edited, []).fingerprint()
