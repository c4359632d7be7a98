"""Alarms: every leading indicator is watched, anomaly bands where thresholds would be guesses."""

from __future__ import annotations

from typing import Any

from infra import outputs
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
    """Issue 9 #8: RestoreSeconds arrives once per drill; an anomaly band cannot train."""
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
    assert len(alarms) == 10
    for each in alarms:
        assert each.inputs["alarmActions"] == [topic.outputs["arn"]]
        assert each.inputs["okActions"] == [topic.outputs["arn"]]
