"""SQS client and the task message format."""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.config import Config

from app.settings import Settings


def sqs_client(
    settings: Settings,
    *,
    endpoint_url: str | None = None,
    read_timeout: int = 30,
    attempts: int = 3,
) -> Any:
    """A boto3 SQS client; ``endpoint_url`` overrides the settings' (moto, tests)."""
    return boto3.client(
        "sqs",
        region_name=settings.aws_region,
        endpoint_url=endpoint_url or settings.aws_endpoint_url,
        config=Config(
            connect_timeout=3,
            # Longer than the longest long poll (20 s).
            read_timeout=read_timeout,
            retries={"max_attempts": attempts, "mode": "standard"},
        ),
    )


class PoisonMessage(ValueError):
    """A queue message this release cannot understand."""


def task_message(task_id: int) -> str:
    """The body of the message that asks a worker to run ``task_id``."""
    return json.dumps({"task_id": task_id}, separators=(",", ":"))


def parse_task_message(body: str) -> int:
    """The task id in a message body, or `PoisonMessage`."""
    try:
        data = json.loads(body)
    except ValueError:
        raise PoisonMessage("body is not JSON") from None
    task_id = data.get("task_id") if isinstance(data, dict) else None
    if not isinstance(task_id, int) or isinstance(task_id, bool) or not 0 < task_id < 2**63:
        raise PoisonMessage("body has no positive integer task_id")
    return task_id
