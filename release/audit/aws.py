"""Queue health and security posture, by read-only AWS calls; metrics out to CloudWatch.

Nothing here changes a resource or a message: no ReceiveMessage (it would
hide the message and bump its receive count), only Get*/Describe*/List*.
The stack's resources are named by its outputs (``pulumi stack output --json``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from infra import outputs
from release.audit.model import CheckResult, Finding, NotRunnable, verdict
from release.audit.thresholds import Thresholds

#: Environment variable names that must come from ``secrets``, never ``environment``.
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE|API_?KEY|CREDENTIAL", re.IGNORECASE)
#: A connection string with a password in it (``scheme://user:password@host``).
_URL_WITH_PASSWORD = re.compile(r"://[^/:@\s]+:[^/@\s]+@")


def client(service: str, endpoint_url: str | None) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10)
    return boto3.client(service, endpoint_url=endpoint_url, config=config)


def _need(stack: Mapping[str, Any] | None, *names: str) -> list[str]:
    if stack is None:
        raise NotRunnable(
            f"no --stack-outputs given and no ${outputs.ENV_STACK_OUTPUTS}: the stack's "
            "resources are unknown"
        )
    missing = [n for n in names if not stack.get(n)]
    if missing:
        raise NotRunnable(f"the stack outputs lack {', '.join(missing)}")
    return [str(stack[n]) for n in names]


def queue_health(
    stack: Mapping[str, Any] | None, endpoint_url: str | None, thresholds: Thresholds
) -> CheckResult:
    """DLQ empty, oldest message young enough, redrive policy pointing at the DLQ."""
    queue_url, dlq_url, dlq_arn = _need(stack, outputs.QUEUE_URL, outputs.DLQ_URL, outputs.DLQ_ARN)
    sqs = client("sqs", endpoint_url)
    findings: list[Finding] = []
    dlq = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
    dead = int(dlq.get("ApproximateNumberOfMessages", 0)) + int(
        dlq.get("ApproximateNumberOfMessagesNotVisible", 0)
    )
    findings.append(
        Finding(
            "dead-letter queue",
            dead == 0,
            "empty" if dead == 0 else f"{dead} messages in {dlq_url}: inspect and redrive them",
        )
    )
    main = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    waiting = sum(
        int(main.get(name, 0))
        for name in (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
    )
    metrics = {"dlq_messages": float(dead), "queue_messages": float(waiting)}
    # SQS attributes carry no message age; CloudWatch's ApproximateAgeOfOldestMessage
    # does (reading a message to see its timestamp would change it). An empty queue
    # has no oldest message at all.
    if waiting == 0:
        findings.append(Finding("oldest message", True, "the queue is empty"))
    else:
        age = _oldest_age(queue_url, endpoint_url)
        if age is None:
            raise NotRunnable(
                f"{waiting} messages wait but CloudWatch has no ApproximateAgeOfOldestMessage "
                "for the queue in the last 15 minutes: their age is unknown"
            )
        metrics["oldest_message_seconds"] = age
        findings.append(
            Finding(
                "oldest message",
                age <= thresholds.queue_oldest_message_seconds,
                f"{age:.0f} s old (CloudWatch ApproximateAgeOfOldestMessage; threshold "
                f"{thresholds.queue_oldest_message_seconds:.0f} s)",
            )
        )
    raw = main.get("RedrivePolicy")
    if not raw:
        findings.append(Finding("redrive policy", False, f"{queue_url} has no redrive policy"))
    else:
        policy = json.loads(raw)
        target = policy.get("deadLetterTargetArn")
        findings.append(
            Finding(
                "redrive policy",
                target == dlq_arn,
                f"dead letters go to {target}, maxReceiveCount {policy.get('maxReceiveCount')}"
                + ("" if target == dlq_arn else f"; expected {dlq_arn}"),
            )
        )
    return verdict(
        "queue_health", findings, "DLQ empty, queue fresh, redrive intact", metrics=metrics
    )


def _oldest_age(queue_url: str, endpoint_url: str | None) -> float | None:
    cloudwatch = client("cloudwatch", endpoint_url)
    now = datetime.now(UTC)
    answer = cloudwatch.get_metric_statistics(
        Namespace="AWS/SQS",
        MetricName="ApproximateAgeOfOldestMessage",
        Dimensions=[{"Name": "QueueName", "Value": queue_url.rstrip("/").rsplit("/", 1)[-1]}],
        StartTime=now - timedelta(minutes=15),
        EndTime=now,
        Period=300,
        Statistics=["Maximum"],
    )
    points = answer.get("Datapoints", [])
    if not points:
        return None
    return float(max(p["Maximum"] for p in points))


def security_posture(stack: Mapping[str, Any] | None, endpoint_url: str | None) -> CheckResult:
    """RDS encrypted, private, TLS forced; bucket private and versioned; queue encrypted; tasks."""
    (instance_id, bucket, queue_url) = _need(
        stack, outputs.DB_INSTANCE_ID, outputs.ARTIFACT_BUCKET, outputs.QUEUE_URL
    )
    assert stack is not None
    findings = [
        *_database(instance_id, endpoint_url),
        *_bucket(bucket, endpoint_url),
        *_queue_encryption(queue_url, endpoint_url),
        *_task_definitions(stack, endpoint_url),
    ]
    return verdict(
        "security_posture",
        findings,
        "database, bucket, queue and task definitions as hardened",
    )


def _database(instance_id: str, endpoint_url: str | None) -> list[Finding]:
    rds = client("rds", endpoint_url)
    instance = rds.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"][0]
    findings = [
        Finding(
            "rds encrypted",
            bool(instance.get("StorageEncrypted")),
            f"{instance_id}: StorageEncrypted={instance.get('StorageEncrypted')}",
        ),
        Finding(
            "rds private",
            not instance.get("PubliclyAccessible"),
            f"{instance_id}: PubliclyAccessible={instance.get('PubliclyAccessible')}",
        ),
    ]
    groups = [g["DBParameterGroupName"] for g in instance.get("DBParameterGroups", [])]
    forced = False
    for group in groups:
        for page in rds.get_paginator("describe_db_parameters").paginate(
            DBParameterGroupName=group
        ):
            for parameter in page.get("Parameters", []):
                if parameter.get("ParameterName") == "rds.force_ssl":
                    forced = forced or str(parameter.get("ParameterValue")) == "1"
    findings.append(
        Finding(
            "rds TLS forced",
            forced,
            f"rds.force_ssl=1 in {', '.join(groups)}"
            if forced
            else f"rds.force_ssl is not 1 in the parameter groups {groups}",
        )
    )
    return findings


def _bucket(bucket: str, endpoint_url: str | None) -> list[Finding]:
    from botocore.exceptions import ClientError

    s3 = client("s3", endpoint_url)
    findings = []
    try:
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        all_blocked = all(
            block.get(k)
            for k in (
                "BlockPublicAcls",
                "IgnorePublicAcls",
                "BlockPublicPolicy",
                "RestrictPublicBuckets",
            )
        )
        findings.append(Finding("bucket public access block", all_blocked, f"{bucket}: {block}"))
    except ClientError:
        findings.append(
            Finding("bucket public access block", False, f"{bucket} has no public access block")
        )
    grants = s3.get_bucket_acl(Bucket=bucket).get("Grants", [])
    public_grants = [
        f"{g['Grantee'].get('URI')}:{g.get('Permission')}"
        for g in grants
        if str(g.get("Grantee", {}).get("URI", "")).endswith(("/AllUsers", "/AuthenticatedUsers"))
    ]
    findings.append(
        Finding(
            "bucket ACL",
            not public_grants,
            f"{bucket} grants {', '.join(public_grants)}" if public_grants else "no public grant",
        )
    )
    try:
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError:
        policy = {}
    public_statements = [
        s.get("Sid", "?")
        for s in policy.get("Statement", [])
        if s.get("Effect") == "Allow" and s.get("Principal") in ("*", {"AWS": "*"})
    ]
    findings.append(
        Finding(
            "bucket policy",
            not public_statements,
            f"statements allowing everyone: {public_statements}"
            if public_statements
            else "no statement allows everyone",
        )
    )
    status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    findings.append(
        Finding("bucket versioned", status == "Enabled", f"{bucket}: versioning {status}")
    )
    return findings


def _queue_encryption(queue_url: str, endpoint_url: str | None) -> list[Finding]:
    attributes = client("sqs", endpoint_url).get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["All"]
    )["Attributes"]
    key = attributes.get("KmsMasterKeyId")
    managed = attributes.get("SqsManagedSseEnabled") == "true"
    return [
        Finding(
            "queue encrypted",
            bool(key) or managed,
            f"KMS key {key}" if key else ("SQS-managed SSE" if managed else "not encrypted"),
        )
    ]


def _task_definitions(stack: Mapping[str, Any], endpoint_url: str | None) -> list[Finding]:
    """No secret in plain environment variables; no app task with the master secret.

    Each role's revisions are the one the stack outputs name plus, for web and worker,
    whatever their services run now (a rollback moves a service to another revision).
    The audit task names its family: it cannot carry its own revision's ARN.
    """
    master = str(stack.get(outputs.DB_SECRET_ARN) or "")
    if not master:
        raise NotRunnable(f"the stack outputs lack {outputs.DB_SECRET_ARN}")
    ecs = client("ecs", endpoint_url)
    revisions: dict[str, list[str]] = {
        "web": [str(stack.get(outputs.WEB_TASK_DEFINITION_ARN) or "")],
        "worker": [str(stack.get(outputs.WORKER_TASK_DEFINITION_ARN) or "")],
        "audit": [
            str(
                stack.get(outputs.AUDIT_TASK_DEFINITION_ARN)
                or stack.get(outputs.AUDIT_TASK_FAMILY)
                or ""
            )
        ],
        "migrate": [str(stack.get(outputs.MIGRATE_TASK_DEFINITION_ARN) or "")],
    }
    for role, running in _running_revisions(ecs, stack).items():
        revisions[role] += running
    findings = []
    for role, references in revisions.items():
        described = [
            ecs.describe_task_definition(taskDefinition=ref)["taskDefinition"]
            for ref in dict.fromkeys(r for r in references if r)
        ]
        if not described:
            continue
        plain, master_users = [], []
        for definition in described:
            for container in definition.get("containerDefinitions", []):
                plain += plain_secret_variables(container)
                master_users += [
                    f"{container.get('name')}.{secret.get('name')}"
                    for secret in container.get("secrets", [])
                    if str(secret.get("valueFrom", "")).startswith(master)
                ]
        checked = ", ".join(str(d.get("taskDefinitionArn")).rsplit("/", 1)[-1] for d in described)
        findings.append(
            Finding(
                f"{role} task secrets",
                not plain,
                f"secrets in plain environment variables: {', '.join(plain)} ({checked})"
                if plain
                else f"no secret in plain environment variables ({checked})",
            )
        )
        if role in _APP_ROLES:
            findings.append(
                Finding(
                    f"{role} task database role",
                    not master_users,
                    f"uses the master secret ({', '.join(master_users)}; {checked}): give it "
                    "the app role's secret"
                    if master_users
                    else f"does not use the master secret ({checked})",
                )
            )
    return findings


#: The app's task roles: they connect as the app role, never with the master secret.
_APP_ROLES = ("web", "worker")


def plain_secret_variables(container: Mapping[str, Any]) -> list[str]:
    """``container.VARIABLE`` for each environment variable that looks like a secret."""
    return [
        f"{container.get('name')}.{variable.get('name')}"
        for variable in container.get("environment", [])
        if _SECRET_NAME.search(str(variable.get("name", "")))
        or _URL_WITH_PASSWORD.search(str(variable.get("value", "")))
    ]


def _running_revisions(ecs: Any, stack: Mapping[str, Any]) -> dict[str, list[str]]:
    """Role -> the task definitions its service's deployments run now (none if unnamed)."""
    cluster = stack.get(outputs.CLUSTER_NAME)
    services = {
        str(name): role
        for role, name in (
            ("web", stack.get(outputs.WEB_SERVICE_NAME)),
            ("worker", stack.get(outputs.WORKER_SERVICE_NAME)),
        )
        if name
    }
    if not cluster or not services:
        return {}
    answer = ecs.describe_services(cluster=str(cluster), services=list(services))
    running: dict[str, list[str]] = {}
    for service in answer.get("services", []):
        role = services.get(str(service.get("serviceName")))
        if role is not None:
            # The primary revision, and any other still running while a deployment rolls.
            running[role] = [
                str(d["taskDefinition"])
                for d in [service, *service.get("deployments", [])]
                if d.get("taskDefinition")
            ]
    return running


#: Report metric -> CloudWatch metric name (the names infra's alarms watch).
METRICS = {
    "snapshot_age_seconds": (outputs.METRIC_SNAPSHOT_AGE_SECONDS, "Seconds"),
    "restore_seconds": (outputs.METRIC_RESTORE_SECONDS, "Seconds"),
    "drift_count": (outputs.METRIC_AUDIT_DRIFT_COUNT, "Count"),
    "failures": (outputs.METRIC_AUDIT_FAILURES, "Count"),
    "snapshot_mb": (outputs.METRIC_SNAPSHOT_MEGABYTES, "Megabytes"),
}


def put_metrics(values: Mapping[str, float], stack_name: str, endpoint_url: str | None) -> int:
    """Emit the audit's numbers as custom metrics (namespace and names from infra.outputs)."""
    data = [
        {
            "MetricName": name,
            "Dimensions": [{"Name": outputs.METRIC_DIMENSION_STACK, "Value": stack_name}],
            "Value": float(values[key]),
            "Unit": unit,
        }
        for key, (name, unit) in METRICS.items()
        if key in values
    ]
    if data:
        client("cloudwatch", endpoint_url).put_metric_data(
            Namespace=outputs.METRIC_NAMESPACE, MetricData=data
        )
    return len(data)


def rejected_webhooks(stack_name: str, endpoint_url: str | None, hours: int = 24) -> float:
    """Webhook events the app rejected (bad signature or body) over the last ``hours``.

    A leading indicator for the trend (a rising count is a misconfigured secret, or
    someone probing the endpoint), read from the app's own custom metric.
    """
    now = datetime.now(UTC)
    answer = client("cloudwatch", endpoint_url).get_metric_statistics(
        Namespace=outputs.METRIC_NAMESPACE,
        MetricName=outputs.METRIC_WEBHOOK_REJECTED,
        Dimensions=[{"Name": outputs.METRIC_DIMENSION_STACK, "Value": stack_name}],
        StartTime=now - timedelta(hours=hours),
        EndTime=now,
        Period=hours * 3600,
        Statistics=["Sum"],
    )
    return float(sum(point["Sum"] for point in answer.get("Datapoints", [])))
