"""A healthy stack built in moto: the resources the audit's AWS checks read, hardened."""

from __future__ import annotations

import json
import secrets
from typing import Any

import boto3

from infra import outputs

MASTER_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-master-AbCdEf"
APP_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rollgate-app-AbCdEf"
AUDIT_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rollgate-audit-AbCdEf"


def build_stack(endpoint: str) -> dict[str, Any]:
    """Create queues, bucket, database and task definitions; return the stack outputs."""
    token = secrets.token_hex(3)
    sqs: Any = boto3.client("sqs", endpoint_url=endpoint)
    dlq_url = sqs.create_queue(
        QueueName=f"rollgate-dlq-{token}", Attributes={"KmsMasterKeyId": "alias/aws/sqs"}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=f"rollgate-work-{token}",
        Attributes={
            "KmsMasterKeyId": "alias/aws/sqs",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}),
        },
    )["QueueUrl"]

    s3: Any = boto3.client("s3", endpoint_url=endpoint)
    bucket = f"rollgate-artifacts-{token}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )

    rds: Any = boto3.client("rds", endpoint_url=endpoint)
    group = f"rollgate-pg-{token}"
    rds.create_db_parameter_group(
        DBParameterGroupName=group, DBParameterGroupFamily="postgres16", Description="rollgate"
    )
    rds.modify_db_parameter_group(
        DBParameterGroupName=group,
        Parameters=[
            {"ParameterName": "rds.force_ssl", "ParameterValue": "1", "ApplyMethod": "immediate"}
        ],
    )
    instance = f"rollgate-db-{token}"
    rds.create_db_instance(
        DBInstanceIdentifier=instance,
        DBInstanceClass="db.t4g.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="rollgate",
        MasterUserPassword="not-a-real-password",
        StorageEncrypted=True,
        PubliclyAccessible=False,
        DBParameterGroupName=group,
    )

    ecs: Any = boto3.client("ecs", endpoint_url=endpoint)

    def task(family: str, secret_arn: str, environment: dict[str, str]) -> str:
        answer = ecs.register_task_definition(
            family=f"{family}-{token}",
            containerDefinitions=[
                {
                    "name": family,
                    "image": "rollgate/app:test",
                    "memory": 512,
                    "environment": [{"name": k, "value": v} for k, v in environment.items()],
                    "secrets": [
                        {"name": outputs.SECRET_DB_USER, "valueFrom": f"{secret_arn}:username::"},
                        {
                            "name": outputs.SECRET_DB_PASSWORD,
                            "valueFrom": f"{secret_arn}:password::",
                        },
                    ],
                }
            ],
        )
        return str(answer["taskDefinition"]["taskDefinitionArn"])

    plain = {outputs.ENV_DB_HOST: "db.internal", outputs.ENV_QUEUE_URL: queue_url}
    web, worker = task("web", APP_SECRET, plain), task("worker", APP_SECRET, plain)
    task("audit", AUDIT_SECRET, plain)  # the audit names its family, not its own revision
    cluster = f"rollgate-{token}"
    ecs.create_cluster(clusterName=cluster)
    services = {}
    for role, definition in (("web", web), ("worker", worker)):
        services[role] = f"rollgate-{role}-{token}"
        ecs.create_service(
            cluster=cluster, serviceName=services[role], taskDefinition=definition, desiredCount=0
        )
    return {
        outputs.QUEUE_URL: queue_url,
        outputs.DLQ_URL: dlq_url,
        outputs.DLQ_ARN: dlq_arn,
        outputs.ARTIFACT_BUCKET: bucket,
        outputs.DB_INSTANCE_ID: instance,
        outputs.DB_SECRET_ARN: MASTER_SECRET,
        outputs.DB_APP_SECRET_ARN: APP_SECRET,
        outputs.WEB_TASK_DEFINITION_ARN: web,
        outputs.WORKER_TASK_DEFINITION_ARN: worker,
        outputs.MIGRATE_TASK_DEFINITION_ARN: task("migrate", MASTER_SECRET, plain),
        outputs.AUDIT_TASK_FAMILY: f"audit-{token}",
        outputs.CLUSTER_NAME: cluster,
        outputs.WEB_SERVICE_NAME: services["web"],
        # The web service runs no task (desired count 0): without appUrl, the API probe
        # finds nothing to probe (tests/audit/test_web_task_probe.py runs tasks).
        outputs.WEB_CONTAINER_PORT: 8000,
        outputs.WORKER_SERVICE_NAME: services["worker"],
    }


def scheduled_task_environment(stack: dict[str, Any]) -> str:
    """``$ROLLGATE_STACK_OUTPUTS`` as infra gives it to the audit task (infra/audit.py)."""
    return json.dumps({name: stack[name] for name in sorted(outputs.AUDIT_TASK_OUTPUTS)})
