"""One typed settings object, read once from the environment at start.

A missing or malformed setting raises `SettingsError` naming the variable and
what is wrong with it; the message never contains a secret's value (nor, for
URLs that may carry credentials, the value at all).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from psycopg import conninfo

from infra import outputs

Role = Literal["web", "worker"]

ENV_DATABASE_URL: Final = "DATABASE_URL"
ENV_QUEUE_URL: Final = outputs.ENV_QUEUE_URL
ENV_DLQ_URL: Final = outputs.ENV_DLQ_URL
ENV_AWS_ENDPOINT_URL: Final = "AWS_ENDPOINT_URL"
ENV_AWS_DEFAULT_REGION: Final = "AWS_DEFAULT_REGION"
#: What ECS task definitions set (infra/tasks.py); read when AWS_DEFAULT_REGION is absent.
ENV_AWS_REGION: Final = "AWS_REGION"
ENV_STRIPE_WEBHOOK_SECRET: Final = "STRIPE_WEBHOOK_SECRET"  # noqa: S105 (a variable name)
ENV_PORT: Final = outputs.ENV_PORT
ENV_STACK: Final = outputs.ENV_STACK
ENV_METRIC_NAMESPACE: Final = outputs.ENV_METRIC_NAMESPACE
ENV_HEARTBEAT_FILE: Final = "ROLLGATE_HEARTBEAT_FILE"
ENV_MAX_ATTEMPTS: Final = outputs.ENV_WORKER_MAX_ATTEMPTS
ENV_VISIBILITY_TIMEOUT: Final = outputs.ENV_WORKER_VISIBILITY_TIMEOUT
ENV_RETRY_BASE: Final = "ROLLGATE_RETRY_BASE_SECONDS"
ENV_POLL_WAIT: Final = "ROLLGATE_POLL_WAIT_SECONDS"
ENV_STOP_GRACE: Final = outputs.ENV_WORKER_STOP_GRACE
ENV_EXECUTOR: Final = "ROLLGATE_EXECUTOR"
ENV_RELAY_INTERVAL: Final = "ROLLGATE_RELAY_INTERVAL_SECONDS"
#: Set by the ECS agent in every task (v1.61+); the task-protection endpoint lives under it.
ENV_ECS_AGENT_URI: Final = "ECS_AGENT_URI"
#: The web server's listen address: all interfaces in the container, loopback in tests.
ENV_BIND_HOST: Final = "ROLLGATE_BIND_HOST"

#: libpq variables that, without DATABASE_URL, say where the database is.
LIBPQ_LOCATION_VARIABLES: Final = ("PGHOST", "PGDATABASE", "PGSERVICE")

DEFAULT_PORT: Final = 8000

_HTTP_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_BIND_HOST = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_STACK = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_EXECUTOR = re.compile(r"^(reference|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$")


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it and never its value."""


@dataclass(frozen=True)
class Settings:
    """Everything the process reads from its environment, validated."""

    role: Role
    #: libpq connection string; "" means libpq's PG* variables decide.
    database_url: str = field(repr=False)
    queue_url: str = field(repr=False)
    dlq_url: str = field(repr=False)
    aws_region: str
    aws_endpoint_url: str | None
    stripe_webhook_secret: str | None = field(repr=False)
    port: int
    bind_host: str
    stack: str
    metric_namespace: str
    heartbeat_file: str
    max_attempts: int
    visibility_timeout_seconds: int
    retry_base_seconds: float
    poll_wait_seconds: int
    stop_grace_seconds: float
    executor: str
    relay_interval_seconds: float
    ecs_agent_uri: str | None


def required_variables(role: Role) -> frozenset[str]:
    """Variables a ``role`` process refuses to start without (besides the database)."""
    names = {ENV_QUEUE_URL, ENV_DLQ_URL, ENV_STACK}
    if role == "web":
        names.add(ENV_STRIPE_WEBHOOK_SECRET)
    return frozenset(names)


def load_settings(environ: Mapping[str, str], role: Role) -> Settings:
    """Read and validate the environment for a ``role`` process."""
    reader = _Reader(environ)
    return Settings(
        role=role,
        database_url=reader.database_url(),
        queue_url=reader.required_url(ENV_QUEUE_URL),
        dlq_url=reader.required_url(ENV_DLQ_URL),
        aws_region=reader.region(),
        aws_endpoint_url=reader.url(ENV_AWS_ENDPOINT_URL, required=False),
        stripe_webhook_secret=reader.stripe_secret(required=role == "web"),
        port=reader.integer(ENV_PORT, DEFAULT_PORT, 1, 65535),
        bind_host=reader.matching(
            ENV_BIND_HOST,
            _BIND_HOST,
            "an IPv4 address such as 0.0.0.0 or 127.0.0.1",
            default="0.0.0.0",  # noqa: S104 (the ALB reaches the task's ENI)
        ),
        stack=reader.matching(ENV_STACK, _STACK, "letters, digits, '.', '_' or '-'"),
        metric_namespace=reader.matching(
            ENV_METRIC_NAMESPACE, _STACK, "a CloudWatch namespace", default=outputs.METRIC_NAMESPACE
        ),
        heartbeat_file=environ.get(ENV_HEARTBEAT_FILE) or outputs.WORKER_HEARTBEAT_FILE,
        max_attempts=reader.integer(ENV_MAX_ATTEMPTS, 5, 1, 1000),
        visibility_timeout_seconds=reader.integer(ENV_VISIBILITY_TIMEOUT, 60, 2, 43200),
        retry_base_seconds=reader.number(ENV_RETRY_BASE, 5.0, 0.0, 900.0),
        poll_wait_seconds=reader.integer(ENV_POLL_WAIT, 20, 0, 20),
        stop_grace_seconds=reader.number(ENV_STOP_GRACE, 20.0, 0.0, 120.0),
        executor=reader.matching(
            ENV_EXECUTOR, _EXECUTOR, "'reference' or 'module:attribute'", default="reference"
        ),
        relay_interval_seconds=reader.number(ENV_RELAY_INTERVAL, 1.0, 0.05, 60.0),
        ecs_agent_uri=reader.url(ENV_ECS_AGENT_URI, required=False),
    )


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def _get(self, name: str) -> str | None:
        value = self.environ.get(name)
        return value if value not in (None, "") else None

    def database_url(self) -> str:
        value = self._get(ENV_DATABASE_URL)
        if value is None:
            if any(self._get(name) for name in LIBPQ_LOCATION_VARIABLES):
                return ""
            raise SettingsError(
                f"{ENV_DATABASE_URL} is not set (nor libpq's PGHOST/PGDATABASE): "
                "set it to the database's postgresql:// URL"
            )
        try:
            parsed = conninfo.conninfo_to_dict(value)
            port = str(parsed.get("port", "5432"))
            if not all(part.isdigit() for part in port.split(",")):
                raise ValueError("port")
        except Exception:
            # The parse error quotes the string, password included: never show it.
            raise SettingsError(
                f"{ENV_DATABASE_URL} is malformed: expected postgresql://user@host:port/dbname "
                "or a libpq 'key=value' string (value not shown)"
            ) from None
        return value

    def required_url(self, name: str) -> str:
        value = self.url(name, required=True)
        assert value is not None  # url() raises when a required one is missing
        return value

    def url(self, name: str, *, required: bool) -> str | None:
        value = self._get(name)
        if value is None:
            if required:
                raise SettingsError(f"{name} is not set: set it to an http(s):// URL")
            return None
        if not _HTTP_URL.match(value):
            raise SettingsError(
                f"{name} is malformed: expected an http(s):// URL (value not shown)"
            )
        return value

    def region(self) -> str:
        value = self._get(ENV_AWS_DEFAULT_REGION) or self._get(ENV_AWS_REGION)
        if value is None:
            raise SettingsError(f"{ENV_AWS_DEFAULT_REGION} is not set: set it to an AWS region")
        if not _REGION.match(value):
            raise SettingsError(
                f"{ENV_AWS_DEFAULT_REGION} is malformed: {value!r} is not an AWS region name"
            )
        return value

    def stripe_secret(self, *, required: bool) -> str | None:
        value = self._get(ENV_STRIPE_WEBHOOK_SECRET)
        if value is None:
            if required:
                raise SettingsError(
                    f"{ENV_STRIPE_WEBHOOK_SECRET} is not set: set it to the endpoint's "
                    "signing secret (whsec_...)"
                )
            return None
        if not value.startswith("whsec_") or len(value) < 10 or any(c.isspace() for c in value):
            raise SettingsError(
                f"{ENV_STRIPE_WEBHOOK_SECRET} is malformed: expected a Stripe signing secret "
                "starting with whsec_ (value not shown)"
            )
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self._get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} is malformed: {raw!r} is not an integer") from None
        if not low <= value <= high:
            raise SettingsError(f"{name} is out of range: {value} (allowed {low}..{high})")
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self._get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} is malformed: {raw!r} is not a number") from None
        if not low <= value <= high:
            raise SettingsError(f"{name} is out of range: {value} (allowed {low}..{high})")
        return value

    def matching(
        self, name: str, pattern: re.Pattern[str], expected: str, *, default: str | None = None
    ) -> str:
        value = self._get(name)
        if value is None:
            if default is not None:
                return default
            raise SettingsError(f"{name} is not set: expected {expected}")
        if not pattern.match(value):
            raise SettingsError(f"{name} is malformed: {value!r} (expected {expected})")
        return value
