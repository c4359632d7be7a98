"""Alarms: leading indicators that something is going wrong, before users say so.

Creates:
- a KMS key (usable by CloudWatch) and an encrypted SNS topic every alarm notifies;
  subscribe the on-call pager to it outside this program (no personal data here);
- queue alarms: any message in the DLQ; any failed audit invocation in the
  schedule's DLQ; the oldest task message older than two visibility timeouts
  (the worker's deployment-rollback alarm);
- web alarm: 5xx rate (ALB and target 5xx over requests) above 5 % (the web
  service's deployment-rollback alarm);
- database alarms: CPU above 80 %, connections above their anomaly band (normal
  load depends on traffic and instance size, so any fixed number is a guess),
  free storage running out (see `free_storage_queries`: relative to the storage
  autoscaling ceiling, not the initial size);
- alarms on the bundle's own metrics (namespace and names in `infra.outputs`):
  snapshot age above the configured maximum, or missing (the audit did not
  run); a restore slower than the recovery time objective (``rtoSeconds``, a
  fixed threshold: an objective, not a guess); restore time per GB of snapshot
  above its anomaly band (a trend: restores slowing faster than the data grows);
  any audit failure;
- trend alarms on the app's metrics, each an anomaly band: the share of webhook
  deliveries rejected, the share of task runs failed or retried, task run time
  (p90) and outbox publish failures (see `Alarms._app_trend_alarms`).

Alarm names are fixed (``<prefix>-<what>``) so ECS, runbooks and the audits can
name them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_aws as aws

from infra import outputs
from infra.encryption import customer_managed_key
from infra.iam import policy_document

HTTP_5XX_RATE_PERCENT: Final = 5
DB_CPU_PERCENT: Final = 80
#: Free storage below this share of the autoscaling ceiling is only normal while the
#: instance can still grow; see `free_storage_queries`.
FREE_STORAGE_FRACTION_OF_MAX: Final = 0.10
#: Page when, at the last hour's rate, the disk is full within this many hours: RDS
#: storage autoscaling acts at most once per 6 hours, so faster growth can outrun it.
FREE_STORAGE_RUNWAY_HOURS: Final = 12
ANOMALY_BAND_WIDTH: Final = 2
#: Period of the trend alarms on the app's metrics: long enough to hold several events at
#: low traffic, short enough to page within a quarter of an hour (3 periods).
APP_TREND_PERIOD: Final = 300
GIB: Final = 1024**3


@dataclass(frozen=True)
class AlarmsArgs:
    name_prefix: str
    stack: str
    account_id: str
    partition: str
    queue_name: pulumi.Input[str]
    dead_letter_queue_name: pulumi.Input[str]
    schedule_dead_letter_queue_name: pulumi.Input[str]
    load_balancer_arn_suffix: pulumi.Input[str]
    db_instance_id: pulumi.Input[str]
    db_max_allocated_storage_gb: int
    oldest_message_threshold_seconds: int
    audit_interval_minutes: int
    max_snapshot_age_hours: int
    rto_seconds: int
    tags: Mapping[str, str]


def free_storage_queries(
    db_instance_id: pulumi.Input[str], max_allocated_storage_gb: int
) -> list[aws.cloudwatch.MetricAlarmMetricQueryArgs]:
    """Metric math: 1 when free storage is low relative to the ceiling AND running out.

    RDS publishes no allocated-storage metric, so "free / allocated" cannot be computed.
    Below the ceiling, autoscaling adds storage when free space drops under 10 % of the
    current size, so low free space alone is normal growth. What is not normal: free
    space under 10 % of the *maximum* (at the ceiling, autoscaling can do nothing more)
    while the disk fills fast enough to be full within `FREE_STORAGE_RUNWAY_HOURS`
    (faster than autoscaling's six-hour cooldown can keep up with).
    """
    floor_bytes = int(max_allocated_storage_gb * GIB * FREE_STORAGE_FRACTION_OF_MAX)
    return [
        aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id="free",
            return_data=False,
            metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                namespace="AWS/RDS",
                metric_name="FreeStorageSpace",
                dimensions={"DBInstanceIdentifier": db_instance_id},
                stat="Minimum",
                period=900,
            ),
        ),
        aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id="hours_left",
            # RATE is bytes per second (negative while the disk fills).
            expression="IF(RATE(free) < 0, free / (-3600 * RATE(free)), 100000)",
            label="Hours until the disk is full at the current rate",
            return_data=False,
        ),
        aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id="running_out",
            expression=(
                f"IF(free < {floor_bytes} AND hours_left < {FREE_STORAGE_RUNWAY_HOURS}, 1, 0)"
            ),
            label="Free storage low against the autoscaling ceiling and falling",
            return_data=True,
        ),
    ]


def metric_query(
    query_id: str,
    namespace: str,
    metric_name: str,
    *,
    dimensions: Mapping[str, pulumi.Input[str]],
    stat: str,
    period: int,
    return_data: bool = False,
) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
    """One metric of an alarm's metric math (``return_data`` only for the watched series)."""
    return aws.cloudwatch.MetricAlarmMetricQueryArgs(
        id=query_id,
        return_data=return_data,
        metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
            namespace=namespace,
            metric_name=metric_name,
            dimensions=dict(dimensions),
            stat=stat,
            period=period,
        ),
    )


def expression_query(
    query_id: str, expression: str, label: str, *, return_data: bool = False
) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
    """One metric math expression of an alarm."""
    return aws.cloudwatch.MetricAlarmMetricQueryArgs(
        id=query_id, expression=expression, label=label, return_data=return_data
    )


def share_expression(part: Sequence[str], whole: Sequence[str]) -> str:
    """Percent of ``whole`` (metric ids, summed) that ``part`` is; 0 when ``whole`` is 0.

    The app emits a count only when the event happens, so a period without one has no
    datapoint: FILL makes it a zero. Quiet periods then read 0 % (nothing went wrong)
    instead of dividing zero by zero.
    """

    def total(ids: Sequence[str]) -> str:
        return " + ".join(f"FILL({i}, 0)" for i in ids)

    return f"IF(({total(whole)}) > 0, 100 * ({total(part)}) / ({total(whole)}), 0)"


def alarm_topic_key_policy(account_id: str, partition: str) -> pulumi.Output[str]:
    """Key policy: the account administers the key; CloudWatch may encrypt alarm messages."""
    return policy_document(
        [
            {
                "Sid": "AccountAdministers",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchAlarmsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            },
        ]
    )


class Alarms(pulumi.ComponentResource):
    topic: aws.sns.Topic
    alarms: dict[str, aws.cloudwatch.MetricAlarm]
    web_deployment_alarm_names: list[pulumi.Output[str]]
    worker_deployment_alarm_names: list[pulumi.Output[str]]

    def __init__(
        self, name: str, args: AlarmsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rollgate:infra:Alarms", name, None, opts)
        self._args = args
        self._name = name
        tags = dict(args.tags)
        key = customer_managed_key(
            name,
            alias=f"{args.name_prefix}-alarms",
            description=f"Rollgate {args.name_prefix}: alarm notifications",
            tags=tags,
            parent=self,
            protect=False,
            policy=alarm_topic_key_policy(args.account_id, args.partition),
        )
        # Encrypted topic every alarm notifies; the pager subscribes to it.
        self.topic = aws.sns.Topic(
            f"{name}-topic",
            kms_master_key_id=key.arn,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.alarms = {}
        self._queue_alarms()
        self._schedule_alarms()
        self._web_alarms()
        self._database_alarms()
        self._bundle_alarms()
        self._app_trend_alarms()

        self.web_deployment_alarm_names = [self.alarms["http-5xx-rate"].name]
        self.worker_deployment_alarm_names = [self.alarms["oldest-message-age"].name]
        self.register_outputs(
            {
                "topicArn": self.topic.arn,
                "alarmNames": {key: alarm.name for key, alarm in self.alarms.items()},
            }
        )

    # --- helpers ---------------------------------------------------------------

    def _alarm(
        self,
        key: str,
        description: str,
        *,
        comparison_operator: str,
        evaluation_periods: int,
        treat_missing_data: str,
        threshold: float | None = None,
        datapoints_to_alarm: int | None = None,
        namespace: str | None = None,
        metric_name: str | None = None,
        dimensions: Mapping[str, pulumi.Input[str]] | None = None,
        statistic: str | None = None,
        period: int | None = None,
        metric_queries: Sequence[aws.cloudwatch.MetricAlarmMetricQueryArgs] | None = None,
        threshold_metric_id: str | None = None,
    ) -> None:
        args = self._args
        # Alarm with a fixed name that notifies the topic on ALARM and on recovery.
        self.alarms[key] = aws.cloudwatch.MetricAlarm(
            f"{self._name}-{key}",
            name=f"{args.name_prefix}-{key}",
            alarm_description=description,
            alarm_actions=[self.topic.arn],
            ok_actions=[self.topic.arn],
            actions_enabled=True,
            comparison_operator=comparison_operator,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=treat_missing_data,
            threshold=threshold,
            namespace=namespace,
            metric_name=metric_name,
            dimensions=dict(dimensions) if dimensions is not None else None,
            statistic=statistic,
            period=period,
            metric_queries=list(metric_queries) if metric_queries is not None else None,
            threshold_metric_id=threshold_metric_id,
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _anomaly_alarm(
        self,
        key: str,
        description: str,
        *,
        queries: Sequence[aws.cloudwatch.MetricAlarmMetricQueryArgs],
        watched: str,
        label: str,
        evaluation_periods: int,
        treat_missing_data: str,
        datapoints_to_alarm: int | None = None,
    ) -> None:
        """Alarm when the series ``watched`` (a metric or a metric math expression, the
        one query returning data) rises above its anomaly detection band.

        CloudWatch trains the band on the series' own history (hourly, daily and weekly
        patterns), so the alarm fires on a change of trend rather than at a fixed number.
        """
        self._alarm(
            key,
            description,
            comparison_operator="GreaterThanUpperThreshold",
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            threshold_metric_id="band",
            treat_missing_data=treat_missing_data,
            metric_queries=[
                *queries,
                aws.cloudwatch.MetricAlarmMetricQueryArgs(
                    id="band",
                    expression=f"ANOMALY_DETECTION_BAND({watched}, {ANOMALY_BAND_WIDTH})",
                    label=f"{label} (expected band)",
                    return_data=True,
                ),
            ],
        )

    # --- alarm families --------------------------------------------------------

    def _queue_alarms(self) -> None:
        args = self._args
        self._alarm(
            "dlq-not-empty",
            "A task message failed every retry and is in the dead-letter queue.",
            namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": args.dead_letter_queue_name},
            statistic="Maximum",
            period=60,
            evaluation_periods=1,
            threshold=0,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
        )
        self._alarm(
            "oldest-message-age",
            "The oldest task message has waited longer than two visibility timeouts: "
            "the worker is stuck or behind. Rolls back a worker deployment.",
            namespace="AWS/SQS",
            metric_name="ApproximateAgeOfOldestMessage",
            dimensions={"QueueName": args.queue_name},
            statistic="Maximum",
            period=60,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            threshold=args.oldest_message_threshold_seconds,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
        )

    def _schedule_alarms(self) -> None:
        self._alarm(
            "audit-dead-letters",
            "Scheduler could not start the audit task (RunTask failed after retries); "
            "the failed invocation is in the schedule's dead-letter queue.",
            namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": self._args.schedule_dead_letter_queue_name},
            statistic="Maximum",
            period=300,
            evaluation_periods=1,
            threshold=0,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
        )

    def _web_alarms(self) -> None:
        args = self._args

        def elb(query_id: str, metric_name: str) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
            return aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id=query_id,
                return_data=False,
                metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace="AWS/ApplicationELB",
                    metric_name=metric_name,
                    dimensions={"LoadBalancer": args.load_balancer_arn_suffix},
                    stat="Sum",
                    period=60,
                ),
            )

        self._alarm(
            "http-5xx-rate",
            f"More than {HTTP_5XX_RATE_PERCENT}% of requests end in a 5xx (ALB or target). "
            "Rolls back a web deployment.",
            comparison_operator="GreaterThanThreshold",
            threshold=HTTP_5XX_RATE_PERCENT,
            evaluation_periods=5,
            datapoints_to_alarm=3,
            treat_missing_data="notBreaching",
            metric_queries=[
                elb("requests", "RequestCount"),
                elb("target5xx", "HTTPCode_Target_5XX_Count"),
                elb("elb5xx", "HTTPCode_ELB_5XX_Count"),
                aws.cloudwatch.MetricAlarmMetricQueryArgs(
                    id="rate",
                    expression=(
                        "IF(requests > 0, "
                        "100 * (FILL(target5xx, 0) + FILL(elb5xx, 0)) / requests, 0)"
                    ),
                    label="5xx rate (%)",
                    return_data=True,
                ),
            ],
        )

    def _database_alarms(self) -> None:
        args = self._args
        db = {"DBInstanceIdentifier": args.db_instance_id}
        self._alarm(
            "db-cpu",
            f"Database CPU above {DB_CPU_PERCENT}% for 15 minutes.",
            namespace="AWS/RDS",
            metric_name="CPUUtilization",
            dimensions=db,
            statistic="Average",
            period=300,
            evaluation_periods=3,
            threshold=DB_CPU_PERCENT,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="breaching",
        )
        self._anomaly_alarm(
            "db-connections",
            "Database connections above their expected band (a leak or a stampede).",
            queries=[
                metric_query(
                    "m1",
                    "AWS/RDS",
                    "DatabaseConnections",
                    dimensions=db,
                    stat="Average",
                    period=300,
                    return_data=True,
                )
            ],
            watched="m1",
            label="DatabaseConnections",
            evaluation_periods=3,
            treat_missing_data="breaching",
        )
        self._alarm(
            "db-free-storage",
            f"Database free storage is under {int(FREE_STORAGE_FRACTION_OF_MAX * 100)}% of the "
            f"autoscaling ceiling ({args.db_max_allocated_storage_gb} GiB) and the disk fills "
            f"within {FREE_STORAGE_RUNWAY_HOURS} h at the current rate: autoscaling is at its "
            "ceiling or cannot keep up. Raise dbMaxAllocatedStorageGb or free space.",
            comparison_operator="GreaterThanThreshold",
            threshold=0,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            treat_missing_data="breaching",
            metric_queries=free_storage_queries(
                args.db_instance_id, args.db_max_allocated_storage_gb
            ),
        )

    def _bundle_alarms(self) -> None:
        args = self._args
        dims = {outputs.METRIC_DIMENSION_STACK: args.stack}
        audit_period = args.audit_interval_minutes * 60
        self._alarm(
            "snapshot-age",
            f"The newest verified snapshot is older than {args.max_snapshot_age_hours} h, "
            "or the audit has not reported it for two runs.",
            namespace=outputs.METRIC_NAMESPACE,
            metric_name=outputs.METRIC_SNAPSHOT_AGE_SECONDS,
            dimensions=dims,
            statistic="Maximum",
            period=audit_period,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            threshold=args.max_snapshot_age_hours * 3600,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="breaching",
        )
        self._alarm(
            "restore-seconds",
            f"A restore took longer than the recovery time objective ({args.rto_seconds} s).",
            namespace=outputs.METRIC_NAMESPACE,
            metric_name=outputs.METRIC_RESTORE_SECONDS,
            dimensions=dims,
            statistic="Maximum",
            period=3600,
            evaluation_periods=1,
            threshold=args.rto_seconds,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
        )
        # Restore time per GB, not restore time: the data grows, so the restore may too;
        # what must not grow is the time per GB (a slower disk class, a bloated dump, a
        # restore path that stopped running in parallel). Both metrics come from the same
        # drill in one PutMetricData call, so they share a timestamp. Missing data is not
        # breaching: a drill that did not run is the snapshot-age alarm's (breaching) job.
        self._anomaly_alarm(
            "restore-seconds-per-gb",
            "Restore time per GB of snapshot is above its expected band: restores are "
            "getting slower faster than the data grows.",
            queries=[
                metric_query(
                    "restore",
                    outputs.METRIC_NAMESPACE,
                    outputs.METRIC_RESTORE_SECONDS,
                    dimensions=dims,
                    stat="Maximum",
                    period=audit_period,
                ),
                metric_query(
                    "size",
                    outputs.METRIC_NAMESPACE,
                    outputs.METRIC_SNAPSHOT_MEGABYTES,
                    dimensions=dims,
                    stat="Maximum",
                    period=audit_period,
                ),
                expression_query(
                    "per_gb",
                    "IF(size > 0, 1024 * restore / size, 0)",
                    "Restore seconds per GB",
                    return_data=True,
                ),
            ],
            watched="per_gb",
            label="Restore seconds per GB",
            evaluation_periods=2,
            datapoints_to_alarm=2,
            treat_missing_data="notBreaching",
        )
        self._alarm(
            "audit-failures",
            "The scheduled audit reported at least one failed check.",
            namespace=outputs.METRIC_NAMESPACE,
            metric_name=outputs.METRIC_AUDIT_FAILURES,
            dimensions=dims,
            statistic="Maximum",
            period=audit_period,
            evaluation_periods=1,
            threshold=0,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
        )

    def _app_trend_alarms(self) -> None:
        """Trend alarms on the workflow service's own metrics (app/, EMF).

        Every one is an anomaly band (a normal level depends on traffic, which no fixed
        number knows) and treats missing data as not breaching: the app emits a metric
        only when the event happens, so silence means nothing happened, and a stopped
        worker or web service is the oldest-message and 5xx alarms' job.
        """
        dims = {outputs.METRIC_DIMENSION_STACK: self._args.stack}

        def app(query_id: str, metric_name: str) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
            return metric_query(
                query_id,
                outputs.METRIC_NAMESPACE,
                metric_name,
                dimensions=dims,
                stat="Sum",
                period=APP_TREND_PERIOD,
            )

        # A share, not a count: a traffic spike raises the count of rejected deliveries
        # without anything being wrong, while a wrong signing secret or someone probing
        # the endpoint raises the share. Anomaly detection accepts a metric math
        # expression as its input (AWS: "Create a CloudWatch alarm based on anomaly
        # detection": "on single metrics and the outputs of metric math expressions").
        self._anomaly_alarm(
            "webhook-rejections",
            "The share of Stripe webhook deliveries rejected (bad signature or body) is above "
            "its expected band: a rotated or wrong signing secret, or someone probing.",
            queries=[
                app("recorded", outputs.METRIC_WEBHOOK_RECORDED),
                app("ignored", outputs.METRIC_WEBHOOK_IGNORED),
                app("rejected", outputs.METRIC_WEBHOOK_REJECTED),
                expression_query(
                    "rejected_share",
                    share_expression(["rejected"], ["recorded", "ignored", "rejected"]),
                    "Webhook deliveries rejected (%)",
                    return_data=True,
                ),
            ],
            watched="rejected_share",
            label="Webhook deliveries rejected (%)",
            evaluation_periods=3,
            datapoints_to_alarm=2,
            treat_missing_data="notBreaching",
        )
        # Retries come before failures: a rising share of runs that fail (and will be
        # retried, or have run out of attempts) leads the DLQ alarm by a few backoffs.
        self._anomaly_alarm(
            "task-failure-rate",
            "The share of task runs that failed or were retried is above its expected band: "
            "a dependency is failing or a release broke tasks, before they reach the DLQ.",
            queries=[
                app("succeeded", outputs.METRIC_TASKS_SUCCEEDED),
                app("failed", outputs.METRIC_TASKS_FAILED),
                app("retried", outputs.METRIC_TASK_RETRIES),
                expression_query(
                    "failed_share",
                    share_expression(["failed", "retried"], ["succeeded", "failed", "retried"]),
                    "Task runs failed or retried (%)",
                    return_data=True,
                ),
            ],
            watched="failed_share",
            label="Task runs failed or retried (%)",
            evaluation_periods=3,
            datapoints_to_alarm=2,
            treat_missing_data="notBreaching",
        )
        # Slower tasks lead a growing backlog (the oldest-message alarm) by minutes.
        self._anomaly_alarm(
            "task-duration",
            "Task run time (p90) is above its expected band: tasks are getting slower, "
            "the queue will back up next.",
            queries=[
                metric_query(
                    "duration",
                    outputs.METRIC_NAMESPACE,
                    outputs.METRIC_TASK_DURATION_MS,
                    dimensions=dims,
                    stat="p90",
                    period=APP_TREND_PERIOD,
                    return_data=True,
                )
            ],
            watched="duration",
            label="Task run time p90 (ms)",
            evaluation_periods=3,
            datapoints_to_alarm=3,
            treat_missing_data="notBreaching",
        )
        # A count, FILLed: emitted only on a failed relay pass, so the band learns the
        # zeros in between. The outbox keeps the rows; failures mean tasks wait.
        self._anomaly_alarm(
            "outbox-publish-failures",
            "Outbox relay passes failing to publish to the queue are above their expected "
            "band: SQS or its endpoint is failing, and new tasks are waiting in the outbox.",
            queries=[
                app("failures", outputs.METRIC_OUTBOX_PUBLISH_FAILURES),
                expression_query(
                    "failures_filled",
                    "FILL(failures, 0)",
                    "Outbox publish failures",
                    return_data=True,
                ),
            ],
            watched="failures_filled",
            label="Outbox publish failures",
            evaluation_periods=3,
            datapoints_to_alarm=2,
            treat_missing_data="notBreaching",
        )


def names(alarms: Sequence[pulumi.Output[str]]) -> pulumi.Output[list[str]]:
    """Resolve a list of alarm names into one Output (for ECS and stack outputs)."""
    return pulumi.Output.all(*alarms).apply(list)
