"""The app under test: its image as a container, or ``python -m app`` as processes.

Both run the real web and worker against the throwaway Postgres and an SQS
endpoint (moto on 127.0.0.1). Containers use ``--network host`` with the web
bound to 127.0.0.1, so they reach the host's loopback as ECS tasks reach RDS
and SQS, and run as ECS runs them: read-only root, /tmp a tmpfs, non-root.
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
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra import outputs

REGION = "us-east-1"
#: The pre-deploy queue moves a message to the DLQ after this many receives.
MAX_RECEIVE = 3
WEBHOOK_SECRET = "whsec_smoke_" + "0" * 24
REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """``condition()``'s first truthy value, or its last (falsy) one after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def http_json(
    url: str,
    body: bytes | dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    timeout: float = 10,
    context: Any = None,
) -> tuple[int, Any]:
    """(status, parsed JSON body or text) of a GET (no body) or POST."""
    data = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 (http(s) URLs the suite builds)
        url,
        data=data,
        method="GET" if data is None else "POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def stripe_signature(payload: bytes, secret: str = WEBHOOK_SECRET) -> str:
    """Stripe's header: ``t=<unix time>,v1=HMAC-SHA256(secret, "<t>.<payload>")``."""
    stamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def stripe_event(event_id: str) -> bytes:
    """A minimal ``charge.succeeded`` event with no personal data."""
    event = {
        "id": event_id,
        "object": "event",
        "type": "charge.succeeded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": "ch_" + secrets.token_hex(8),
                "object": "charge",
                "amount": 1234,
                "currency": "usd",
                "metadata": {},
            }
        },
    }
    return json.dumps(event).encode()


def app_env(dsn: str, queue_url: str, dlq_url: str, endpoint: str, scratch: Path) -> dict[str, str]:
    """What the web and worker get: the task definition's variables, pointed at the fakes."""
    return {
        "DATABASE_URL": dsn,
        outputs.ENV_QUEUE_URL: queue_url,
        outputs.ENV_DLQ_URL: dlq_url,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        outputs.ENV_STACK: "smoke",
        "ROLLGATE_HEARTBEAT_FILE": str(scratch / "worker.heartbeat"),
        outputs.ENV_WORKER_MAX_ATTEMPTS: str(MAX_RECEIVE),
        outputs.ENV_WORKER_VISIBILITY_TIMEOUT: "30",
        "ROLLGATE_RETRY_BASE_SECONDS": "0",
        "ROLLGATE_POLL_WAIT_SECONDS": "1",
        outputs.ENV_WORKER_STOP_GRACE: "10",
        "ROLLGATE_RELAY_INTERVAL_SECONDS": "0.2",
        "ROLLGATE_BIND_HOST": "127.0.0.1",
    }


@dataclass
class RunningApp:
    """A started web + worker; ``stop()`` ends both and returns their logs' tails."""

    kind: str  # "container" or "process"
    image: str | None
    url: str
    _stop: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _logs: list[Callable[[], str]] = field(default_factory=list, repr=False)

    def logs(self, lines: int = 20) -> str:
        return "\n".join("\n".join(read().splitlines()[-lines:]) for read in self._logs)

    def stop(self) -> None:
        for stop in self._stop:
            stop()
        self._stop.clear()


def start_app(image: str | None, env: Mapping[str, str], scratch: Path, name: str) -> RunningApp:
    """Start web and worker from ``image`` (a container each) or, without one, as processes."""
    port = free_port()
    full = {**env, outputs.ENV_PORT: str(port)}
    app = RunningApp("container" if image else "process", image, f"http://127.0.0.1:{port}")
    for role in ("web", "worker"):
        if image:
            _start_container(app, image, role, full, f"rollgate-smoke-{name}-{role}-{os.getpid()}")
        else:
            _start_process(app, role, full, scratch / f"{name}-{role}.log")
    return app


def _start_container(
    app: RunningApp, image: str, role: str, env: Mapping[str, str], name: str
) -> None:
    subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)
    args = ["docker", "run", "--detach", "--name", name, "--network", "host"]
    args += ["--read-only", "--tmpfs", "/tmp", "--init"]  # noqa: S108 (as the task definition)
    inside = {**env, "ROLLGATE_HEARTBEAT_FILE": "/tmp/worker.heartbeat"}  # noqa: S108 (tmpfs)
    for key, value in inside.items():
        args += ["--env", f"{key}={value}"]
    subprocess.run([*args, image, "python", "-m", "app", role], check=True, capture_output=True)

    def logs() -> str:
        result = subprocess.run(
            ["docker", "logs", "--tail", "50", name], capture_output=True, check=False
        )
        return (result.stdout + result.stderr).decode("utf-8", "replace")

    def stop() -> None:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)

    app._logs.append(logs)
    app._stop.append(stop)


def _start_process(app: RunningApp, role: str, env: Mapping[str, str], log_path: Path) -> None:
    full = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", role],
            cwd=REPO_ROOT,
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop() -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    app._logs.append(lambda: log_path.read_text(errors="replace"))
    app._stop.append(stop)
