"""AuditJob: EventBridge Scheduler runs `rollgate audit --json` as a least-privilege ECS task."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import outputs
from infra.audit import audit_stack_outputs
from release.audit.aws import plain_secret_variables
from tests.infra.harness import ProgramRun


def statements(run: ProgramRun, suffix: str) -> dict[str, dict[str, Any]]:
    policy = run.one("aws:iam/rolePolicy:RolePolicy", suffix)
    return {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}


def test_schedule_runs_the_audit_task_on_fargate_privately(run: ProgramRun) -> None:
    schedule = run.one("aws:scheduler/schedule:Schedule")
    inputs = schedule.inputs
    assert inputs["scheduleExpression"] == "rate(60 minutes)"
    assert inputs["scheduleExpressionTimezone"] == "UTC"
    assert inputs["flexibleTimeWindow"] == {"mode": "OFF"}
    target = inputs["target"]
    assert target["arn"] == run.exports[outputs.CLUSTER_ARN]
    ecs = target["ecsParameters"]
    assert ecs["taskDefinitionArn"] == run.exports[outputs.AUDIT_TASK_DEFINITION_ARN]
    assert ecs["launchType"] == "FARGATE"
    assert ecs["networkConfiguration"]["assignPublicIp"] is False
    assert target["retryPolicy"]["maximumRetryAttempts"] == 3
    assert schedule.property_dependencies["groupName"] == [
        run.one("aws:scheduler/scheduleGroup:ScheduleGroup").urn
    ]


def test_audit_container_runs_rollgate_audit_json(run: ProgramRun) -> None:
    task = run.one("aws:ecs/taskDefinition:TaskDefinition", "-audit-task")
    [container] = json.loads(task.inputs["containerDefinitions"])
    assert container["command"] == ["rollgate", "audit", "--json"]
    assert container["image"] == run.config["toolsImage"]  # the CLI is not in the app image
    assert {s["name"] for s in container["secrets"]} == {"PGUSER", "PGPASSWORD"}


def test_scheduler_role_may_only_run_the_audit_family_on_this_cluster(run: ProgramRun) -> None:
    role = run.one("aws:iam/role:Role", "-audit-scheduler-role")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    policy = statements(run, "-audit-scheduler-policy")
    run_task = policy["RunAuditTask"]
    assert run_task["Action"] == ["ecs:RunTask"]
    assert run_task["Resource"] == [
        f"arn:aws:ecs:eu-west-1:123456789012:task-definition/rollgate-{run.stack}-audit:*"
    ]
    assert run_task["Condition"] == {"ArnEquals": {"ecs:cluster": run.exports[outputs.CLUSTER_ARN]}}
    pass_role = policy["PassAuditRoles"]
    assert pass_role["Action"] == ["iam:PassRole"]
    assert sorted(pass_role["Resource"]) == sorted(
        [
            f"arn:aws:iam::123456789012:role/rollgate-{run.stack}-audit-execution-role",
            f"arn:aws:iam::123456789012:role/rollgate-{run.stack}-audit-task-role",
        ]
    )
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }


#: What `rollgate audit` calls in AWS (release/audit/aws.py, rollback/store.py,
#: rollback/ledger.py, rollback/ecs.py), and so what its task role must grant.
AUDIT_ACTIONS = frozenset(
    {
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",  # the audit log entry (logs/audit/*)
        "s3:GetBucketObjectLockConfiguration",
        "s3:GetBucketPublicAccessBlock",
        "s3:GetBucketAcl",
        "s3:GetBucketPolicy",
        "s3:GetBucketVersioning",
        "rds:DescribeDBInstances",
        "rds:DescribeDBParameters",
        "rds:DescribeDBSnapshots",
        "ecs:DescribeTaskDefinition",
        "ecs:DescribeServices",
        "ecs:ListTasks",  # the API probe finds a running web task (release/audit/api.py)
        "ecs:DescribeTasks",
        "sqs:GetQueueAttributes",
        "cloudwatch:GetMetricStatistics",
        "cloudwatch:PutMetricData",
        "kms:Decrypt",  # SSE-KMS objects in the artifact bucket
        "kms:GenerateDataKey",  # writing the log entry under SSE-KMS
    }
)


def test_audit_task_role_grants_every_action_the_audit_needs(run: ProgramRun) -> None:
    policy = statements(run, "-audit-task-policy")
    granted = {a for s in policy.values() for a in s["Action"]}
    assert sorted(AUDIT_ACTIONS - granted) == []


def test_audit_task_role_reads_only_what_it_audits(run: ProgramRun) -> None:
    policy = statements(run, "-audit-task-policy")
    actions = {a for s in policy.values() for a in s["Action"]}
    assert actions <= AUDIT_ACTIONS | {"s3:GetObjectVersion"}
    writes = {
        a
        for a in actions
        if a.split(":")[1].startswith(("Put", "Delete", "Create", "Modify", "Restore"))
    }
    assert writes == {"cloudwatch:PutMetricData", "s3:PutObject"}
    # The one write to S3: the audit's own log prefix, nothing else in the bucket.
    bucket = run.exports[outputs.ARTIFACT_BUCKET]
    assert policy["AppendAuditLog"]["Resource"] == [f"arn:aws:s3:::{bucket}/logs/audit/*"]
    assert policy["PutRollgateMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": outputs.METRIC_NAMESPACE}
    }
    assert policy["InspectQueues"]["Resource"] == [
        run.exports[outputs.QUEUE_ARN],
        run.exports[outputs.DLQ_ARN],
    ]
    # Resource "*" only where AWS has no resource type for the action.
    unscoped = {a for s in policy.values() if s["Resource"] in ("*", ["*"]) for a in s["Action"]}
    assert unscoped == {
        "ecs:DescribeTaskDefinition",
        "ecs:ListTasks",
        "cloudwatch:GetMetricStatistics",
        "cloudwatch:PutMetricData",
    }
    [services] = policy["InspectServices"]["Resource"]
    assert ":service/" in services and services.endswith("/*")
    # Finding the web task to probe: this cluster's tasks only.
    cluster_arn = run.exports[outputs.CLUSTER_ARN]
    assert policy["ListClusterTasks"]["Action"] == ["ecs:ListTasks"]
    assert policy["ListClusterTasks"]["Condition"] == {"ArnEquals": {"ecs:cluster": cluster_arn}}
    assert policy["DescribeClusterTasks"]["Resource"] == [
        f"{cluster_arn.replace(':cluster/', ':task/')}/*"
    ]


def test_audit_security_group_reaches_the_database(run: ProgramRun) -> None:
    schedule = run.one("aws:scheduler/schedule:Schedule")
    [group_urn] = [
        urn
        for urn in schedule.property_dependencies["target"]
        if "securityGroup:SecurityGroup" in urn
    ]
    assert run.by_urn[group_urn].tags["rollgate:role"] == "audit"


def audit_environment(run: ProgramRun) -> dict[str, str]:
    task = run.one("aws:ecs/taskDefinition:TaskDefinition", "-audit-task")
    [container] = json.loads(task.inputs["containerDefinitions"])
    return {v["name"]: v["value"] for v in container["environment"]}


def test_the_scheduled_audit_is_told_the_stack_outputs_its_checks_name(run: ProgramRun) -> None:
    """Gap of issue 12: without them, security posture and queue health never ran."""
    given = json.loads(audit_environment(run)[outputs.ENV_STACK_OUTPUTS])
    assert set(given) == outputs.AUDIT_TASK_OUTPUTS
    # The same values `pulumi stack output` gives an operator, resolved at deploy time.
    assert given == {name: run.exports[name] for name in outputs.AUDIT_TASK_OUTPUTS}
    # Its own revision's ARN cannot be in it (the revision being created); its family is.
    assert outputs.AUDIT_TASK_DEFINITION_ARN not in given
    assert given[outputs.AUDIT_TASK_FAMILY] == f"rollgate-{run.stack}-audit"
    # What the posture checks need to run at all (release/audit/aws.py).
    for name in (outputs.DB_INSTANCE_ID, outputs.ARTIFACT_BUCKET, outputs.QUEUE_URL):
        assert given[name]
    assert given[outputs.DB_SECRET_ARN].startswith("arn:aws:secretsmanager:")


def test_the_audit_environment_holds_identifiers_never_a_secret_value(run: ProgramRun) -> None:
    environment = audit_environment(run)
    text = environment[outputs.ENV_STACK_OUTPUTS]
    # The mocks' generated role password: a secret value the program handles.
    assert "mock-generated-password-not-a-secret" not in text
    for name, value in json.loads(text).items():
        if name == outputs.WEB_CONTAINER_PORT:
            assert value == run.exports[outputs.WEB_CONTAINER_PORT] == 8000
            continue
        assert value.startswith(("arn:aws:", "https://sqs.")) or "/" not in value, value
    # The audit's own plain-environment check (and the policy pack's) finds nothing.
    assert (
        plain_secret_variables(
            {
                "name": "audit",
                "environment": [{"name": k, "value": v} for k, v in environment.items()],
            }
        )
        == []
    )


def test_the_audit_outputs_must_be_exactly_the_agreed_set() -> None:
    """A check that needs a new output fails here until infra passes it too."""
    with pytest.raises(
        ValueError, match=r"missing \['artifactBucket', 'clusterName', 'dbInstanceId'"
    ):
        audit_stack_outputs("rollgate-dev-audit", {})
    every = {name: "x" for name in outputs.AUDIT_TASK_OUTPUTS - {outputs.AUDIT_TASK_FAMILY}}
    with pytest.raises(ValueError, match=r"unexpected \['appUrl'\]"):
        audit_stack_outputs("rollgate-dev-audit", {**every, outputs.APP_URL: "https://x"})
