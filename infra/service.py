"""AppService: the ECS Fargate cluster, the web service and the queue worker.

Creates:
- an ECS cluster with Container Insights (the worker's autoscaling reads its
  RunningTaskCount);
- per service (web, worker): a log group, an execution role, a task role, a
  Fargate task definition (image from config, credentials via `secrets`,
  container health check, read-only root filesystem) and the service in the
  private app subnets without public IPs, with the deployment circuit breaker
  (rollback on) and CloudWatch-alarm rollback;
- web: registered with the ALB target group (created after its listener);
- web: autoscaling on ALB requests per target (ALBRequestCountPerTarget),
  between webDesiredCount and webMaxCount;
- worker: an autoscaling target and a target-tracking policy on queue backlog
  per running task (visible messages / RunningTaskCount). The worker may set
  its own task scale-in protection (ecs:UpdateTaskProtection on this cluster's
  tasks): while it holds it, scale-in and deployments leave the task running,
  so a message longer than the 120 s stop timeout is not killed;
- migrate: a one-off task definition for ``rollgate db migrate``, the only task
  that gets the database master secret (CI runs it with ``aws ecs run-task``).

Web and worker connect to the database as the app role, with its own secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_aws as aws

from infra import outputs
from infra.account import AwsAccount
from infra.config import WEB_COMMAND, WORKER_COMMAND, QueueConfig, ServiceConfig
from infra.iam import statement
from infra.tagging import ROLE_MIGRATOR, ROLE_WEB, ROLE_WORKER
from infra.tasks import (
    TaskEnvironment,
    container_definition,
    execution_role,
    fargate_task_definition,
    log_group,
    metrics_statement,
    task_role,
    web_health_check,
    worker_health_check,
)

_Scaling = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs
_CustomMetric = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationArgs  # noqa: E501
_MetricQuery = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricArgs  # noqa: E501
_MetricStat = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricMetricStatArgs  # noqa: E501
_Metric = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricMetricStatMetricArgs  # noqa: E501
_Dimension = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationCustomizedMetricSpecificationMetricMetricStatMetricDimensionArgs  # noqa: E501
_PredefinedMetric = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs  # noqa: E501

#: Container command of the one-off migration task: first the role bootstrap (create or
#: re-password the app and audit roles from their secrets, as the master), then the
#: migrations. A failed bootstrap stops the task before any migration runs.
MIGRATE_COMMAND: Final = (
    "sh",
    "-c",
    "rollgate db bootstrap-roles && exec rollgate db migrate",
)
MIGRATE_CPU: Final = 256
MIGRATE_MEMORY: Final = 512

#: Seconds the ALB health check may fail while a new web task boots.
HEALTH_CHECK_GRACE_SECONDS: Final = 60
SCALE_OUT_COOLDOWN_SECONDS: Final = 60
SCALE_IN_COOLDOWN_SECONDS: Final = 300


@dataclass(frozen=True)
class AppServiceArgs:
    config: ServiceConfig
    account: AwsAccount
    name_prefix: str
    log_group_prefix: str
    log_retention_days: int
    log_kms_key_arn: pulumi.Input[str]
    queue: QueueConfig
    subnet_ids: Sequence[pulumi.Input[str]]
    web_security_group_id: pulumi.Input[str]
    worker_security_group_id: pulumi.Input[str]
    target_group_arn: pulumi.Input[str]
    #: ``app/<alb>/<id>/targetgroup/<tg>/<id>``: the ALBRequestCountPerTarget resource label.
    request_count_resource_label: pulumi.Input[str]
    #: The listener forwarding to the target group; ECS rejects a service whose
    #: target group is not attached to a load balancer yet.
    listener: pulumi.Resource
    environment: TaskEnvironment
    #: The master secret (migrate task only) and the app role's secret (web, worker).
    db_secret_arn: pulumi.Input[str]
    db_app_secret_arn: pulumi.Input[str]
    #: The audit role's secret: the migrate task creates that role too.
    db_audit_secret_arn: pulumi.Input[str]
    db_kms_key_arn: pulumi.Input[str]
    queue_arn: pulumi.Input[str]
    queue_name: pulumi.Input[str]
    #: Prod protects the Stripe signing secret like other state.
    prod: bool
    web_alarm_names: Sequence[pulumi.Input[str]]
    worker_alarm_names: Sequence[pulumi.Input[str]]
    tags: Mapping[str, str]


def deployment_safety(
    alarm_names: Sequence[pulumi.Input[str]],
) -> tuple[aws.ecs.ServiceDeploymentCircuitBreakerArgs, aws.ecs.ServiceAlarmsArgs]:
    """Circuit breaker and alarm watch, both rolling back a failed deployment."""
    return (
        aws.ecs.ServiceDeploymentCircuitBreakerArgs(enable=True, rollback=True),
        aws.ecs.ServiceAlarmsArgs(alarm_names=list(alarm_names), enable=True, rollback=True),
    )


class AppService(pulumi.ComponentResource):
    cluster: aws.ecs.Cluster
    web_service: aws.ecs.Service
    worker_service: aws.ecs.Service
    web_task_definition: aws.ecs.TaskDefinition
    worker_task_definition: aws.ecs.TaskDefinition
    migrate_task_definition: aws.ecs.TaskDefinition
    stripe_webhook_secret: aws.secretsmanager.Secret

    def __init__(
        self, name: str, args: AppServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rollgate:infra:AppService", name, None, opts)
        tags = dict(args.tags)
        config = args.config

        # Cluster with Container Insights, whose RunningTaskCount drives worker scaling.
        self.cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

        # --- web ------------------------------------------------------------------
        # The Stripe webhook signing secret: Pulumi creates the secret, never its value
        # (put it with `aws secretsmanager put-secret-value`). Same key as the database
        # secret, so the execution role's kms:Decrypt (via Secrets Manager) covers it.
        self.stripe_webhook_secret = aws.secretsmanager.Secret(
            f"{name}-stripe-webhook-secret",
            name=f"{args.name_prefix}/stripe-webhook-secret",
            description="Stripe webhook signing secret (whsec_...) for POST /webhooks/stripe",
            kms_key_id=args.db_kms_key_arn,
            recovery_window_in_days=7,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=args.prod),
        )
        web_logs = log_group(
            self,
            f"{name}-web",
            log_name=f"{args.log_group_prefix}/web",
            retention_days=args.log_retention_days,
            kms_key_arn=args.log_kms_key_arn,
            tags=tags,
        )
        web_role = task_role(
            self,
            f"{name}-web",
            account=args.account,
            statements=[
                statement(
                    ["sqs:SendMessage", "sqs:GetQueueAttributes"],
                    [args.queue_arn],
                    sid="EnqueueTasks",
                ),
            ],
            tags=tags,
        )
        self.web_task_definition = fargate_task_definition(
            self,
            f"{name}-web",
            family=f"{args.name_prefix}-web",
            cpu=config.web.cpu,
            memory=config.web.memory,
            cpu_architecture=config.cpu_architecture,
            execution_role_arn=self._execution_role(
                f"{name}-web",
                args,
                web_logs,
                args.db_app_secret_arn,
                extra_secret_arns=[self.stripe_webhook_secret.arn],
            ).arn,
            task_role_arn=web_role.arn,
            role=ROLE_WEB,
            container=container_definition(
                name="web",
                image=config.image,
                env=args.environment,
                db_secret_arn=args.db_app_secret_arn,
                log_group_name=web_logs.name,
                command=WEB_COMMAND,
                port=config.container_port,
                extra_environment={outputs.ENV_PORT: str(config.container_port)},
                extra_secrets=[
                    {
                        "name": outputs.SECRET_STRIPE_WEBHOOK,
                        "valueFrom": self.stripe_webhook_secret.arn,
                    }
                ],
                health_check=web_health_check(config.container_port, config.health_check_path),
            ),
            tags=tags,
        )
        web_breaker, web_alarms = deployment_safety(args.web_alarm_names)
        # Web service behind the ALB; rolls back on failed health or the 5xx alarm.
        # Autoscaling owns its desired count after creation.
        self.web_service = aws.ecs.Service(
            f"{name}-web",
            cluster=self.cluster.arn,
            task_definition=self.web_task_definition.arn,
            desired_count=config.web_desired_count,
            launch_type="FARGATE",
            platform_version="LATEST",
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=list(args.subnet_ids),
                security_groups=[args.web_security_group_id],
                assign_public_ip=False,
            ),
            load_balancers=[
                aws.ecs.ServiceLoadBalancerArgs(
                    target_group_arn=args.target_group_arn,
                    container_name="web",
                    container_port=config.container_port,
                )
            ],
            health_check_grace_period_seconds=HEALTH_CHECK_GRACE_SECONDS,
            deployment_circuit_breaker=web_breaker,
            alarms=web_alarms,
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            enable_execute_command=False,
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            wait_for_steady_state=True,
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[args.listener], ignore_changes=["desiredCount"]
            ),
        )
        self._web_autoscaling(name, args)

        # --- worker ---------------------------------------------------------------
        worker_logs = log_group(
            self,
            f"{name}-worker",
            log_name=f"{args.log_group_prefix}/worker",
            retention_days=args.log_retention_days,
            kms_key_arn=args.log_kms_key_arn,
            tags=tags,
        )
        own_tasks = self.cluster.name.apply(
            lambda cluster: args.account.arn("ecs", f"task/{cluster}/*")
        )
        worker_role = task_role(
            self,
            f"{name}-worker",
            account=args.account,
            statements=[
                statement(
                    [
                        "sqs:ReceiveMessage",
                        "sqs:DeleteMessage",
                        "sqs:ChangeMessageVisibility",
                        "sqs:GetQueueAttributes",
                    ],
                    [args.queue_arn],
                    sid="ConsumeTasks",
                ),
                # Scale-in protection while a message is in flight: scale-in and
                # deployments wait for the task instead of stopping it mid-message.
                statement(
                    ["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"],
                    [own_tasks],
                    sid="ProtectOwnTaskWhileWorking",
                ),
                metrics_statement(),
            ],
            tags=tags,
        )
        self.worker_task_definition = fargate_task_definition(
            self,
            f"{name}-worker",
            family=f"{args.name_prefix}-worker",
            cpu=config.worker.cpu,
            memory=config.worker.memory,
            cpu_architecture=config.cpu_architecture,
            execution_role_arn=self._execution_role(
                f"{name}-worker", args, worker_logs, args.db_app_secret_arn
            ).arn,
            task_role_arn=worker_role.arn,
            role=ROLE_WORKER,
            container=container_definition(
                name="worker",
                image=config.image,
                env=args.environment,
                db_secret_arn=args.db_app_secret_arn,
                log_group_name=worker_logs.name,
                extra_environment={
                    **worker_environment(args.queue),
                    outputs.ENV_WORKER_TIMEOUT_SECONDS: str(args.queue.worker_timeout_seconds),
                    outputs.ENV_WORKER_TASK_PROTECTION: str(
                        args.queue.worker_task_protection
                    ).lower(),
                    outputs.ENV_WORKER_PROTECTION_MINUTES: str(
                        args.queue.worker_protection_minutes
                    ),
                },
                command=WORKER_COMMAND,
                health_check=worker_health_check(),
                health_check_start_period=60,
                stop_timeout=args.queue.worker_stop_timeout_seconds,
            ),
            tags=tags,
        )
        worker_breaker, worker_alarms = deployment_safety(args.worker_alarm_names)
        # Worker service; autoscaling owns its desired count after creation.
        self.worker_service = aws.ecs.Service(
            f"{name}-worker",
            cluster=self.cluster.arn,
            task_definition=self.worker_task_definition.arn,
            desired_count=config.worker_min_count,
            launch_type="FARGATE",
            platform_version="LATEST",
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=list(args.subnet_ids),
                security_groups=[args.worker_security_group_id],
                assign_public_ip=False,
            ),
            deployment_circuit_breaker=worker_breaker,
            alarms=worker_alarms,
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            enable_execute_command=False,
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            wait_for_steady_state=True,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desiredCount"]),
        )
        self._worker_autoscaling(name, args)
        self.migrate_task_definition = self._migrate_task(name, args)

        self.register_outputs(
            {
                "clusterName": self.cluster.name,
                "webServiceName": self.web_service.name,
                "workerServiceName": self.worker_service.name,
                "webTaskDefinitionArn": self.web_task_definition.arn,
                "workerTaskDefinitionArn": self.worker_task_definition.arn,
                "migrateTaskDefinitionArn": self.migrate_task_definition.arn,
            }
        )

    def _execution_role(
        self,
        name: str,
        args: AppServiceArgs,
        logs: aws.cloudwatch.LogGroup,
        *secret_arns: pulumi.Input[str],
        extra_secret_arns: Sequence[pulumi.Input[str]] = (),
    ) -> aws.iam.Role:
        return execution_role(
            self,
            name,
            account=args.account,
            ecr_repository=args.config.ecr_repository,
            log_group_arn=logs.arn,
            secret_arns=list(secret_arns),
            secret_kms_key_arn=args.db_kms_key_arn,
            tags=args.tags,
            extra_secret_arns=extra_secret_arns,
        )

    def _migrate_task(self, name: str, args: AppServiceArgs) -> aws.ecs.TaskDefinition:
        """`rollgate db migrate`: the only task with the master secret (role tag migrator)."""
        logs = log_group(
            self,
            f"{name}-migrate",
            log_name=f"{args.log_group_prefix}/migrate",
            retention_days=args.log_retention_days,
            kms_key_arn=args.log_kms_key_arn,
            tags=args.tags,
        )
        role = task_role(
            self,
            f"{name}-migrate",
            account=args.account,
            statements=[metrics_statement()],
            tags=args.tags,
        )
        return fargate_task_definition(
            self,
            f"{name}-migrate",
            family=f"{args.name_prefix}-migrate",
            cpu=MIGRATE_CPU,
            memory=MIGRATE_MEMORY,
            cpu_architecture=args.config.cpu_architecture,
            execution_role_arn=self._execution_role(
                f"{name}-migrate",
                args,
                logs,
                args.db_secret_arn,
                args.db_app_secret_arn,
                args.db_audit_secret_arn,
            ).arn,
            task_role_arn=role.arn,
            role=ROLE_MIGRATOR,
            container=container_definition(
                name="migrate",
                # The rollgate CLI lives in the tools image, not in the app's.
                image=args.config.task_tools_image,
                env=args.environment,
                db_secret_arn=args.db_secret_arn,
                # The role bootstrap sets these roles' passwords from their secrets.
                extra_secrets=[
                    *TaskEnvironment.secrets(
                        args.db_app_secret_arn,
                        outputs.SECRET_DB_APP_USER,
                        outputs.SECRET_DB_APP_PASSWORD,
                    ),
                    *TaskEnvironment.secrets(
                        args.db_audit_secret_arn,
                        outputs.SECRET_DB_AUDIT_USER,
                        outputs.SECRET_DB_AUDIT_PASSWORD,
                    ),
                ],
                log_group_name=logs.name,
                command=MIGRATE_COMMAND,
            ),
            tags=args.tags,
        )

    def _web_autoscaling(self, name: str, args: AppServiceArgs) -> None:
        config = args.config
        # Scalable target: the web service's desired count, between the configured bounds.
        target = aws.appautoscaling.Target(
            f"{name}-web-scaling-target",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat(
                "service/", self.cluster.name, "/", self.web_service.name
            ),
            min_capacity=config.web_desired_count,
            max_capacity=config.web_max_count,
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Target tracking on ALB requests per web task per minute.
        aws.appautoscaling.Policy(
            f"{name}-web-requests-scaling",
            policy_type="TargetTrackingScaling",
            service_namespace=target.service_namespace,
            scalable_dimension=target.scalable_dimension,
            resource_id=target.resource_id,
            target_tracking_scaling_policy_configuration=_Scaling(
                target_value=config.web_requests_per_target,
                scale_out_cooldown=SCALE_OUT_COOLDOWN_SECONDS,
                scale_in_cooldown=SCALE_IN_COOLDOWN_SECONDS,
                predefined_metric_specification=_PredefinedMetric(
                    predefined_metric_type="ALBRequestCountPerTarget",
                    resource_label=args.request_count_resource_label,
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _worker_autoscaling(self, name: str, args: AppServiceArgs) -> None:
        config = args.config
        # Scalable target: the worker's desired count, between the configured bounds.
        target = aws.appautoscaling.Target(
            f"{name}-worker-scaling-target",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat(
                "service/", self.cluster.name, "/", self.worker_service.name
            ),
            min_capacity=config.worker_min_count,
            max_capacity=config.worker_max_count,
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Target tracking on backlog per task: visible messages / running worker tasks.
        aws.appautoscaling.Policy(
            f"{name}-worker-backlog-scaling",
            policy_type="TargetTrackingScaling",
            service_namespace=target.service_namespace,
            scalable_dimension=target.scalable_dimension,
            resource_id=target.resource_id,
            target_tracking_scaling_policy_configuration=_Scaling(
                target_value=config.worker_backlog_per_task,
                scale_out_cooldown=SCALE_OUT_COOLDOWN_SECONDS,
                scale_in_cooldown=SCALE_IN_COOLDOWN_SECONDS,
                customized_metric_specification=_CustomMetric(
                    metrics=[
                        _backlog_metric(
                            "visible",
                            "AWS/SQS",
                            "ApproximateNumberOfMessagesVisible",
                            {"QueueName": args.queue_name},
                            "Sum",
                        ),
                        _backlog_metric(
                            "running",
                            "ECS/ContainerInsights",
                            "RunningTaskCount",
                            {
                                "ClusterName": self.cluster.name,
                                "ServiceName": self.worker_service.name,
                            },
                            "Average",
                        ),
                        _MetricQuery(
                            id="backlog_per_task",
                            expression="visible / running",
                            label="Visible messages per running worker task",
                            return_data=True,
                        ),
                    ]
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )


#: Seconds of the stop timeout kept for releasing the task in hand after the grace period.
RELEASE_MARGIN_SECONDS: Final = 10


def worker_environment(queue: QueueConfig) -> dict[str, str]:
    """The worker's tuning, derived from the queue so the two cannot disagree.

    Its attempts are the redrive's maxReceiveCount; its grace on SIGTERM ends
    early enough within the stop timeout to release the task in hand.
    """
    stop_timeout = queue.worker_stop_timeout_seconds
    return {
        outputs.ENV_WORKER_MAX_ATTEMPTS: str(queue.max_receive_count),
        outputs.ENV_WORKER_VISIBILITY_TIMEOUT: str(queue.visibility_timeout_seconds),
        outputs.ENV_WORKER_STOP_GRACE: str(max(stop_timeout - RELEASE_MARGIN_SECONDS, 1)),
    }


def _backlog_metric(
    query_id: str,
    namespace: str,
    metric_name: str,
    dimensions: Mapping[str, pulumi.Input[str]],
    stat: str,
) -> _MetricQuery:
    return _MetricQuery(
        id=query_id,
        return_data=False,
        metric_stat=_MetricStat(
            stat=stat,
            metric=_Metric(
                namespace=namespace,
                metric_name=metric_name,
                dimensions=[_Dimension(name=key, value=value) for key, value in dimensions.items()],
            ),
        ),
    )
