"""Alarms: every leading indicator is watched, anomaly bands where thresholds would be guesses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from infra import outputs
from release.audit.aws import METRICS as AUDIT_METRICS
from tests.infra.harness import CapturedResource, ProgramRun, run_program, stack_config

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


def alarm(run: ProgramRun, key: str) -> dict[str, Any]:
    found: CapturedResource = run.one(ALARM, f"-{key}")
    assert found.inputs["name"] == f"rollgate-{run.stack}-{key}"
    return found.inputs


def metric_of(inputs: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    if "metricName" in inputs:
        return inputs["namespace"], inputs["metricName"], inputs["dimensions"]
    [query] = [q for q in inputs["metricQueries"] if "metric" in q]
    metric = query["metric"]
    return metric["namespace"], metric["metricName"], metric["dimensions"]


def test_dlq_depth_above_zero(run: ProgramRun) -> None:
    inputs = alarm(run, "dlq-not-empty")
    dlq_name = run.exports[outputs.DLQ_URL].rsplit("/", 1)[1]
    assert metric_of(inputs) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"QueueName": dlq_name},
    )
    assert inputs["comparisonOperator"] == "GreaterThanThreshold"
    assert inputs["threshold"] == 0


def test_oldest_message_age(run: ProgramRun) -> None:
    inputs = alarm(run, "oldest-message-age")
    queue_name = run.exports[outputs.QUEUE_URL].rsplit("/", 1)[1]
    assert metric_of(inputs) == (
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        {"QueueName": queue_name},
    )


def test_5xx_rate(run: ProgramRun) -> None:
    inputs = alarm(run, "http-5xx-rate")
    queries = {q["id"]: q for q in inputs["metricQueries"]}
    assert {queries[i]["metric"]["metricName"] for i in ("requests", "target5xx", "elb5xx")} == {
        "RequestCount",
        "HTTPCode_Target_5XX_Count",
        "HTTPCode_ELB_5XX_Count",
    }
    assert queries["rate"]["returnData"] is True
    assert "/ requests" in queries["rate"]["expression"]
    assert inputs["threshold"] == 5


def test_database_cpu_connections_and_storage(run: ProgramRun) -> None:
    db = {"DBInstanceIdentifier": f"rollgate-{run.stack}"}
    assert metric_of(alarm(run, "db-cpu")) == ("AWS/RDS", "CPUUtilization", db)
    assert metric_of(alarm(run, "db-connections")) == ("AWS/RDS", "DatabaseConnections", db)
    storage = alarm(run, "db-free-storage")
    queries = {q["id"]: q for q in storage["metricQueries"]}
    metric = queries["free"]["metric"]
    assert (metric["namespace"], metric["metricName"], metric["dimensions"]) == (
        "AWS/RDS",
        "FreeStorageSpace",
        db,
    )
    # Issue 9 #7: relative to the autoscaling ceiling, not 10 % of the initial size.
    ceiling_gib = {"dev": 100, "prod": 500}[run.stack]
    floor = int(ceiling_gib * 1024**3 * 0.10)
    assert f"free < {floor} AND hours_left < 12" in queries["running_out"]["expression"]
    assert "RATE(free)" in queries["hours_left"]["expression"]
    assert queries["running_out"]["returnData"] is True
    assert storage["comparisonOperator"] == "GreaterThanThreshold"
    assert storage["threshold"] == 0


def test_free_storage_follows_the_ceiling_not_the_initial_size() -> None:
    base = {**stack_config("dev"), "dbAllocatedStorageGb": "20", "dbMaxAllocatedStorageGb": "300"}
    grown = {**base, "dbAllocatedStorageGb": "200"}
    expressions = []
    for config in (base, grown):
        inputs = run_program(config, "dev").one(ALARM, "-db-free-storage").inputs
        expressions.append({q["id"]: q for q in inputs["metricQueries"]}["running_out"])
    assert expressions[0] == expressions[1]  # the initial size plays no part
    assert f"free < {int(300 * 1024**3 * 0.10)}" in expressions[0]["expression"]


def test_bundle_metrics_share_the_names_other_packages_emit(run: ProgramRun) -> None:
    dims = {outputs.METRIC_DIMENSION_STACK: run.stack}
    ns = outputs.METRIC_NAMESPACE
    assert metric_of(alarm(run, "snapshot-age")) == (ns, outputs.METRIC_SNAPSHOT_AGE_SECONDS, dims)
    assert metric_of(alarm(run, "restore-seconds")) == (ns, outputs.METRIC_RESTORE_SECONDS, dims)
    assert metric_of(alarm(run, "audit-failures")) == (ns, outputs.METRIC_AUDIT_FAILURES, dims)
    snapshot = alarm(run, "snapshot-age")
    assert snapshot["threshold"] == 26 * 3600
    assert snapshot["treatMissingData"] == "breaching"  # no report = the audit is not running


def test_anomaly_detection_where_a_threshold_would_be_a_guess(run: ProgramRun) -> None:
    inputs = alarm(run, "db-connections")
    assert inputs["comparisonOperator"] == "GreaterThanUpperThreshold"
    band = {q["id"]: q for q in inputs["metricQueries"]}[inputs["thresholdMetricId"]]
    assert band["expression"].startswith("ANOMALY_DETECTION_BAND(m1")
    assert "threshold" not in inputs


def test_restore_time_alarm_is_the_recovery_time_objective(run: ProgramRun) -> None:
    """Issue 9 #8: the RTO is an objective, so a fixed threshold (the trend: per-GB alarm)."""
    inputs = alarm(run, "restore-seconds")
    assert inputs["comparisonOperator"] == "GreaterThanThreshold"
    assert inputs["threshold"] == 3600
    assert inputs["statistic"] == "Maximum"
    assert "metricQueries" not in inputs
    changed = run_program({**stack_config("dev"), "rtoSeconds": "900"}, "dev")
    assert changed.one(ALARM, "-restore-seconds").inputs["threshold"] == 900


def test_every_alarm_notifies_the_encrypted_topic(run: ProgramRun) -> None:
    topic = run.one("aws:sns/topic:Topic")
    assert topic.property_dependencies["kmsMasterKeyId"] == [
        run.one("aws:kms/key:Key", "-alarms-key").urn
    ]
    alarms = run.of_type(ALARM)
    assert len(alarms) == 15
    for each in alarms:
        assert each.inputs["alarmActions"] == [topic.outputs["arn"]]
        assert each.inputs["okActions"] == [topic.outputs["arn"]]


def emitted_by_the_app() -> set[str]:
    """Metric names app/ emits: every ``outputs.METRIC_*`` passed to its Metrics calls."""
    source = "\n".join(p.read_text() for p in sorted(APP_DIR.glob("*.py")))
    called = re.findall(
        r"metrics\.(?:count|milliseconds|emit)\(\s*\{?\s*outputs\.(METRIC_\w+)", source
    )
    return {getattr(outputs, name) for name in called}


APP_DIR = Path(__file__).resolve().parents[2] / "app"

#: Trend alarm -> (watched series id, {query id: metric name}); the names are the
#: constants app/ and the audit emit, so a metric renamed on either side fails here.
TREND_ALARMS = {
    "webhook-rejections": (
        "rejected_share",
        {
            "recorded": outputs.METRIC_WEBHOOK_RECORDED,
            "ignored": outputs.METRIC_WEBHOOK_IGNORED,
            "rejected": outputs.METRIC_WEBHOOK_REJECTED,
        },
    ),
    "task-failure-rate": (
        "failed_share",
        {
            "succeeded": outputs.METRIC_TASKS_SUCCEEDED,
            "failed": outputs.METRIC_TASKS_FAILED,
            "retried": outputs.METRIC_TASK_RETRIES,
        },
    ),
    "task-duration": ("duration", {"duration": outputs.METRIC_TASK_DURATION_MS}),
    "outbox-publish-failures": (
        "failures_filled",
        {"failures": outputs.METRIC_OUTBOX_PUBLISH_FAILURES},
    ),
    "restore-seconds-per-gb": (
        "per_gb",
        {"restore": outputs.METRIC_RESTORE_SECONDS, "size": outputs.METRIC_SNAPSHOT_MEGABYTES},
    ),
}


@pytest.mark.parametrize("key", sorted(TREND_ALARMS))
def test_trend_alarms_fire_above_an_anomaly_band_of_what_is_emitted(
    run: ProgramRun, key: str
) -> None:
    """Issue 12: the alarms fire on a change of trend; each watches a metric really emitted."""
    watched, metrics = TREND_ALARMS[key]
    inputs = alarm(run, key)
    assert inputs["comparisonOperator"] == "GreaterThanUpperThreshold"
    assert "threshold" not in inputs
    queries = {q["id"]: q for q in inputs["metricQueries"]}
    band = queries[inputs["thresholdMetricId"]]
    assert band["expression"] == f"ANOMALY_DETECTION_BAND({watched}, 2)"
    assert [q["id"] for q in inputs["metricQueries"] if q["returnData"]] == [watched, "band"]
    found = {
        query_id: q["metric"]["metricName"] for query_id, q in queries.items() if "metric" in q
    }
    assert found == metrics
    for query_id in metrics:
        metric = queries[query_id]["metric"]
        assert metric["namespace"] == outputs.METRIC_NAMESPACE
        assert metric["dimensions"] == {outputs.METRIC_DIMENSION_STACK: run.stack}
    # The app and the audit emit only when something happens: silence is no breach.
    assert inputs["treatMissingData"] == "notBreaching"
    emitted = emitted_by_the_app() | {name for name, _ in AUDIT_METRICS.values()}
    assert set(metrics.values()) <= emitted


def test_the_app_emits_every_metric_its_trend_alarms_watch() -> None:
    assert emitted_by_the_app() >= {
        outputs.METRIC_WEBHOOK_RECORDED,
        outputs.METRIC_WEBHOOK_IGNORED,
        outputs.METRIC_WEBHOOK_REJECTED,
        outputs.METRIC_TASKS_SUCCEEDED,
        outputs.METRIC_TASKS_FAILED,
        outputs.METRIC_TASK_RETRIES,
        outputs.METRIC_TASK_DURATION_MS,
        outputs.METRIC_OUTBOX_PUBLISH_FAILURES,
    }


def test_shares_are_computed_quiet_periods_read_zero(run: ProgramRun) -> None:
    queries = {q["id"]: q for q in alarm(run, "webhook-rejections")["metricQueries"]}
    expression = queries["rejected_share"]["expression"]
    assert expression.startswith(
        "IF((FILL(recorded, 0) + FILL(ignored, 0) + FILL(rejected, 0)) > 0"
    )
    assert "100 * (FILL(rejected, 0)) /" in expression
    for key in ("webhook-rejections", "task-failure-rate"):
        for query in alarm(run, key)["metricQueries"]:
            if "metric" in query:
                assert query["metric"]["stat"] == "Sum"
                assert query["metric"]["period"] == 300


def test_restore_time_per_gb_follows_the_audit_interval(run: ProgramRun) -> None:
    inputs = alarm(run, "restore-seconds-per-gb")
    queries = {q["id"]: q for q in inputs["metricQueries"]}
    assert queries["per_gb"]["expression"] == "IF(size > 0, 1024 * restore / size, 0)"
    assert queries["restore"]["metric"]["period"] == 3600  # auditIntervalMinutes 60
    assert inputs["evaluationPeriods"] == inputs["datapointsToAlarm"] == 2
    # The audit publishes the drill's size beside its restore time (release/audit/aws.py).
    assert AUDIT_METRICS["snapshot_mb"][0] == outputs.METRIC_SNAPSHOT_MEGABYTES
    assert AUDIT_METRICS["restore_seconds"][0] == outputs.METRIC_RESTORE_SECONDS
