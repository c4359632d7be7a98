"""Messaging: task queue + DLQ with redrive, encryption, long polling, derived visibility."""

from __future__ import annotations

import json

from infra.config import DLQ_RETENTION_SECONDS
from tests.infra.harness import CapturedResource, ProgramRun

QUEUE = "aws:sqs/queue:Queue"


def queues(run: ProgramRun) -> tuple[CapturedResource, CapturedResource]:
    return run.one(QUEUE, "-tasks"), run.one(QUEUE, "-dlq")


def test_task_queue_redrives_to_the_dlq_after_configured_receives(run: ProgramRun) -> None:
    tasks, dlq = queues(run)
    redrive = json.loads(tasks.inputs["redrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq.outputs["arn"]
    assert redrive["maxReceiveCount"] == int(run.config["queueMaxReceiveCount"])
    assert tasks.property_dependencies["redrivePolicy"] == [dlq.urn]
    assert "redrivePolicy" not in dlq.inputs


def test_max_receive_count_comes_from_config(variant: ProgramRun) -> None:
    tasks, _ = queues(variant)
    assert json.loads(tasks.inputs["redrivePolicy"])["maxReceiveCount"] == 9


def test_dlq_keeps_messages_longer_and_allows_only_the_task_queue(run: ProgramRun) -> None:
    tasks, dlq = queues(run)
    assert dlq.inputs["messageRetentionSeconds"] == DLQ_RETENTION_SECONDS
    assert dlq.inputs["messageRetentionSeconds"] > tasks.inputs["messageRetentionSeconds"]
    allow = run.one("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy")
    assert allow.property_dependencies["queueUrl"] == [dlq.urn]
    assert json.loads(allow.inputs["redriveAllowPolicy"]) == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": [tasks.outputs["arn"]],
    }


def test_encryption_and_long_polling(run: ProgramRun) -> None:
    for queue in queues(run):
        assert queue.inputs["sqsManagedSseEnabled"] is True
        assert queue.inputs["receiveWaitTimeSeconds"] == 20


def test_queues_deny_requests_without_tls(run: ProgramRun) -> None:
    policies = run.of_type("aws:sqs/queuePolicy:QueuePolicy")
    assert len(policies) == 3  # task queue, its DLQ, the audit schedule's DLQ
    for policy in policies:
        statement = json.loads(policy.inputs["policy"])["Statement"][0]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_audit_schedule_has_an_encrypted_dead_letter_queue_with_an_alarm(run: ProgramRun) -> None:
    """Issue 9 #9: failed RunTask invocations must land somewhere someone is told about."""
    dlq = run.one(QUEUE, "-schedule-dead-letters")
    assert dlq.inputs["sqsManagedSseEnabled"] is True
    assert dlq.inputs["messageRetentionSeconds"] == 14 * 24 * 3600
    schedule = run.one("aws:scheduler/schedule:Schedule")
    assert schedule.inputs["target"]["deadLetterConfig"] == {"arn": dlq.outputs["arn"]}
    alarm = run.one("aws:cloudwatch/metricAlarm:MetricAlarm", "-audit-dead-letters")
    assert alarm.inputs["dimensions"] == {"QueueName": dlq.outputs["name"]}
    assert alarm.inputs["metricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm.inputs["threshold"] == 0
    # Scheduler sends to the DLQ with the schedule's role.
    policy = run.one("aws:iam/rolePolicy:RolePolicy", "-audit-scheduler-policy")
    [send] = [
        s
        for s in json.loads(policy.inputs["policy"])["Statement"]
        if s["Action"] == ["sqs:SendMessage"]
    ]
    assert send["Resource"] == [dlq.outputs["arn"]]


def test_visibility_timeout_is_derived_from_the_worker_timeout(
    dev: ProgramRun, variant: ProgramRun
) -> None:
    for run in (dev, variant):
        timeout = run.config["workerTimeoutSeconds"]
        tasks, _ = queues(run)
        assert tasks.inputs["visibilityTimeoutSeconds"] == 2 * int(timeout)
        # The oldest-message alarm follows it (two visibility timeouts).
        alarm = run.one("aws:cloudwatch/metricAlarm:MetricAlarm", "-oldest-message-age")
        assert alarm.inputs["threshold"] == 4 * int(timeout)
        # And the worker gets as long as Fargate allows to finish a message on shutdown.
        worker = run.one("aws:ecs/taskDefinition:TaskDefinition", "-worker-task")
        stop = json.loads(worker.inputs["containerDefinitions"])[0]["stopTimeout"]
        assert stop == min(int(timeout), 120)
