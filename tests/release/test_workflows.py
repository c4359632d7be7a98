"""The user's CI: the workflows are valid, pinned, OIDC-only, and run the right things in order.

Validity is checked with check-jsonschema's vendored GitHub-workflow schema
(actionlint is not installable here: its PyPI package downloads the binary
from GitHub at build time).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")
FILES = sorted(WORKFLOWS.glob("*.yml"))


def load(name: str) -> dict[Any, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text())  # type: ignore[no-any-return]


def all_steps(document: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in document["jobs"].values() for step in job.get("steps", [])]


def test_the_workflows_the_issue_asks_for_exist() -> None:
    assert {"pull-request.yml", "main.yml", "rollback.yml", "preview.yml"} <= {
        f.name for f in FILES
    }


def test_every_workflow_matches_the_github_workflow_schema() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, FILES),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_actions_are_pinned_and_aws_is_oidc_only(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    uses = [s["uses"] for s in all_steps(document) if "uses" in s]
    assert all(PINNED.match(u) for u in uses), uses
    text = path.read_text()
    assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text
    for step in all_steps(document):
        if "configure-aws-credentials" in step.get("uses", ""):
            assert step["with"]["role-to-assume"].startswith("${{ vars.")
        if "actions/checkout" in step.get("uses", ""):
            assert step["with"]["persist-credentials"] is False
    # Secrets come from the CI secret store, never inline.
    assert not re.search(r"postgres(ql)?://\w+:[^@$]+@", text)
    assert document["permissions"] == {"contents": "read"} or path.name == "preview.yml"


def test_pull_requests_run_tests_db_check_and_the_policy_preview() -> None:
    document = load("pull-request.yml")
    runs = " ".join(s.get("run", "") for s in all_steps(document))
    assert ".ci/run" in runs and "rollgate db check" in runs
    assert document["jobs"]["preview"]["uses"] == "./.github/workflows/preview.yml"
    assert "pulumi up" not in (WORKFLOWS / "pull-request.yml").read_text()


def test_main_gates_then_deploys_then_smokes_and_rolls_back_on_failure() -> None:
    jobs = load("main.yml")["jobs"]
    assert jobs["deploy"]["needs"] == "gate"
    assert jobs["smoke"]["needs"] == "deploy"
    assert "failure()" in jobs["rollback"]["if"]
    gate_run = " ".join(s.get("run", "") for s in jobs["gate"]["steps"])
    deploy_run = " ".join(s.get("run", "") for s in jobs["deploy"]["steps"])
    assert "rollgate gate" in gate_run
    assert "pulumi up" in deploy_run and "--policy-pack infra/policy" in deploy_run
    assert "--gate-entry" in deploy_run  # the rollout records which gate report it passed
    assert "--post-deploy" in " ".join(s.get("run", "") for s in jobs["smoke"]["steps"])
    assert "rollgate rollback run" in " ".join(s.get("run", "") for s in jobs["rollback"]["steps"])


def test_the_on_call_rollback_shows_the_plan_then_needs_approval_then_runs_it() -> None:
    document = load("rollback.yml")
    triggers = document.get("on", document.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "workflow_dispatch" in triggers
    plan, run = document["jobs"]["plan"], document["jobs"]["run"]
    assert "rollgate rollback plan" in " ".join(s.get("run", "") for s in plan["steps"])
    assert run["needs"] == "plan"
    assert run["environment"] == "production-rollback"
    command = " ".join(s.get("run", "") for s in run["steps"])
    assert "rollgate rollback run" in command and "--plan-fingerprint" in command
