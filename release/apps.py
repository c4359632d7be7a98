"""The app as its image or as processes: start each role, probe it, drive traffic.

The gate and the rehearsal run the app's roles (``python -m app web|worker``)
one at a time, so a deploy can roll web and worker separately, with each
role's output in a log file:

* **image** (``AppContainer``): the app image as a container per role, run as
  ``smoke.apps.container_run_args`` runs it (host loopback, read-only root,
  non-root), ``docker run`` in the foreground so the log fills as it runs;
* **processes** (``AppProcess``): ``python -m app <role>`` from this checkout,
  when Docker or the image is absent.

``choose_app_runner`` picks one (``auto``, ``image``, ``processes``) and says
why. Nothing here imports ``app``: the roles are the interface, as in production.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import CannotRun, ToolUnavailable
from smoke.apps import (
    app_image_problem,
    container_exists,
    container_run_args,
    remove_container,
    spawn_app_process,
    stripe_event,
    stripe_signature,
    wait_until,
)

REPO = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
#: A fixed, local-only signing secret: the sandbox's web process and traffic share it.
WEBHOOK_SECRET = "whsec_rehearsal_" + "0" * 20
#: The sandbox queue moves a message to its DLQ after this many receives.
MAX_RECEIVE = 3
#: An env var the app ignores; it marks which release a process plays (same code, N or N+1).
RELEASE_MARKER = "ROLLGATE_RELEASE"
#: How the app runs (``--app-runner``): ``auto`` is the image when it can run here.
AUTO, IMAGE, PROCESSES = "auto", "image", "processes"
APP_RUNNERS = (AUTO, IMAGE, PROCESSES)
#: What ``bash app/image/build.sh`` builds (its ``ROLLGATE_APP_IMAGE`` default).
DEFAULT_APP_IMAGE = "rollgate/app:dev"
BUILD_COMMAND = "bash app/image/build.sh"
#: Every app container this module starts is named so; ``docker ps`` tells whose it is.
CONTAINER_PREFIX = "rollgate-app-"


@contextmanager
def local_moto() -> Iterator[str]:
    """moto's server on 127.0.0.1 (a free port); yields its endpoint URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "rehearsal"),
        ("AWS_SECRET_ACCESS_KEY", "rehearsal"),
        ("AWS_DEFAULT_REGION", REGION),
    ):
        os.environ.setdefault(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def aws_client(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(service, region_name=REGION, endpoint_url=endpoint)


@dataclass(frozen=True)
class Queues:
    url: str
    dlq_url: str


def create_queues(endpoint: str, name: str, max_receive: int = MAX_RECEIVE) -> Queues:
    """A task queue and its DLQ (redrive after ``max_receive`` receives)."""
    client = aws_client("sqs", endpoint)
    dlq_url = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    url = client.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "30",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)}
            ),
        },
    )["QueueUrl"]
    return Queues(str(url), str(dlq_url))


def queue_depth(endpoint: str, url: str) -> int:
    """Visible plus in-flight messages on ``url``."""
    attributes = aws_client("sqs", endpoint).get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def app_env(
    dsn: str, queues: Queues, endpoint: str, workdir: Path, release: str, **overrides: str
) -> dict[str, str]:
    """The environment a ``python -m app`` process of ``release`` gets in the sandbox."""
    env = {
        "DATABASE_URL": dsn,
        "ROLLGATE_QUEUE_URL": queues.url,
        "ROLLGATE_DLQ_URL": queues.dlq_url,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "rehearsal"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "rehearsal"),
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ROLLGATE_STACK": "rehearsal",
        "ROLLGATE_HEARTBEAT_FILE": str(workdir / f"worker-{release}.heartbeat"),
        "ROLLGATE_MAX_ATTEMPTS": str(MAX_RECEIVE),
        "ROLLGATE_VISIBILITY_TIMEOUT_SECONDS": "30",
        "ROLLGATE_RETRY_BASE_SECONDS": "0",
        "ROLLGATE_POLL_WAIT_SECONDS": "1",
        "ROLLGATE_STOP_GRACE_SECONDS": "10",
        "ROLLGATE_RELAY_INTERVAL_SECONDS": "0.2",
        "ROLLGATE_BIND_HOST": "127.0.0.1",
        RELEASE_MARKER: release,
    }
    env.update(overrides)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class AppProcess:
    """One running ``python -m app <role>`` process and its log file."""

    role: str
    release: str
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 5) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return []

    def outcomes(self) -> dict[str, int]:
        """Task outcomes the worker logged so far (``succeeded``, ``retry``, ``failed``, ...)."""
        counts: dict[str, int] = {}
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return counts
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and isinstance(event.get("outcome"), str):
                counts[event["outcome"]] = counts.get(event["outcome"], 0) + 1
        return counts

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM (the worker finishes or releases its task), then SIGKILL after ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(10)


@dataclass
class AppContainer(AppProcess):
    """One role of the app image as a container; ``process`` is its ``docker run`` client.

    The client runs in the foreground with the log file as its output, so the
    log, ``alive()`` and the exit code read as a process's do.
    """

    name: str = ""
    image: str = ""

    def stop(self, timeout: float = 20) -> int:
        """``docker stop`` (SIGTERM, SIGKILL after ``timeout``), then remove the container."""
        try:
            if self.process.poll() is None:
                subprocess.run(
                    ["docker", "stop", "--time", str(int(timeout)), self.name],
                    capture_output=True,
                    check=False,
                    timeout=timeout + 30,
                )
            try:
                return self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()  # the client only; the container is removed below
                return self.process.wait(10)
        finally:
            remove_container(self.name)


def start_app(role: str, env: Mapping[str, str], log_dir: Path, release: str) -> AppProcess:
    """Start ``python -m app role`` with ``env``; its output goes to a log in ``log_dir``."""
    log_path, port, env = _prepare(role, env, log_dir, release)
    # Appended: a release restarted in the rehearsal keeps one log per role.
    process = spawn_app_process(role, env, log_path, append=True)
    return AppProcess(role, release, process, log_path, port)


def start_container(
    image: str,
    role: str,
    env: Mapping[str, str],
    log_dir: Path,
    release: str,
    *,
    modules: Sequence[str] = (),
) -> AppContainer:
    """Start ``role`` from ``image`` as a container (``smoke.apps.container_run_args``).

    ``modules``: single-file modules of this checkout the role needs and the
    image lacks (mounted read-only, see ``smoke.apps.module_mounts``).
    """
    log_path, port, env = _prepare(role, env, log_dir, release)
    slug = re.sub(r"[^a-zA-Z0-9_.-]", "", release.replace("+", "plus"))
    name = f"{CONTAINER_PREFIX}{role}-{slug}-{os.getpid()}-{secrets.token_hex(3)}"
    # auto_remove: a container that exits on its own goes too; stop() removes it either way.
    args = container_run_args(image, role, env, name, auto_remove=True, modules=modules)
    with log_path.open("ab") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    # Until the engine has created it, `docker stop` and `docker rm` would miss it.
    wait_until(lambda: process.poll() is not None or container_exists(name), 60)
    return AppContainer(role, release, process, log_path, port, name=name, image=image)


def _prepare(
    role: str, env: Mapping[str, str], log_dir: Path, release: str
) -> tuple[Path, int | None, dict[str, str]]:
    """The role's log file, its port (web only) and its environment with ``PORT``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"app-{role}-{release}.log"
    port = free_port() if role == "web" else None
    return log_path, port, {**env, **({"PORT": str(port)} if port else {})}


def reap_abandoned_containers() -> list[str]:
    """Remove throwaway containers (app or Postgres) whose owning process is gone."""
    from db.throwaway.docker import reap_abandoned

    try:
        return reap_abandoned()
    except ToolUnavailable:
        return []  # no docker-py client here: `docker rm` in stop() is all there is


@dataclass(frozen=True)
class AppRunner:
    """How the app runs here: ``image`` (a container per role) or ``processes``, and why."""

    kind: str
    image: str | None
    reason: str

    @property
    def description(self) -> str:
        """``container rollgate/app:dev`` or ``processes``, for reports."""
        return f"container {self.image}" if self.kind == IMAGE else "processes"

    def start(
        self,
        role: str,
        env: Mapping[str, str],
        log_dir: Path,
        release: str,
        *,
        modules: Sequence[str] = (),
    ) -> AppProcess:
        """Start ``role``; ``modules`` matter to a container only (a process has the checkout)."""
        if self.kind == IMAGE:
            assert self.image is not None
            return start_container(self.image, role, env, log_dir, release, modules=modules)
        return start_app(role, env, log_dir, release)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "image": self.image,
            "runs_as": self.description,
            "reason": self.reason,
        }


def choose_app_runner(requested: str, image: str | None) -> AppRunner:
    """``auto``: the image when Docker answers and ``image`` is present locally, else processes.

    ``image`` raises ``CannotRun`` when it cannot run here; ``processes`` never
    looks at Docker.
    """
    if requested not in APP_RUNNERS:
        raise CannotRun(f"unknown app runner {requested!r}: choose {', '.join(APP_RUNNERS)}")
    if requested == PROCESSES:
        return AppRunner(PROCESSES, None, "--app-runner processes")
    if not image:
        if requested == IMAGE:
            raise CannotRun("--app-runner image needs an image: pass --app-image IMAGE")
        return AppRunner(PROCESSES, None, "no app image given")
    problem = app_image_problem(image)
    if problem is None:
        return AppRunner(IMAGE, image, f"Docker answers and {image} is present locally")
    if requested == IMAGE:
        raise CannotRun(
            f"cannot run the app as its image: {problem}; build it with `{BUILD_COMMAND}` "
            "(with Docker running) or use --app-runner processes"
        )
    return AppRunner(PROCESSES, None, f"{problem}, so the app runs as processes")


def http(
    method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """One loopback HTTP request; (status, JSON body or {}); status 0 when nobody answers."""
    request = urllib.request.Request(  # noqa: S310 (loopback URLs built here)
        url,
        data=body,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status), _json(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), _json(error.read())
    except OSError:
        return 0, {}


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {"value": value}


@dataclass(frozen=True)
class Readiness:
    ready: bool
    status: int
    body: dict[str, Any]
    seconds: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "status": self.status,
            "checks": self.body.get("checks", {}),
            "seconds": round(self.seconds, 2),
            "reason": self.reason,
        }


def wait_ready(app: AppProcess, timeout: float = 30.0) -> Readiness:
    """Poll ``/readyz`` until 200, the process dies, or ``timeout`` (then: not ready, and why)."""
    started = time.monotonic()
    status, body = 0, dict[str, Any]()
    while time.monotonic() - started < timeout:
        if not app.alive():
            return Readiness(
                False,
                0,
                {},
                time.monotonic() - started,
                f"{app.role} ({app.release}) exited {app.process.returncode}: "
                + " | ".join(app.log_tail(3)),
            )
        status, body = http("GET", app.url + "/readyz")
        if status == 200:
            return Readiness(True, 200, body, time.monotonic() - started, "ready")
        time.sleep(0.25)
    failing = [
        f"{name}: {check.get('message', 'not ok')}"
        for name, check in body.get("checks", {}).items()
        if isinstance(check, dict) and not check.get("ok")
    ]
    return Readiness(
        False,
        status,
        body,
        time.monotonic() - started,
        f"/readyz answered {status or 'nothing'} for {timeout:.0f}s"
        + (f" ({'; '.join(failing)})" if failing else ""),
    )


def post_task(base_url: str, payload: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    return http(
        "POST",
        base_url + "/tasks",
        json.dumps({"payload": dict(payload)}).encode(),
        {"Idempotency-Key": secrets.token_hex(16)},
    )


def post_webhook(base_url: str, event_id: str, amount: int) -> tuple[int, dict[str, Any]]:
    payload = stripe_event(event_id, amount)
    return http(
        "POST",
        base_url + "/webhooks/stripe",
        payload,
        {"Stripe-Signature": stripe_signature(payload, WEBHOOK_SECRET)},
    )


def smoke_requests(base_url: str) -> list[str]:
    """The app's basic paths against whatever schema it runs on; each failure, described."""
    problems = []
    status, body = post_task(base_url, {"rehearsal": "smoke"})
    if status not in (200, 201):
        problems.append(f"POST /tasks answered {status}: {body.get('detail', body)}")
    status, body = post_webhook(base_url, "evt_smoke" + secrets.token_hex(6), 100)
    if status != 200:
        problems.append(f"POST /webhooks/stripe answered {status}: {body.get('detail', body)}")
    status, body = http("GET", base_url + "/roi?from=2026-01-01&to=2026-01-31")
    if status != 200:
        problems.append(f"GET /roi answered {status}: {body.get('detail', body)}")
    return problems


class Traffic:
    """Background traffic: tasks and signed Stripe webhooks against whichever web is current.

    ``target`` is read on every request, so a deploy or a rollback moves the
    traffic with it (as the ALB would). Every accepted task id is kept, so the
    rehearsal can account for each one at the end.
    """

    def __init__(self, target: str, *, interval: float = 0.1) -> None:
        self.target = target
        self.interval = interval
        self.task_ids: list[int] = []
        self.webhooks: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rehearsal-traffic", daemon=True)
        self._count = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._count += 1
            base = self.target
            if self._count % 3 == 0:
                event_id = f"evt_rehearsal{self._count:06d}"
                status, body = post_webhook(base, event_id, 100 + self._count)
                if status == 200:
                    self.webhooks.append(event_id)
                else:
                    self.errors.append(f"webhook {event_id}: {status} {body.get('detail', '')}")
            else:
                status, body = post_task(base, {"n": self._count})
                if status in (200, 201) and "id" in body:
                    self.task_ids.append(int(body["id"]))
                else:
                    self.errors.append(f"task {self._count}: {status} {body.get('detail', '')}")
            self._stop.wait(self.interval)
