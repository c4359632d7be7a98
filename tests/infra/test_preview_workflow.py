"""The CI preview job: OIDC only, actions pinned by commit, the policy pack on every preview."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.infra.harness import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "preview.yml"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")


def workflow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text())  # type: ignore[no-any-return]


def steps() -> list[dict[str, Any]]:
    return workflow()["jobs"]["preview"]["steps"]  # type: ignore[no-any-return]


def test_every_action_is_pinned_by_commit_sha() -> None:
    uses = [step["uses"] for step in steps() if "uses" in step]
    assert len(uses) >= 4
    assert all(PINNED.match(u) for u in uses), uses


def test_aws_access_is_oidc_only() -> None:
    document = workflow()
    assert document["permissions"] == {"contents": "read", "id-token": "write"}
    text = WORKFLOW.read_text()
    assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text
    [login] = [s for s in steps() if "configure-aws-credentials" in s.get("uses", "")]
    assert login["with"]["role-to-assume"] == "${{ vars.PREVIEW_ROLE_ARN }}"
    checkout = next(s for s in steps() if "actions/checkout" in s.get("uses", ""))
    assert checkout["with"]["persist-credentials"] is False


def test_preview_runs_with_the_policy_pack() -> None:
    [preview] = [s for s in steps() if "pulumi preview" in s.get("run", "")]
    assert "--policy-pack infra/policy" in preview["run"]
    assert "--non-interactive" in preview["run"]
    assert "pulumi up" not in WORKFLOW.read_text()  # a preview job never changes the account
