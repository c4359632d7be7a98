"""Queue health and security posture against moto's server: healthy, then each seeded fault."""

from __future__ import annotations

import json
import secrets
from typing import Any

import boto3
import pytest

from infra import outputs
from release.audit.aws import put_metrics, queue_health, security_posture
from release.audit.model import NotRunnable, Status
from release.audit.thresholds import Thresholds
from tests.audit.moto_stack import MASTER_SECRET, build_stack


@pytest.fixture
def stack(moto_endpoint: str) -> dict[str, Any]:
    return build_stack(moto_endpoint)


def failed(result: Any) -> set[str]:
    return {f.name for f in result.findings if not f.ok}


def test_a_healthy_stack_passes_both_checks(stack: dict[str, Any], moto_endpoint: str) -> None:
    queues = queue_health(stack, moto_endpoint, Thresholds())
    assert queues.status is Status.PASSED, queues.summary
    posture = security_posture(stack, moto_endpoint)
    assert posture.status is Status.PASSED, posture.summary
    assert len(posture.findings) >= 12


def test_a_message_in_the_dlq_fails_queue_health(stack: dict[str, Any], moto_endpoint: str) -> None:
    sqs: Any = boto3.client("sqs", endpoint_url=moto_endpoint)
    sqs.send_message(QueueUrl=stack[outputs.DLQ_URL], MessageBody='{"task_id": 7}')
    result = queue_health(stack, moto_endpoint, Thresholds())
    assert result.status is Status.FAILED
    assert failed(result) == {"dead-letter queue"}
    assert "1 messages" in result.summary
    # Measured without receiving: the message is still there, never received.
    attributes = sqs.get_queue_attributes(
        QueueUrl=stack[outputs.DLQ_URL], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "1"


def test_a_removed_redrive_policy_fails_queue_health(
    stack: dict[str, Any], moto_endpoint: str
) -> None:
    sqs: Any = boto3.client("sqs", endpoint_url=moto_endpoint)
    sqs.set_queue_attributes(QueueUrl=stack[outputs.QUEUE_URL], Attributes={"RedrivePolicy": ""})
    result = queue_health(stack, moto_endpoint, Thresholds())
    assert failed(result) == {"redrive policy"}


def test_waiting_messages_of_unknown_age_are_not_a_pass(
    stack: dict[str, Any], moto_endpoint: str
) -> None:
    sqs: Any = boto3.client("sqs", endpoint_url=moto_endpoint)
    sqs.send_message(QueueUrl=stack[outputs.QUEUE_URL], MessageBody="{}")
    with pytest.raises(NotRunnable, match="ApproximateAgeOfOldestMessage"):
        queue_health(stack, moto_endpoint, Thresholds())


def test_a_public_bucket_fails_security_posture(stack: dict[str, Any], moto_endpoint: str) -> None:
    s3: Any = boto3.client("s3", endpoint_url=moto_endpoint)
    bucket = stack[outputs.ARTIFACT_BUCKET]
    s3.delete_public_access_block(Bucket=bucket)
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "Everyone",
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::{bucket}/*",
                    }
                ],
            }
        ),
    )
    result = security_posture(stack, moto_endpoint)
    assert result.status is Status.FAILED
    assert failed(result) == {"bucket public access block", "bucket ACL", "bucket policy"}


def test_an_app_task_with_the_master_secret_or_a_plain_password_fails(
    stack: dict[str, Any], moto_endpoint: str
) -> None:
    ecs: Any = boto3.client("ecs", endpoint_url=moto_endpoint)
    worker = ecs.register_task_definition(
        family="worker-bad",
        containerDefinitions=[
            {
                "name": "worker",
                "image": "rollgate/app:test",
                "memory": 512,
                "environment": [
                    {"name": "STRIPE_WEBHOOK_SECRET", "value": "whsec_plain"},
                    {"name": "DATABASE_URL", "value": "postgresql://app:hunter2@db/app"},
                ],
                "secrets": [{"name": "PGPASSWORD", "valueFrom": f"{MASTER_SECRET}:password::"}],
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    result = security_posture({**stack, outputs.WORKER_TASK_DEFINITION_ARN: worker}, moto_endpoint)
    assert failed(result) == {"worker task secrets", "worker task database role"}
    assert "worker.STRIPE_WEBHOOK_SECRET" in result.summary
    assert "worker.DATABASE_URL" in result.summary


def test_an_unencrypted_public_database_without_forced_tls_fails(
    stack: dict[str, Any], moto_endpoint: str
) -> None:
    rds: Any = boto3.client("rds", endpoint_url=moto_endpoint)
    rds.create_db_instance(
        DBInstanceIdentifier="rollgate-open",
        DBInstanceClass="db.t4g.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="rollgate",
        MasterUserPassword="not-a-real-password",
        StorageEncrypted=False,
        PubliclyAccessible=True,
    )
    result = security_posture({**stack, outputs.DB_INSTANCE_ID: "rollgate-open"}, moto_endpoint)
    assert failed(result) == {"rds encrypted", "rds private", "rds TLS forced"}


def test_without_stack_outputs_the_aws_checks_do_not_run(moto_endpoint: str) -> None:
    with pytest.raises(NotRunnable, match="no --stack-outputs"):
        queue_health(None, moto_endpoint, Thresholds())
    with pytest.raises(NotRunnable, match="no --stack-outputs"):
        security_posture(None, moto_endpoint)


def test_metrics_go_to_the_rollgate_namespace_with_the_stack_dimension(
    moto_endpoint: str,
) -> None:
    stack_name = f"dev-{secrets.token_hex(3)}"
    sent = put_metrics(
        {"snapshot_age_seconds": 60.0, "restore_seconds": 2.5, "drift_count": 0.0, "failures": 1.0},
        stack_name,
        moto_endpoint,
    )
    assert sent == 4
    cloudwatch: Any = boto3.client("cloudwatch", endpoint_url=moto_endpoint)
    listed = [
        m
        for m in cloudwatch.list_metrics(Namespace=outputs.METRIC_NAMESPACE)["Metrics"]
        if {"Name": outputs.METRIC_DIMENSION_STACK, "Value": stack_name} in m["Dimensions"]
    ]
    names = {m["MetricName"] for m in listed}
    assert {
        outputs.METRIC_SNAPSHOT_AGE_SECONDS,
        outputs.METRIC_RESTORE_SECONDS,
        outputs.METRIC_AUDIT_DRIFT_COUNT,
        outputs.METRIC_AUDIT_FAILURES,
    } <= names
    assert all(
        m["Dimensions"] == [{"Name": outputs.METRIC_DIMENSION_STACK, "Value": stack_name}]
        for m in listed
    )


def test_a_service_rolled_onto_a_revision_with_the_master_secret_fails(
    stack: dict[str, Any], moto_endpoint: str
) -> None:
    """The revision the stack outputs name is clean; the one the service runs now is not."""
    ecs: Any = boto3.client("ecs", endpoint_url=moto_endpoint)
    bad = ecs.register_task_definition(
        family=f"worker-rolled-{secrets.token_hex(3)}",
        containerDefinitions=[
            {
                "name": "worker",
                "image": "rollgate/app:old",
                "memory": 512,
                "secrets": [{"name": "PGPASSWORD", "valueFrom": f"{MASTER_SECRET}:password::"}],
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(
        cluster=stack[outputs.CLUSTER_NAME],
        service=stack[outputs.WORKER_SERVICE_NAME],
        taskDefinition=bad,
    )
    result = security_posture(stack, moto_endpoint)
    assert failed(result) == {"worker task database role"}
    assert bad.rsplit("/", 1)[-1] in result.summary
    # Without the cluster and service names only the stack's own revision is checked.
    unnamed = {k: v for k, v in stack.items() if k != outputs.CLUSTER_NAME}
    assert security_posture(unnamed, moto_endpoint).status is Status.PASSED


def test_the_audit_task_is_checked_by_its_family(stack: dict[str, Any], moto_endpoint: str) -> None:
    result = security_posture(stack, moto_endpoint)
    [audit] = [f for f in result.findings if f.name == "audit task secrets"]
    assert audit.ok and stack[outputs.AUDIT_TASK_FAMILY] in audit.evidence
