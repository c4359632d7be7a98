"""Settings: read once; a missing or malformed one stops the process naming it, never its value."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.settings import SettingsError, load_settings
from tests.app.conftest import REPO

GOOD = {
    "DATABASE_URL": "postgresql://app:s3cret-Pa55@db.internal:5432/app",
    "ROLLGATE_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/tasks",
    "ROLLGATE_DLQ_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/tasks-dlq",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "STRIPE_WEBHOOK_SECRET": "whsec_abcdefghijklmnop",
    "ROLLGATE_STACK": "dev",
}


def test_a_complete_environment_loads_with_defaults() -> None:
    settings = load_settings(GOOD, "web")
    assert settings.port == 8000
    assert settings.aws_endpoint_url is None
    assert settings.stack == "dev"
    # Secrets and URLs stay out of repr (and so out of any accidental log line).
    assert "s3cret" not in repr(settings)
    assert "whsec_" not in repr(settings)


def test_libpq_variables_replace_database_url() -> None:
    env = {k: v for k, v in GOOD.items() if k != "DATABASE_URL"} | {"PGHOST": "db.internal"}
    assert load_settings(env, "worker").database_url == ""


def test_ecs_region_variable_is_accepted() -> None:
    env = {k: v for k, v in GOOD.items() if k != "AWS_DEFAULT_REGION"} | {"AWS_REGION": "us-east-2"}
    assert load_settings(env, "worker").aws_region == "us-east-2"


def test_the_worker_does_not_need_the_stripe_secret() -> None:
    env = {k: v for k, v in GOOD.items() if k != "STRIPE_WEBHOOK_SECRET"}
    assert load_settings(env, "worker").stripe_webhook_secret is None
    with pytest.raises(SettingsError, match=r"^STRIPE_WEBHOOK_SECRET is not set"):
        load_settings(env, "web")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ROLLGATE_QUEUE_URL", None, "ROLLGATE_QUEUE_URL is not set"),
        ("ROLLGATE_QUEUE_URL", "sqs://nope", "ROLLGATE_QUEUE_URL is malformed"),
        ("DATABASE_URL", "postgresql://app:s3cret-Pa55@db:notaport/x", "DATABASE_URL is malformed"),
        ("DATABASE_URL", "host=db password='s3cret-Pa55", "DATABASE_URL is malformed"),
        ("PORT", "eighty", "PORT is malformed"),
        ("PORT", "70000", "PORT is out of range"),
        ("AWS_DEFAULT_REGION", "mars", "AWS_DEFAULT_REGION is malformed"),
        ("STRIPE_WEBHOOK_SECRET", "sk_live_s3cret-Pa55", "STRIPE_WEBHOOK_SECRET is malformed"),
        ("ROLLGATE_STACK", None, "ROLLGATE_STACK is not set"),
    ],
)
def test_bad_settings_name_the_variable_and_hide_secrets(
    name: str, value: str | None, expected: str
) -> None:
    env = dict(GOOD)
    if value is None:
        env.pop(name)
    else:
        env[name] = value
    with pytest.raises(SettingsError) as raised:
        load_settings(env, "web")
    assert str(raised.value).startswith(expected)
    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize("role", ["web", "worker"])
def test_the_process_stops_at_start_with_one_line_and_exit_2(role: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "ROLLGATE_"))}
    env |= GOOD | {"PYTHONPATH": str(REPO), "ROLLGATE_DLQ_URL": "not a url"}
    result = subprocess.run(
        [sys.executable, "-m", "app", role],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"app {role}: cannot start: ROLLGATE_DLQ_URL is malformed")
    assert "s3cret" not in result.stderr
