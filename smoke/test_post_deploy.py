"""Post-deploy checks of the live stack (``--smoke-post-deploy --smoke-stack-outputs FILE``)."""

from __future__ import annotations

import json
import secrets
import ssl
from typing import Any

import boto3
import psycopg
import pytest

from db.history import HISTORY_QUALIFIED
from db.migrations import load_migrations
from infra import outputs
from smoke.apps import REGION, http_json, wait_until
from smoke.postdeploy import SMOKE_TAG_ATTRIBUTE, StackOutputs, audit_dsn, read_stack_outputs
from smoke.summary import Summary

pytestmark = pytest.mark.post_deploy


@pytest.fixture(scope="session")
def stack(pytestconfig: pytest.Config) -> StackOutputs:
    return read_stack_outputs(str(pytestconfig.getoption("--smoke-stack-outputs")))


@pytest.fixture(scope="session")
def aws_endpoint(pytestconfig: pytest.Config) -> str | None:
    value: str | None = pytestconfig.getoption("--smoke-aws-endpoint-url")
    return value


@pytest.fixture(scope="session")
def sqs(aws_endpoint: str | None) -> Any:
    return boto3.client("sqs", region_name=REGION, endpoint_url=aws_endpoint)


def test_the_app_is_ready_over_tls(
    stack: StackOutputs, pytestconfig: pytest.Config, summary: Summary
) -> None:
    url = str(stack[outputs.APP_URL]).rstrip("/")
    if not url.startswith("https://"):
        pytest.fail(f"{outputs.APP_URL} is {url}: not TLS (https://) on this stack", pytrace=False)
    ca_bundle = pytestconfig.getoption("--smoke-ca-bundle")
    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    try:
        status, body = http_json(url + outputs.APP_READY_PATH, context=context)
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        pytest.fail(f"{url}{outputs.APP_READY_PATH}: {reason}", pytrace=False)
    summary.post_deploy_results["readyz"] = {"url": url, "status": status}
    assert status == 200, f"{url}{outputs.APP_READY_PATH} answered {status}: {body}"


def test_the_database_answers_the_audit_role_at_the_release_schema(
    stack: StackOutputs, aws_endpoint: str | None, pytestconfig: pytest.Config, summary: Summary
) -> None:
    dsn = audit_dsn(stack, aws_endpoint, REGION)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            read_only = conn.execute("SHOW transaction_read_only").fetchone()
            row = conn.execute(f"SELECT max(version) FROM {HISTORY_QUALIFIED}").fetchone()
    except psycopg.Error as exc:
        pytest.fail(
            f"database {stack[outputs.DB_ADDRESS]}:{stack[outputs.DB_PORT]}/"
            f"{stack[outputs.DB_NAME]} as the audit role: {' '.join(str(exc).split())}",
            pytrace=False,
        )
    assert read_only == ("on",)
    live = None if row is None or row[0] is None else int(row[0])
    expected = load_migrations(pytestconfig.getoption("--smoke-migrations"))[-1].version
    summary.post_deploy_results["schema_version"] = {"live": live, "release": expected}
    assert live == expected, f"the live schema is at {live}, this release expects {expected}"


def test_the_queue_has_its_dlq_redrive(stack: StackOutputs, sqs: Any, summary: Summary) -> None:
    attributes = sqs.get_queue_attributes(
        QueueUrl=stack[outputs.QUEUE_URL], AttributeNames=["All"]
    ).get("Attributes", {})
    sqs.get_queue_attributes(QueueUrl=stack[outputs.DLQ_URL], AttributeNames=["QueueArn"])
    redrive = json.loads(attributes.get("RedrivePolicy") or "null")
    summary.post_deploy_results["queue"] = {
        "visibility_timeout": attributes.get("VisibilityTimeout"),
        "redrive_policy": redrive,
    }
    assert redrive, f"{stack[outputs.QUEUE_URL]} has no RedrivePolicy: poison never leaves it"
    assert redrive["deadLetterTargetArn"] == stack[outputs.DLQ_ARN], (
        f"the queue redrives to {redrive['deadLetterTargetArn']}, not the stack's DLQ "
        f"{stack[outputs.DLQ_ARN]}"
    )
    assert int(redrive["maxReceiveCount"]) >= 1


def test_a_tagged_message_round_trips_and_is_removed(
    stack: StackOutputs, sqs: Any, summary: Summary
) -> None:
    tag = "smoke-" + secrets.token_hex(6)
    url = stack[outputs.QUEUE_URL]
    sqs.send_message(
        QueueUrl=url,
        MessageBody=json.dumps({"rollgate_smoke": tag}),
        MessageAttributes={SMOKE_TAG_ATTRIBUTE: {"DataType": "String", "StringValue": tag}},
    )

    def received() -> bool:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=5,
            MessageAttributeNames=[SMOKE_TAG_ATTRIBUTE],
        ).get("Messages", [])
        for message in batch:
            value = message.get("MessageAttributes", {}).get(SMOKE_TAG_ATTRIBUTE, {})
            if value.get("StringValue") == tag:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                return True
        return False

    found = bool(wait_until(received, 20, 0))
    summary.post_deploy_results["round_trip"] = {"tag": tag, "received_and_deleted": found}
    assert found, f"the tagged message {tag} did not come back from {url} within 20s"
