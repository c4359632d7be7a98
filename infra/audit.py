"""AuditJob: `rollgate audit --json` on a schedule, as a one-off ECS task.

Creates:
- a log group, an execution role and a task role for the audit task; the task
  role may only read what the audit checks (this instance, its parameter group
  and snapshots, the artifact bucket's settings and objects, this cluster's
  services, tasks (to find a web task to probe) and the task definitions, the
  queues' attributes, Rollgate's metrics), append to the audit log
  (``logs/audit/*`` in the artifact bucket, SSE-KMS with the artifact key) and
  put metrics into Rollgate's namespace;
- the Fargate task definition running ``rollgate audit --json``, told the stack's
  resource identifiers (``ROLLGATE_STACK_OUTPUTS``: the outputs in
  ``outputs.AUDIT_TASK_OUTPUTS``, ARNs, names and the web container port, never
  a secret value) so that its queue-health and security-posture checks run on
  the schedule too, and its API probe finds a web task to probe inside the VPC
  (the web security group accepts the audit's group on that port: infra/network.py);
- an EventBridge Scheduler schedule group and schedule (UTC, no flexible
  window, retries) that runs the task in the private app subnets without a
  public IP;
- the role Scheduler assumes: ``ecs:RunTask`` of this task family on this
  cluster only, ``iam:PassRole`` of the task's two roles to ECS only, and
  ``sqs:SendMessage`` to the schedule's dead-letter queue, where an invocation
  lands when RunTask still fails after the retries (alarmed in `Alarms`).

The audit connects to the database as the read-only audit role.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_aws as aws

from infra import outputs
from infra.account import AwsAccount
from infra.config import AuditConfig, CpuArchitecture, EcrRepository
from infra.iam import (
    cluster_services_arn_pattern,
    cluster_tasks_arn_pattern,
    policy_document,
    service_trust_policy,
    statement,
)
from infra.tagging import ROLE_AUDIT
from infra.tasks import (
    TaskEnvironment,
    container_definition,
    execution_role,
    fargate_task_definition,
    log_group,
    metrics_statement,
    task_role,
)

#: The audit's log in the artifact store (release.audit.AUDIT_LOG; infra may not import it).
AUDIT_LOG_NAME: Final = "audit"
AUDIT_CPU: Final = 256
AUDIT_MEMORY: Final = 512
#: Scheduler gives up on an invocation after this long (RunTask throttled, say).
MAX_EVENT_AGE_SECONDS: Final = 3600
MAX_RETRY_ATTEMPTS: Final = 3


@dataclass(frozen=True)
class AuditJobArgs:
    config: AuditConfig
    account: AwsAccount
    image: str
    cpu_architecture: CpuArchitecture
    ecr_repository: EcrRepository | None
    name_prefix: str
    log_group_prefix: str
    log_retention_days: int
    log_kms_key_arn: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    environment: TaskEnvironment
    db_instance_arn: pulumi.Input[str]
    db_parameter_group_arn: pulumi.Input[str]
    #: The read-only audit role's secret.
    db_secret_arn: pulumi.Input[str]
    db_kms_key_arn: pulumi.Input[str]
    queue_arns: Sequence[pulumi.Input[str]]
    dead_letter_queue_arn: pulumi.Input[str]
    artifact_bucket_arn: pulumi.Input[str]
    artifact_kms_key_arn: pulumi.Input[str]
    #: Stack outputs (by `infra.outputs` name) the audit reads: every name of
    #: ``outputs.AUDIT_TASK_OUTPUTS`` but the audit's own family, which AuditJob adds.
    stack_outputs: Mapping[str, pulumi.Input[str] | int]
    tags: Mapping[str, str]


def audit_stack_outputs(
    family: str, stack_outputs: Mapping[str, pulumi.Input[str] | int]
) -> pulumi.Output[str]:
    """The ``ROLLGATE_STACK_OUTPUTS`` JSON: identifiers only, resolved at deploy time.

    The audit task definition cannot name its own ARN (that ARN names the revision being
    created), so it carries its family; `rollgate audit` describes the family's newest
    revision, which is the one the schedule runs after this deployment.
    """
    values = {**stack_outputs, outputs.AUDIT_TASK_FAMILY: family}
    if set(values) != outputs.AUDIT_TASK_OUTPUTS:
        raise ValueError(
            "the audit task's stack outputs must be exactly outputs.AUDIT_TASK_OUTPUTS: "
            f"missing {sorted(outputs.AUDIT_TASK_OUTPUTS - set(values))}, "
            f"unexpected {sorted(set(values) - outputs.AUDIT_TASK_OUTPUTS)}"
        )
    return pulumi.Output.json_dumps(dict(sorted(values.items())))


def task_family_arn_pattern(task_definition_arn: str) -> str:
    """``...:task-definition/family:7`` -> ``...:task-definition/family:*`` (any revision)."""
    return task_definition_arn.rsplit(":", 1)[0] + ":*"


class AuditJob(pulumi.ComponentResource):
    family: str
    task_definition: aws.ecs.TaskDefinition
    schedule: aws.scheduler.Schedule

    def __init__(
        self, name: str, args: AuditJobArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rollgate:infra:AuditJob", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        account = args.account

        logs = log_group(
            self,
            name,
            log_name=f"{args.log_group_prefix}/audit",
            retention_days=args.log_retention_days,
            kms_key_arn=args.log_kms_key_arn,
            tags=tags,
        )
        exec_role = execution_role(
            self,
            name,
            account=account,
            ecr_repository=args.ecr_repository,
            log_group_arn=logs.arn,
            secret_arns=[args.db_secret_arn],
            secret_kms_key_arn=args.db_kms_key_arn,
            tags=tags,
        )
        bucket_arn = pulumi.Output.from_input(args.artifact_bucket_arn)
        bucket_objects = bucket_arn.apply(lambda arn: f"{arn}/*")
        # The audit appends its report to the hash-chained log (rollback.ledger).
        audit_log_objects = bucket_arn.apply(lambda arn: f"{arn}/logs/{AUDIT_LOG_NAME}/*")
        audit_role = task_role(
            self,
            name,
            account=account,
            statements=[
                statement(
                    ["rds:DescribeDBInstances", "rds:DescribeDBSnapshots"],
                    [args.db_instance_arn, account.arn("rds", "snapshot:*")],
                    sid="InspectDatabaseAndSnapshots",
                ),
                statement(
                    ["rds:DescribeDBParameters"],
                    [args.db_parameter_group_arn],
                    sid="InspectParameterGroup",
                ),
                statement(
                    [
                        "s3:ListBucket",
                        "s3:GetBucketVersioning",
                        "s3:GetBucketObjectLockConfiguration",
                        "s3:GetBucketPublicAccessBlock",
                        "s3:GetBucketAcl",
                        "s3:GetBucketPolicy",
                    ],
                    [args.artifact_bucket_arn],
                    sid="InspectArtifactBucket",
                ),
                statement(
                    ["s3:GetObject", "s3:GetObjectVersion"], [bucket_objects], sid="ReadArtifacts"
                ),
                statement(["s3:PutObject"], [audit_log_objects], sid="AppendAuditLog"),
                statement(
                    ["kms:Decrypt", "kms:GenerateDataKey"],
                    [args.artifact_kms_key_arn],
                    sid="ArtifactEncryption",
                ),
                statement(["sqs:GetQueueAttributes"], list(args.queue_arns), sid="InspectQueues"),
                statement(
                    ["ecs:DescribeServices"],
                    [
                        pulumi.Output.from_input(args.cluster_arn).apply(
                            cluster_services_arn_pattern
                        )
                    ],
                    sid="InspectServices",
                ),
                # The API probe finds a running web task's private address: ListTasks has
                # no task resource type, so "*" limited to this cluster by ecs:cluster;
                # DescribeTasks on this cluster's tasks only.
                statement(
                    ["ecs:ListTasks"],
                    "*",
                    sid="ListClusterTasks",
                    condition={"ArnEquals": {"ecs:cluster": args.cluster_arn}},
                ),
                statement(
                    ["ecs:DescribeTasks"],
                    [pulumi.Output.from_input(args.cluster_arn).apply(cluster_tasks_arn_pattern)],
                    sid="DescribeClusterTasks",
                ),
                # Neither action has a resource type: AWS authorises them against "*" only.
                statement(
                    ["ecs:DescribeTaskDefinition", "cloudwatch:GetMetricStatistics"],
                    "*",
                    sid="InspectTaskDefinitionsAndMetrics",
                ),
                metrics_statement(),
            ],
            tags=tags,
        )
        family = self.family = f"{args.name_prefix}-audit"
        self.task_definition = fargate_task_definition(
            self,
            name,
            family=family,
            cpu=AUDIT_CPU,
            memory=AUDIT_MEMORY,
            cpu_architecture=args.cpu_architecture,
            execution_role_arn=exec_role.arn,
            task_role_arn=audit_role.arn,
            role=ROLE_AUDIT,
            container=container_definition(
                name="audit",
                image=args.image,
                env=args.environment,
                db_secret_arn=args.db_secret_arn,
                log_group_name=logs.name,
                command=args.config.command,
                extra_environment={
                    outputs.ENV_STACK_OUTPUTS: audit_stack_outputs(family, args.stack_outputs)
                },
            ),
            tags=tags,
        )

        # Role EventBridge Scheduler assumes, for this account only.
        scheduler_role = aws.iam.Role(
            f"{name}-scheduler-role",
            assume_role_policy=service_trust_policy(
                "scheduler.amazonaws.com", source_account=account.account_id
            ),
            description="EventBridge Scheduler runs the Rollgate audit task",
            tags=tags,
            opts=child,
        )
        # RunTask of the audit family on this cluster, and PassRole of its two roles to ECS.
        aws.iam.RolePolicy(
            f"{name}-scheduler-policy",
            role=scheduler_role.id,
            policy=policy_document(
                [
                    statement(
                        ["ecs:RunTask"],
                        [self.task_definition.arn.apply(task_family_arn_pattern)],
                        sid="RunAuditTask",
                        condition={"ArnEquals": {"ecs:cluster": args.cluster_arn}},
                    ),
                    statement(
                        ["iam:PassRole"],
                        [exec_role.arn, audit_role.arn],
                        sid="PassAuditRoles",
                        condition={
                            "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
                        },
                    ),
                    statement(
                        ["sqs:SendMessage"],
                        [args.dead_letter_queue_arn],
                        sid="DeadLetterFailedInvocations",
                    ),
                ]
            ),
            opts=child,
        )
        # Schedule group, so Rollgate's schedules are listed and permissioned together.
        group = aws.scheduler.ScheduleGroup(f"{name}-schedules", tags=tags, opts=child)
        # The schedule: run one audit task every interval, in the private subnets.
        self.schedule = aws.scheduler.Schedule(
            f"{name}-schedule",
            group_name=group.name,
            description="Runs `rollgate audit --json`; results go to logs and the Rollgate metrics",
            schedule_expression=args.config.schedule_expression,
            schedule_expression_timezone="UTC",
            state="ENABLED",
            flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
            target=aws.scheduler.ScheduleTargetArgs(
                arn=args.cluster_arn,
                role_arn=scheduler_role.arn,
                dead_letter_config=aws.scheduler.ScheduleTargetDeadLetterConfigArgs(
                    arn=args.dead_letter_queue_arn
                ),
                retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(
                    maximum_event_age_in_seconds=MAX_EVENT_AGE_SECONDS,
                    maximum_retry_attempts=MAX_RETRY_ATTEMPTS,
                ),
                ecs_parameters=aws.scheduler.ScheduleTargetEcsParametersArgs(
                    task_definition_arn=self.task_definition.arn,
                    launch_type="FARGATE",
                    platform_version="LATEST",
                    task_count=1,
                    network_configuration=aws.scheduler.ScheduleTargetEcsParametersNetworkConfigurationArgs(
                        subnets=list(args.subnet_ids),
                        security_groups=[args.security_group_id],
                        assign_public_ip=False,
                    ),
                ),
            ),
            opts=child,
        )

        self.register_outputs(
            {
                "taskDefinitionArn": self.task_definition.arn,
                "taskFamily": self.task_definition.family,
                "scheduleName": self.schedule.name,
            }
        )
