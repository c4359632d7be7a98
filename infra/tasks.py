"""Building blocks shared by the ECS services and the scheduled audit task.

Pure helpers (container definitions, the tasks' environment) plus the two IAM
roles every Fargate task has: the execution role (what ECS needs to start it:
pull the image, write logs, read its secrets) and the task role (what the code
inside may call). Both name their resources; none uses a managed policy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi_aws as aws

from infra import outputs
from infra.account import AwsAccount
from infra.config import MAX_STOP_TIMEOUT_SECONDS, EcrRepository
from infra.iam import Statement, policy_document, service_trust_policy, statement
from infra.tagging import with_role

#: Writable scratch volume; the root filesystem is read-only.
TMP_VOLUME: Final = "tmp"


@dataclass(frozen=True)
class TaskEnvironment:
    """What every Rollgate container is told about the stack it runs in."""

    stack: str
    environment: str
    region: str
    queue_url: pulumi.Input[str]
    dlq_url: pulumi.Input[str]
    artifact_bucket: pulumi.Input[str]
    db_host: pulumi.Input[str]
    db_port: pulumi.Input[int]
    db_name: str
    db_instance_id: pulumi.Input[str]

    def environment_variables(
        self, extra: Mapping[str, pulumi.Input[str]] | None = None
    ) -> list[dict[str, Any]]:
        """Plain, non-secret settings (the task definition's ``environment``)."""
        values: dict[str, pulumi.Input[str]] = {
            **(extra or {}),
            "AWS_REGION": self.region,
            outputs.ENV_STACK: self.stack,
            outputs.ENV_ENVIRONMENT: self.environment,
            outputs.ENV_QUEUE_URL: self.queue_url,
            outputs.ENV_DLQ_URL: self.dlq_url,
            outputs.ENV_ARTIFACT_BUCKET: self.artifact_bucket,
            outputs.ENV_METRIC_NAMESPACE: outputs.METRIC_NAMESPACE,
            outputs.ENV_DB_INSTANCE_ID: self.db_instance_id,
            outputs.ENV_DB_HOST: self.db_host,
            outputs.ENV_DB_PORT: pulumi.Output.from_input(self.db_port).apply(str),
            outputs.ENV_DB_NAME: self.db_name,
            # verify-full: the server's certificate must chain to the RDS CA bundle in the
            # image and name the host; `require` would encrypt without checking either.
            outputs.ENV_DB_SSLMODE: outputs.DB_SSLMODE,
            outputs.ENV_DB_SSLROOTCERT: outputs.RDS_CA_BUNDLE_PATH,
        }
        return [{"name": key, "value": value} for key, value in sorted(values.items())]

    @staticmethod
    def secrets(
        db_secret_arn: pulumi.Input[str],
        user_variable: str = outputs.SECRET_DB_USER,
        password_variable: str = outputs.SECRET_DB_PASSWORD,
    ) -> list[dict[str, Any]]:
        """Database credentials from one role's secret, injected by ECS (``secrets``)."""
        arn = pulumi.Output.from_input(db_secret_arn)
        return [
            {"name": user_variable, "valueFrom": arn.apply(lambda a: f"{a}:username::")},
            {"name": password_variable, "valueFrom": arn.apply(lambda a: f"{a}:password::")},
        ]


def container_definition(
    *,
    name: str,
    image: str,
    env: TaskEnvironment,
    db_secret_arn: pulumi.Input[str],
    log_group_name: pulumi.Input[str],
    extra_environment: Mapping[str, pulumi.Input[str]] | None = None,
    extra_secrets: Sequence[Mapping[str, Any]] = (),
    command: Sequence[str] | None = None,
    port: int | None = None,
    health_check: Sequence[str] | None = None,
    health_check_start_period: int = 30,
    stop_timeout: int = 30,
) -> dict[str, Any]:
    """One hardened container: read-only root, secrets from Secrets Manager, awslogs.

    `db_secret_arn` is the secret of the database role this task connects as.
    """
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "essential": True,
        "environment": env.environment_variables(extra_environment),
        "secrets": [*env.secrets(db_secret_arn), *(dict(secret) for secret in extra_secrets)],
        "readonlyRootFilesystem": True,
        "mountPoints": [{"sourceVolume": TMP_VOLUME, "containerPath": "/tmp", "readOnly": False}],  # noqa: S108
        "linuxParameters": {"initProcessEnabled": True},
        "stopTimeout": min(stop_timeout, MAX_STOP_TIMEOUT_SECONDS),
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group_name,
                "awslogs-region": env.region,
                "awslogs-stream-prefix": name,
                "mode": "non-blocking",
                "max-buffer-size": "25m",
            },
        },
    }
    if command is not None:
        container["command"] = list(command)
    if port is not None:
        container["portMappings"] = [{"name": "http", "containerPort": port, "protocol": "tcp"}]
    if health_check is not None:
        container["healthCheck"] = {
            "command": list(health_check),
            "interval": 15,
            "timeout": 5,
            "retries": 3,
            "startPeriod": health_check_start_period,
        }
    return container


def web_health_check(port: int, path: str) -> list[str]:
    """HTTP GET on the app's health path from inside the container (python is in the image)."""
    url = f"http://127.0.0.1:{port}{path}"
    return [
        "CMD",
        "python",
        "-c",
        f"import urllib.request; urllib.request.urlopen({url!r}, timeout=4)",
    ]


def worker_health_check(max_age_seconds: int = 120) -> list[str]:
    """Healthy while the worker's heartbeat file is fresh (see `outputs.WORKER_HEARTBEAT_FILE`)."""
    path = outputs.WORKER_HEARTBEAT_FILE
    code = (
        "import os, sys, time; "
        f"sys.exit(0 if time.time() - os.path.getmtime({path!r}) < {max_age_seconds} else 1)"
    )
    return ["CMD", "python", "-c", code]


def metrics_statement() -> Statement:
    """PutMetricData, only into Rollgate's own namespace (the action has no resource ARN)."""
    return statement(
        ["cloudwatch:PutMetricData"],
        "*",
        sid="PutRollgateMetrics",
        condition={"StringEquals": {"cloudwatch:namespace": outputs.METRIC_NAMESPACE}},
    )


def execution_role(
    parent: pulumi.Resource,
    name: str,
    *,
    account: AwsAccount,
    ecr_repository: EcrRepository | None,
    log_group_arn: pulumi.Input[str],
    secret_arns: Sequence[pulumi.Input[str]],
    secret_kms_key_arn: pulumi.Input[str],
    tags: Mapping[str, str],
    extra_secret_arns: Sequence[pulumi.Input[str]] = (),
) -> aws.iam.Role:
    """Role ECS uses to start one task family: its image, its log group, its secrets.

    ``extra_secret_arns`` are further Secrets Manager secrets the task's
    ``secrets`` read, encrypted with the same key as the database secret.
    """
    child = pulumi.ResourceOptions(parent=parent)
    # Execution role: assumed by ECS on this account's behalf only.
    role = aws.iam.Role(
        f"{name}-execution-role",
        assume_role_policy=service_trust_policy(
            "ecs-tasks.amazonaws.com", source_account=account.account_id
        ),
        description=f"ECS starts {name}: pull image, write logs, read its secret",
        tags=dict(tags),
        opts=child,
    )
    statements: list[Statement] = [
        statement(
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            pulumi.Output.from_input(log_group_arn).apply(lambda arn: f"{arn}:log-stream:*"),
            sid="WriteOwnLogGroup",
        ),
        statement(["secretsmanager:GetSecretValue"], list(secret_arns), sid="ReadDatabaseSecret"),
        *(
            [
                statement(
                    ["secretsmanager:GetSecretValue"],
                    list(extra_secret_arns),
                    sid="ReadAppSecrets",
                )
            ]
            if extra_secret_arns
            else []
        ),
        statement(
            ["kms:Decrypt"],
            [secret_kms_key_arn],
            sid="DecryptDatabaseSecret",
            condition={
                "StringEquals": {"kms:ViaService": f"secretsmanager.{account.region}.amazonaws.com"}
            },
        ),
    ]
    if ecr_repository is not None:
        repository_arn = (
            f"arn:{account.partition}:ecr:{ecr_repository.region}:{ecr_repository.account}"
            f":repository/{ecr_repository.name}"
        )
        statements += [
            statement(["ecr:GetAuthorizationToken"], "*", sid="EcrLogin"),
            statement(
                [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                ],
                [repository_arn],
                sid="PullImage",
            ),
        ]
    # Execution-role permissions, named resource by resource.
    aws.iam.RolePolicy(
        f"{name}-execution-policy",
        role=role.id,
        policy=policy_document(statements),
        opts=child,
    )
    return role


def task_role(
    parent: pulumi.Resource,
    name: str,
    *,
    account: AwsAccount,
    statements: Sequence[Statement],
    tags: Mapping[str, str],
) -> aws.iam.Role:
    """Role the code inside one task family runs as."""
    child = pulumi.ResourceOptions(parent=parent)
    # Task role: assumed by ECS tasks of this account only.
    role = aws.iam.Role(
        f"{name}-task-role",
        assume_role_policy=service_trust_policy(
            "ecs-tasks.amazonaws.com", source_account=account.account_id
        ),
        description=f"What {name} code may call",
        tags=dict(tags),
        opts=child,
    )
    # Task-role permissions: exactly what this task's code calls.
    aws.iam.RolePolicy(
        f"{name}-task-policy",
        role=role.id,
        policy=policy_document(statements),
        opts=child,
    )
    return role


def log_group(
    parent: pulumi.Resource,
    name: str,
    *,
    log_name: str,
    retention_days: int,
    kms_key_arn: pulumi.Input[str],
    tags: Mapping[str, str],
) -> aws.cloudwatch.LogGroup:
    """A task family's log group, with a retention, encrypted with the stack's log key."""
    # Container log group with a retention, not "never expire", encrypted with the log key.
    return aws.cloudwatch.LogGroup(
        f"{name}-logs",
        name=log_name,
        retention_in_days=retention_days,
        kms_key_id=kms_key_arn,
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def fargate_task_definition(
    parent: pulumi.Resource,
    name: str,
    *,
    family: str,
    cpu: int,
    memory: int,
    cpu_architecture: str,
    execution_role_arn: pulumi.Input[str],
    task_role_arn: pulumi.Input[str],
    role: str,
    container: Mapping[str, Any],
    tags: Mapping[str, str],
) -> aws.ecs.TaskDefinition:
    """A single-container Fargate task definition, tagged with its `role` (web, migrator...).

    The policy pack reads the role tag: only the migrator may get the master secret.
    """
    # Fargate task definition; secrets reach the container only via `secrets`.
    return aws.ecs.TaskDefinition(
        f"{name}-task",
        family=family,
        cpu=str(cpu),
        memory=str(memory),
        network_mode="awsvpc",
        requires_compatibilities=["FARGATE"],
        runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
            operating_system_family="LINUX", cpu_architecture=cpu_architecture
        ),
        execution_role_arn=execution_role_arn,
        task_role_arn=task_role_arn,
        container_definitions=pulumi.Output.json_dumps([dict(container)]),
        volumes=[aws.ecs.TaskDefinitionVolumeArgs(name=TMP_VOLUME)],
        tags=with_role(tags, role),
        opts=pulumi.ResourceOptions(parent=parent),
    )
