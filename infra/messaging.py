"""Messaging: the task queue the worker consumes, and its dead-letter queue.

Creates:
- a dead-letter queue that keeps messages 14 days (longer than the task queue:
  SQS keeps a message's original enqueue time when it moves to the DLQ);
- the task queue: server-side encryption, long polling, a visibility timeout
  derived from the worker's timeout, and a redrive to the DLQ after the
  configured number of receives;
- a redrive-allow policy on the DLQ naming the task queue as its only source;
- the audit schedule's dead-letter queue (encrypted, 14 days): EventBridge
  Scheduler puts an invocation there when RunTask fails after its retries;
- queue policies that deny any request not made over TLS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_aws as aws

from infra.config import DLQ_RETENTION_SECONDS, QueueConfig
from infra.iam import policy_document, statement
from infra.tagging import (
    ROLE_DEAD_LETTER_QUEUE,
    ROLE_SCHEDULE_DEAD_LETTER_QUEUE,
    ROLE_TASK_QUEUE,
    with_role,
)

#: Long polling at the SQS maximum: fewer empty receives, lower cost and latency.
RECEIVE_WAIT_SECONDS: Final = 20


@dataclass(frozen=True)
class MessagingArgs:
    config: QueueConfig
    tags: Mapping[str, str]


def deny_insecure_transport(resource: pulumi.Input[str]) -> pulumi.Output[str]:
    """Resource policy denying every request to `resource` that is not over TLS."""
    return policy_document(
        [
            {
                **statement(
                    ["sqs:*"],
                    resource,
                    sid="DenyInsecureTransport",
                    effect="Deny",
                    condition={"Bool": {"aws:SecureTransport": "false"}},
                ),
                "Principal": "*",
            }
        ]
    )


class Messaging(pulumi.ComponentResource):
    queue: aws.sqs.Queue
    dead_letter_queue: aws.sqs.Queue
    schedule_dead_letter_queue: aws.sqs.Queue

    def __init__(
        self, name: str, args: MessagingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("rollgate:infra:Messaging", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        config = args.config

        # Dead-letter queue: where a message lands after too many failed receives.
        self.dead_letter_queue = aws.sqs.Queue(
            f"{name}-dlq",
            message_retention_seconds=DLQ_RETENTION_SECONDS,
            visibility_timeout_seconds=config.visibility_timeout_seconds,
            receive_wait_time_seconds=RECEIVE_WAIT_SECONDS,
            sqs_managed_sse_enabled=True,
            tags=with_role(args.tags, ROLE_DEAD_LETTER_QUEUE),
            opts=child,
        )
        # Task queue the web app produces to and the worker consumes.
        self.queue = aws.sqs.Queue(
            f"{name}-tasks",
            message_retention_seconds=config.retention_seconds,
            visibility_timeout_seconds=config.visibility_timeout_seconds,
            receive_wait_time_seconds=RECEIVE_WAIT_SECONDS,
            sqs_managed_sse_enabled=True,
            redrive_policy=pulumi.Output.json_dumps(
                {
                    "deadLetterTargetArn": self.dead_letter_queue.arn,
                    "maxReceiveCount": config.max_receive_count,
                }
            ),
            tags=with_role(args.tags, ROLE_TASK_QUEUE),
            opts=child,
        )
        # Redrive-allow policy: only the task queue may dead-letter into the DLQ.
        aws.sqs.RedriveAllowPolicy(
            f"{name}-dlq-redrive-allow",
            queue_url=self.dead_letter_queue.url,
            redrive_allow_policy=pulumi.Output.json_dumps(
                {"redrivePermission": "byQueue", "sourceQueueArns": [self.queue.arn]}
            ),
            opts=child,
        )
        # The audit schedule's dead-letter queue: failed RunTask invocations, kept 14 days.
        self.schedule_dead_letter_queue = aws.sqs.Queue(
            f"{name}-schedule-dead-letters",
            message_retention_seconds=DLQ_RETENTION_SECONDS,
            receive_wait_time_seconds=RECEIVE_WAIT_SECONDS,
            sqs_managed_sse_enabled=True,
            tags=with_role(args.tags, ROLE_SCHEDULE_DEAD_LETTER_QUEUE),
            opts=child,
        )
        for label, queue in (
            ("tasks", self.queue),
            ("dlq", self.dead_letter_queue),
            ("schedule-dead-letters", self.schedule_dead_letter_queue),
        ):
            # TLS-only queue policy.
            aws.sqs.QueuePolicy(
                f"{name}-{label}-policy",
                queue_url=queue.url,
                policy=deny_insecure_transport(queue.arn),
                opts=child,
            )

        self.register_outputs(
            {
                "queueUrl": self.queue.url,
                "queueArn": self.queue.arn,
                "dlqUrl": self.dead_letter_queue.url,
                "dlqArn": self.dead_letter_queue.arn,
                "scheduleDlqArn": self.schedule_dead_letter_queue.arn,
            }
        )
