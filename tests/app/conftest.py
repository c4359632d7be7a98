"""Real parts for the app's tests: embedded Postgres, moto's SQS over HTTP, app processes.

* ``moto_endpoint``: one ThreadedMotoServer on 127.0.0.1 per session;
* ``queues``: a fresh task queue with its DLQ (redrive after ``MAX_RECEIVE``) per test;
* ``app_env``: the environment a ``python -m app`` process gets (fresh migrated database);
* ``start_app``: starts ``python -m app web|worker`` as a real process, logs to a file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from app.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
#: Tests' queues move a message to the DLQ after this many receives.
MAX_RECEIVE = 3
WEBHOOK_SECRET = "whsec_test_" + "0" * 24

# moto accepts any credentials; these keep boto3 from looking for real ones.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ["AWS_DEFAULT_REGION"] = REGION


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class Queues:
    endpoint: str
    url: str
    dlq_url: str
    client: Any = field(repr=False)

    def messages(self, url: str | None = None, *, wait: int = 0) -> list[dict[str, Any]]:
        """Receive (and hide for 30 s) what is visible on ``url`` (default: the task queue)."""
        found: list[dict[str, Any]] = []
        while True:
            batch = self.client.receive_message(
                QueueUrl=url or self.url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=wait,
                VisibilityTimeout=30,
            ).get("Messages", [])
            if not batch:
                return found
            found += batch
            wait = 0

    def count(self, url: str) -> int:
        attributes = self.client.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )


def sqs(endpoint: str) -> Any:
    return boto3.client("sqs", region_name=REGION, endpoint_url=endpoint)


@pytest.fixture
def queues(moto_endpoint: str) -> Queues:
    client = sqs(moto_endpoint)
    name = f"tasks-{secrets.token_hex(4)}"
    dlq_url = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    url = client.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "30",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE)}
            ),
        },
    )["QueueUrl"]
    return Queues(moto_endpoint, url, dlq_url, client)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def env_for(dsn: str, queues: Queues, tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": dsn,
        "ROLLGATE_QUEUE_URL": queues.url,
        "ROLLGATE_DLQ_URL": queues.dlq_url,
        "AWS_ENDPOINT_URL": queues.endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ROLLGATE_STACK": "test",
        "ROLLGATE_HEARTBEAT_FILE": str(tmp_path / "worker.heartbeat"),
        "ROLLGATE_MAX_ATTEMPTS": str(MAX_RECEIVE),
        "ROLLGATE_VISIBILITY_TIMEOUT_SECONDS": "30",
        "ROLLGATE_RETRY_BASE_SECONDS": "0",
        "ROLLGATE_POLL_WAIT_SECONDS": "1",
        "ROLLGATE_STOP_GRACE_SECONDS": "10",
        "ROLLGATE_RELAY_INTERVAL_SECONDS": "0.2",
        "ROLLGATE_BIND_HOST": "127.0.0.1",
    }
    env.update(overrides)
    return env


@pytest.fixture
def app_env(migrated_dsn: str, queues: Queues, tmp_path: Path) -> dict[str, str]:
    return env_for(migrated_dsn, queues, tmp_path)


def settings_for(env: Mapping[str, str], role: str = "web") -> Settings:
    return load_settings(env, "web" if role == "web" else "worker")


@dataclass
class AppProcess:
    role: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log_lines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def terminate(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def wait_until(condition: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.1)


def http_get(url: str, timeout: float = 5) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def http_post(
    url: str, body: bytes | dict[str, Any], headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[..., AppProcess]]:
    started: list[AppProcess] = []

    def start(role: str, env: Mapping[str, str], *, wait: bool = True) -> AppProcess:
        log_path = tmp_path / f"{role}-{len(started)}.log"
        full_env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
        port = None
        if role == "web":
            port = free_port()
            full_env["PORT"] = str(port)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "app", role],
                cwd=REPO,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        app = AppProcess(role, process, log_path, port)
        started.append(app)
        if wait and role == "web":
            wait_until(lambda: _answers(app), 30, f"{role} to answer /healthz")
        return app

    yield start
    for app in started:
        if app.process.poll() is None:
            app.process.kill()
            app.process.wait(10)


def _answers(app: AppProcess) -> bool:
    if app.process.poll() is not None:
        raise AssertionError(f"{app.role} exited {app.process.returncode}: {app.log_lines()[-5:]}")
    try:
        return http_get(app.url + "/healthz", timeout=1)[0] == 200
    except OSError:
        return False


def stripe_signature(
    payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> str:
    """The header Stripe sends: ``t=<unix time>,v1=HMAC-SHA256(secret, "<t>.<payload>")``."""
    stamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def stripe_event(
    event_type: str = "charge.succeeded",
    *,
    event_id: str | None = None,
    amount: int = 1999,
    currency: str = "usd",
    customer_id: int | None = None,
    email: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    obj: dict[str, Any] = {
        "id": "ch_" + secrets.token_hex(8),
        "object": "charge" if event_type.startswith("charge") else "refund",
        "amount": amount,
        "currency": currency,
        "metadata": {} if customer_id is None else {"customer_id": str(customer_id)},
        "payment_method_details": {"card": {"brand": "visa", "last4": "4242", "exp_year": 2030}},
    }
    if email is not None:
        obj["receipt_email"] = email
        obj["billing_details"] = {"email": email, "name": "Planted Name"}
    obj.update(extra or {})
    event = {
        "id": event_id or "evt_" + secrets.token_hex(12),
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": obj},
    }
    return json.dumps(event).encode()
