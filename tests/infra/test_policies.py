"""The CrossGuard pack: passes on the real program, and every policy can fail.

The pack runs here the way `pulumi preview --policy-pack infra/policy` runs it:
resource policies over each registered resource (with its `protect` option),
stack policies over all of them with their property dependencies.
"""

from __future__ import annotations

import json
import runpy
from typing import Any

import pytest
from pulumi_policy import EnforcementLevel

from infra import outputs
from infra.policy.policies import POLICIES
from tests.infra.harness import REPO_ROOT, CapturedResource, ProgramRun, run_policies
from tests.infra.policy_fixtures import CASES, to_captured

BY_NAME = {policy.name: policy for policy in POLICIES}
FAILING = [(name, index) for name, (_, failing) in CASES.items() for index in range(len(failing))]


def test_policy_names_are_unique() -> None:
    assert len(BY_NAME) == len(POLICIES)


def test_every_policy_has_passing_and_failing_fixtures() -> None:
    assert set(CASES) == set(BY_NAME)
    for name, (passing, failing) in CASES.items():
        assert passing, name
        assert failing, name


def test_pack_passes_on_the_program(run: ProgramRun) -> None:
    violations = run_policies(run.resources)
    assert violations == [], "\n".join(map(str, violations))


def test_pack_sees_every_captured_resource(run: ProgramRun) -> None:
    # The pack checks what the mocks captured: all ~130 resources, components included.
    assert len(run.resources) > 100
    types = {r.type for r in run.resources}
    assert {"aws:rds/instance:Instance", "aws:s3/bucket:Bucket", "aws:ecs/service:Service"} <= types


@pytest.mark.parametrize("name", sorted(CASES))
def test_passing_fixtures_pass(name: str) -> None:
    for fixture in CASES[name][0]:
        violations = run_policies(to_captured(fixture), [BY_NAME[name]])
        assert violations == [], "\n".join(map(str, violations))


@pytest.mark.parametrize(("name", "index"), FAILING)
def test_failing_fixture_fails(name: str, index: int) -> None:
    fixture = CASES[name][1][index]
    violations = run_policies(to_captured(fixture), [BY_NAME[name]])
    assert violations, f"{name} accepted failing fixture #{index}: {fixture}"
    assert {v.policy for v in violations} == {name}


# --- the stack policies find their targets in the real graph ------------------------


def without(
    resources: list[CapturedResource], type_: str, name_suffix: str = ""
) -> list[CapturedResource]:
    dropped = [r for r in resources if r.type == type_ and r.name.endswith(name_suffix)]
    assert dropped, f"nothing to drop: {type_} {name_suffix}"
    return [r for r in resources if r not in dropped]


def replaced(resource: CapturedResource, **changes: Any) -> CapturedResource:
    return CapturedResource(**{**resource.__dict__, **changes})


def policies_failing(resources: list[CapturedResource]) -> set[str]:
    return {v.policy for v in run_policies(resources)}


@pytest.mark.parametrize(
    ("type_", "suffix", "policy"),
    [
        ("aws:s3/bucketVersioning:BucketVersioning", "", "s3-versioning"),
        ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "", "s3-public-access-blocked"),
        ("aws:s3/bucketPolicy:BucketPolicy", "", "s3-tls-only"),
        (
            "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
            "",
            "s3-noncurrent-version-lifecycle",
        ),
        ("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy", "", "sqs-dead-letter-queue"),
        (
            "aws:cloudwatch/metricAlarm:MetricAlarm",
            "-restore-seconds-per-gb",
            "leading-indicator-alarms",
        ),
        (
            "aws:cloudwatch/metricAlarm:MetricAlarm",
            "-webhook-rejections",
            "leading-indicator-alarms",
        ),
        (
            "aws:cloudwatch/metricAlarm:MetricAlarm",
            "-task-failure-rate",
            "leading-indicator-alarms",
        ),
        ("aws:cloudwatch/metricAlarm:MetricAlarm", "-task-duration", "leading-indicator-alarms"),
        (
            "aws:cloudwatch/metricAlarm:MetricAlarm",
            "-outbox-publish-failures",
            "leading-indicator-alarms",
        ),
        ("aws:cloudwatch/metricAlarm:MetricAlarm", "-dlq-not-empty", "leading-indicator-alarms"),
        (
            "aws:cloudwatch/metricAlarm:MetricAlarm",
            "-audit-dead-letters",
            "leading-indicator-alarms",
        ),
        (
            "aws:ec2/vpcEndpointPolicy:VpcEndpointPolicy",
            "-sqs-endpoint-policy",
            "vpc-endpoint-policies",
        ),
        (
            "aws:ec2/vpcEndpointPolicy:VpcEndpointPolicy",
            "-s3-endpoint-policy",
            "vpc-endpoint-policies",
        ),
    ],
)
def test_dropping_a_guard_from_the_program_fails_its_policy(
    prod: ProgramRun, type_: str, suffix: str, policy: str
) -> None:
    assert policies_failing(without(prod.resources, type_, suffix)) == {policy}


def test_database_rule_from_the_load_balancer_fails(prod: ProgramRun) -> None:
    lb_group = next(
        r
        for r in prod.resources
        if r.tags.get("rollgate:role") == "load-balancer" and r.type.endswith("SecurityGroup")
    )
    resources = [
        replaced(
            r,
            property_dependencies={
                **r.property_dependencies,
                "referencedSecurityGroupId": [lb_group.urn],
            },
        )
        if r.name.endswith("-db-from-web")
        else r
        for r in prod.resources
    ]
    assert policies_failing(resources) == {"db-reachable-only-from-app-tiers"}


def test_web_task_with_the_master_secret_fails(prod: ProgramRun) -> None:
    """Issue 9 #1: only the migrate task may connect as the RDS master user."""
    master = prod.exports[outputs.DB_SECRET_ARN]
    app = prod.exports[outputs.DB_APP_SECRET_ARN]
    resources = [
        replaced(
            r,
            inputs={
                **r.inputs,
                "containerDefinitions": r.inputs["containerDefinitions"].replace(app, master),
            },
        )
        if r.name.endswith("-app-web-task")
        else r
        for r in prod.resources
    ]
    assert policies_failing(resources) == {"db-master-secret-migrator-only"}


def test_a_task_demanding_less_than_verify_full_fails(prod: ProgramRun) -> None:
    """Issue 9 #2: `require` encrypts but checks neither the certificate nor the host."""
    resources = [
        replaced(
            r,
            inputs={
                **r.inputs,
                "containerDefinitions": r.inputs["containerDefinitions"].replace(
                    '"verify-full"', '"require"'
                ),
            },
        )
        if r.name.endswith("-audit-task")
        else r
        for r in prod.resources
    ]
    assert policies_failing(resources) == {"ecs-db-tls-verified"}


@pytest.mark.parametrize("variable", [outputs.ENV_DB_SSLMODE, outputs.ENV_DB_SSLROOTCERT])
def test_a_task_without_the_tls_variables_fails(prod: ProgramRun, variable: str) -> None:
    """Issue 9 #2: a missing PGSSLMODE means libpq's `prefer` (no verification at all),
    and verify-full without PGSSLROOTCERT has no CA to verify against."""

    def without(definitions: str) -> str:
        parsed = json.loads(definitions)
        for container in parsed:
            container["environment"] = [
                e for e in container["environment"] if e["name"] != variable
            ]
        return json.dumps(parsed)

    resources = [
        replaced(
            r,
            inputs={
                **r.inputs,
                "containerDefinitions": without(r.inputs["containerDefinitions"]),
            },
        )
        if r.name.endswith("-app-worker-task")
        else r
        for r in prod.resources
    ]
    assert policies_failing(resources) == {"ecs-db-tls-verified"}


def test_unprotected_prod_database_fails(prod: ProgramRun) -> None:
    resources = [
        replaced(r, protect=False) if r.type == "aws:rds/instance:Instance" else r
        for r in prod.resources
    ]
    assert policies_failing(resources) == {"rds-prod-resilience", "prod-stateful-protected"}


def test_pack_is_served_mandatory_from_its_main(monkeypatch: pytest.MonkeyPatch) -> None:
    built: dict[str, Any] = {}

    def record(**kwargs: Any) -> None:  # the real PolicyPack starts a server and blocks
        built.update(kwargs)

    monkeypatch.setattr("pulumi_policy.PolicyPack", record)
    runpy.run_path(str(REPO_ROOT / "infra" / "policy" / "__main__.py"), run_name="__main__")
    assert built["name"] == "rollgate"
    assert built["enforcement_level"] is EnforcementLevel.MANDATORY
    assert built["policies"] is POLICIES
