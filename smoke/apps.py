"""The app under test: its image as a container, or ``python -m app`` as processes.

Both run the real web and worker against the throwaway Postgres and an SQS
endpoint (moto on 127.0.0.1). Containers use ``--network host`` with the web
bound to 127.0.0.1, so they reach the host's loopback as ECS tasks reach RDS
and SQS, and run as ECS runs them: read-only root, /tmp a tmpfs, non-root.
The container half (``container_run_args`` and its helpers) is shared with
``release.apps``, which runs the rehearsal's app from its image the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg import conninfo

from db.throwaway.docker import owner_labels
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


def stripe_event(event_id: str, amount: int = 1234) -> bytes:
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
                "amount": amount,
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
    remove_container(name)
    subprocess.run(
        container_run_args(image, role, env, name, detach=True), check=True, capture_output=True
    )

    def logs() -> str:
        result = subprocess.run(
            ["docker", "logs", "--tail", "50", name], capture_output=True, check=False
        )
        return (result.stdout + result.stderr).decode("utf-8", "replace")

    app._logs.append(logs)
    app._stop.append(lambda: remove_container(name))


# --- the app's image as a container, shared with the release layer's rehearsal ---------------

#: The image's own PYTHONPATH (app/Dockerfile): where app/, core/ and infra/ live.
IMAGE_PYTHONPATH = "/srv/rollgate"
#: Where ``container_run_args`` mounts extra modules (read-only), added to PYTHONPATH.
EXTRA_MODULES_DIR = "/opt/rollgate-extra"
#: Where a Unix-socket Postgres (the embedded backend) appears inside the container.
SOCKET_DIR_INSIDE = "/run/rollgate-postgres"
#: Inside the container only /tmp is writable (a tmpfs, as in the task definition).
HEARTBEAT_INSIDE = "/tmp/worker.heartbeat"  # noqa: S108 (the container's own tmpfs)


def app_image_problem(image: str) -> str | None:
    """Why ``image`` cannot run here (no Docker, no engine, not built), or None when it can."""
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30)
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer `docker info` within 30 s"
    if info.returncode != 0:
        return "the Docker engine is not reachable (`docker info` failed)"
    inspect = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, check=False, timeout=30
    )
    if inspect.returncode != 0:
        return f"the image {image} is not present locally"
    return None


def container_dsn(dsn: str) -> tuple[str, dict[Path, str]]:
    """``dsn`` as the container reaches it, and the mounts that takes.

    With ``--network host`` a TCP address on the host's loopback works as is. A
    Unix socket (the embedded backend listens on nothing else) sits in a data
    directory the container's non-root user may not enter, so the socket file
    alone is mounted at ``SOCKET_DIR_INSIDE`` and the DSN points there.
    """
    params = conninfo.conninfo_to_dict(dsn)
    host = str(params.get("host") or "")
    if not host.startswith("/"):
        return dsn, {}
    port = str(params.get("port") or "5432")
    socket_file = f".s.PGSQL.{port}"
    inside = conninfo.make_conninfo(dsn, host=SOCKET_DIR_INSIDE)
    return inside, {Path(host) / socket_file: f"{SOCKET_DIR_INSIDE}/{socket_file}"}


def module_mounts(modules: Sequence[str]) -> dict[Path, str]:
    """Single-file modules of this checkout, mounted where ``EXTRA_MODULES_DIR`` finds them.

    ``release.scenarios.incident`` becomes
    ``/opt/rollgate-extra/release/scenarios/incident.py``: with no ``__init__``
    beside it, ``release`` and ``release.scenarios`` import as namespace
    packages, so only that one file (stdlib imports only) enters the container.
    """
    mounts = {}
    for module in modules:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            raise ValueError(f"{module} is not a single-file module of this checkout")
        mounts[Path(spec.origin)] = f"{EXTRA_MODULES_DIR}/{module.replace('.', '/')}.py"
    return mounts


def container_run_args(
    image: str,
    role: str,
    env: Mapping[str, str],
    name: str,
    *,
    detach: bool = False,
    auto_remove: bool = False,
    modules: Sequence[str] = (),
) -> list[str]:
    """``docker run`` for the app's ``role`` from ``image``, as ECS runs it, on the host's loopback.

    ``--network host`` (the web binds 127.0.0.1, ``ROLLGATE_BIND_HOST``), a
    read-only root with /tmp a tmpfs, the image's non-root user, ``--init`` so
    SIGTERM reaches the app; labelled as this process's throwaway
    (``db.throwaway.docker.owner_labels``: reaped when its owner is gone, found
    by a test session's leftover check). ``modules`` are mounted read-only
    (``module_mounts``); the heartbeat file moves into /tmp and a Unix-socket
    DSN to its mounted socket (``container_dsn``).
    """
    dsn, mounts = container_dsn(env["DATABASE_URL"]) if "DATABASE_URL" in env else ("", {})
    inside = {**env, "ROLLGATE_HEARTBEAT_FILE": HEARTBEAT_INSIDE}
    if dsn:
        inside["DATABASE_URL"] = dsn
    if modules:
        mounts.update(module_mounts(modules))
        inside["PYTHONPATH"] = f"{IMAGE_PYTHONPATH}:{EXTRA_MODULES_DIR}"
    args = ["docker", "run", "--name", name, "--network", "host"]
    if detach:
        args.append("--detach")
    if auto_remove:
        args.append("--rm")
    args += ["--read-only", "--tmpfs", "/tmp", "--init"]  # noqa: S108 (as the task definition)
    for key, value in owner_labels().items():
        args += ["--label", f"{key}={value}"]
    for source, target in mounts.items():
        args += ["--mount", f"type=bind,source={source},target={target},readonly"]
    for key, value in inside.items():
        args += ["--env", f"{key}={value}"]
    return [*args, image, "python", "-m", "app", role]


def remove_container(name: str, timeout: float = 30) -> None:
    """Remove container ``name`` (running or not) and wait until it is gone."""
    subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)
    # `docker run --rm` may be removing it already (rm then fails): wait for that too.
    wait_until(lambda: not container_exists(name), timeout)


def container_exists(name: str) -> bool:
    result = subprocess.run(
        ["docker", "container", "inspect", name], capture_output=True, check=False
    )
    return result.returncode == 0


def spawn_app_process(
    role: str, env: Mapping[str, str], log_path: Path, *, append: bool = False
) -> subprocess.Popen[bytes]:
    """``python -m app role`` from this checkout, as the image runs it; output to ``log_path``."""
    full = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}
    with log_path.open("ab" if append else "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "app", role],
            cwd=REPO_ROOT,
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _start_process(app: RunningApp, role: str, env: Mapping[str, str], log_path: Path) -> None:
    process = spawn_app_process(role, env, log_path)

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
