"""Preview without a cloud: the resource graph must match the committed snapshot.

Any infra change shows up here as a readable diff (resource added, removed, or
``type::name: inputs.field: old -> new``). If the change is intended, regenerate:

    ROLLGATE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/infra/test_graph_snapshot.py

and commit tests/infra/golden/ with the change, so the reviewer sees both.
"""

from __future__ import annotations

import json

import pytest

from tests.infra.conftest import STACKS
from tests.infra.graph import UPDATE_ENV, diff_graphs, dump, golden_path, resource_graph, updating
from tests.infra.harness import ProgramRun, run_program, stack_config


@pytest.mark.parametrize("stack", STACKS)
def test_resource_graph_matches_the_snapshot(stack: str, request: pytest.FixtureRequest) -> None:
    run: ProgramRun = request.getfixturevalue(stack)
    actual = resource_graph(run)
    path = golden_path(stack)
    if updating():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump(actual))
        return
    assert path.exists(), f"no snapshot at {path}; create it with {UPDATE_ENV}=1"
    differences = diff_graphs(json.loads(path.read_text()), actual)
    assert not differences, (
        f"the {stack} resource graph changed ({len(differences)} differences):\n"
        + "\n".join(differences[:60])
        + f"\nIf intended: {UPDATE_ENV}=1 pytest tests/infra/test_graph_snapshot.py"
        + ", then commit the snapshot."
    )


def test_snapshot_is_normalised_and_stable(dev: ProgramRun) -> None:
    graph = resource_graph(dev)
    assert dump(graph) == dump(resource_graph(dev))
    assert graph["resourceCount"] == len(dev.resources)
    instance = next(r for r in graph["resources"] if r["type"] == "aws:rds/instance:Instance")
    assert instance["inputs"]["backupRetentionPeriod"] == 7  # ints, not the engine's floats
    assert instance["parent"] == "rollgate:infra:Database::rollgate-dev-db"
    task = next(r for r in graph["resources"] if r["name"].endswith("-web-task"))
    assert isinstance(task["inputs"]["containerDefinitions"]["<json>"], list)  # JSON decoded


def test_unknowns_are_normalised() -> None:
    from pulumi.runtime.rpc import UNKNOWN

    from tests.infra.graph import normalise

    assert normalise({"a": UNKNOWN, "b": [UNKNOWN, 1.0]}) == {
        "a": "<unknown>",
        "b": ["<unknown>", 1],
    }


def test_a_changed_resource_fails_the_comparison(dev: ProgramRun) -> None:
    """Change one config value without updating the snapshot: the test must see it."""
    changed = run_program({**stack_config("dev"), "dbBackupRetentionDays": "9"}, "dev")
    differences = diff_graphs(resource_graph(dev), resource_graph(changed))
    instance = "aws:rds/instance:Instance::rollgate-dev-db-instance"
    assert differences == [f"~ {instance}: inputs.backupRetentionPeriod: 7 -> 9"]


def test_added_and_removed_resources_are_reported(dev: ProgramRun) -> None:
    graph = resource_graph(dev)
    fewer = {
        **graph,
        "resources": [r for r in graph["resources"] if r["type"] != "aws:ec2/flowLog:FlowLog"],
    }
    assert diff_graphs(graph, fewer) == ["- aws:ec2/flowLog:FlowLog::rollgate-dev-flow-log"]
    assert diff_graphs(fewer, graph) == ["+ aws:ec2/flowLog:FlowLog::rollgate-dev-flow-log"]
