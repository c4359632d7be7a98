"""The live app's API, probed without writing.

GET endpoints must answer (``/healthz``, ``/readyz``, ``/roi`` with a valid
range) and malformed input must be refused with a 4xx before anything is
written: a POST whose body fails validation, a webhook without a signature,
an inverted ``/roi`` range. A 5xx, or a 2xx to bad input, fails the check.

Beyond that fixed set, Schemathesis reads the app's OpenAPI schema and
generates positive and negative inputs for every GET operation (reads only:
generated POST bodies could be valid and write, so POSTs get only the fixed
malformed cases above); no GET may answer 5xx.

The target is the stack's ``appUrl`` when the outputs carry it. The scheduled
audit task has no route to the public load balancer, so its outputs carry the
cluster, the web service and the container port instead: `find_running_web_task`
asks ECS for one RUNNING task of the web service and its private IPv4 address
(the awsvpc network interface), and the probe goes to ``http://IP:PORT`` inside
the VPC (the web security group accepts the audit's group on that port). A web
service with no running task fails the check; an ECS error leaves it not run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infra import outputs
from release.audit.aws import client
from release.audit.model import CheckResult, Finding, NotRunnable, Status, verdict

#: (method, path, body, expectation): "2xx" must succeed, "4xx" must be refused.
PROBES: tuple[tuple[str, str, bytes | None, str], ...] = (
    ("GET", outputs.APP_HEALTH_PATH, None, "2xx"),
    ("GET", outputs.APP_READY_PATH, None, "2xx"),
    ("GET", "/roi?from=2026-01-01&to=2026-01-07", None, "2xx"),
    ("GET", "/roi?from=2026-01-07&to=2026-01-01", None, "4xx"),
    ("GET", "/roi?from=not-a-date&to=2026-01-01", None, "4xx"),
    ("POST", "/tasks", b'{"payload": [1, 2, 3], "unexpected": true', "4xx"),
    ("POST", "/tasks", b"[]", "4xx"),
    ("POST", "/webhooks/stripe", b'{"type": "charge.succeeded"}', "4xx"),
)


#: What the probe needs, without ``appUrl``, to find a web task inside the VPC.
WEB_TASK_OUTPUTS: tuple[str, ...] = (
    outputs.CLUSTER_NAME,
    outputs.WEB_SERVICE_NAME,
    outputs.WEB_CONTAINER_PORT,
)
#: DescribeTasks takes at most this many tasks per call.
_DESCRIBE_BATCH = 100


@dataclass(frozen=True)
class WebTask:
    """A RUNNING web task and the private address the probe reaches it at."""

    arn: str
    address: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def describe(self) -> str:
        return f"web task {self.arn} at {self.address}:{self.port}, inside the VPC"


def api_check(
    stack: Mapping[str, Any] | None, endpoint_url: str | None, examples: int = 10
) -> CheckResult:
    """The ``api_probe`` check: ``appUrl`` when the stack has one, else a running web task.

    Without ``appUrl`` but with the cluster, the web service and the container port (what
    the scheduled task is given), the probe targets one RUNNING web task's private address.
    """
    app_url = stack.get(outputs.APP_URL) if stack else None
    if app_url or not stack or not any(stack.get(name) for name in WEB_TASK_OUTPUTS):
        return api_probe(app_url, examples=examples)
    missing = [name for name in WEB_TASK_OUTPUTS if not stack.get(name)]
    if missing:
        raise NotRunnable(
            f"no {outputs.APP_URL} in the stack outputs, and no {', '.join(missing)} to find "
            "a web task inside the VPC: give either (infra/audit.py passes the latter)"
        )
    cluster, service = str(stack[outputs.CLUSTER_NAME]), str(stack[outputs.WEB_SERVICE_NAME])
    port = _port(stack[outputs.WEB_CONTAINER_PORT])
    task = find_running_web_task(cluster, service, port, endpoint_url)
    if task is None:
        evidence = (
            f"web service {service} in cluster {cluster} has no RUNNING task, so nothing "
            f"serves the API: see `aws ecs describe-services --cluster {cluster} "
            f"--services {service}` (events, desired count)"
        )
        return CheckResult(
            "api_probe",
            Status.FAILED,
            evidence,
            (Finding("running web task", False, evidence),),
        )
    return probe_web_task(task, examples=examples)


def probe_web_task(task: WebTask, examples: int = 10, timeout: float = 10.0) -> CheckResult:
    """`api_probe` against one web task's address; the report names the task."""
    return api_probe(task.url, timeout=timeout, examples=examples, target=task.describe())


def find_running_web_task(
    cluster: str, service: str, port: int, endpoint_url: str | None
) -> WebTask | None:
    """One RUNNING task of `service` with its private IPv4 address; None when none runs.

    Asks ECS (ListTasks, DescribeTasks) only: nothing connects to the address found.
    Tasks of other services are ignored even if ListTasks returns them (the group a
    service's tasks carry is ``service:<name>``); a healthy task is preferred. Raises
    NotRunnable when ECS cannot be asked, or when running tasks have no awsvpc address.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    ecs = client("ecs", endpoint_url)
    running: list[dict[str, Any]] = []
    try:
        for arns in _task_arn_batches(ecs, cluster, service):
            described = ecs.describe_tasks(cluster=cluster, tasks=arns)
            running += [
                task
                for task in described.get("tasks", [])
                if task.get("lastStatus") == "RUNNING" and task.get("group") == f"service:{service}"
            ]
    except (BotoCoreError, ClientError) as exc:
        raise NotRunnable(
            f"cannot list the tasks of web service {service} in cluster {cluster} "
            f"(ecs:ListTasks, ecs:DescribeTasks): {exc}"
        ) from None
    if not running:
        return None
    running.sort(key=lambda task: (task.get("healthStatus") != "HEALTHY", str(task["taskArn"])))
    for task in running:
        address = _private_ipv4(task)
        if address is not None:
            return WebTask(str(task["taskArn"]), address, port)
    raise NotRunnable(
        f"{len(running)} RUNNING task(s) of web service {service} have no private IPv4 "
        "address (awsvpc network interface): the probe cannot reach them inside the VPC"
    )


def _task_arn_batches(ecs: Any, cluster: str, service: str) -> Iterator[list[str]]:
    """The service's tasks ECS wants running, in DescribeTasks-sized batches."""
    pages = ecs.get_paginator("list_tasks").paginate(
        cluster=cluster, serviceName=service, desiredStatus="RUNNING"
    )
    for page in pages:
        arns: Sequence[str] = page.get("taskArns", [])
        for start in range(0, len(arns), _DESCRIBE_BATCH):
            yield list(arns[start : start + _DESCRIBE_BATCH])


def _private_ipv4(task: Mapping[str, Any]) -> str | None:
    """``privateIPv4Address`` of the task's attached network interface, if valid."""
    for attachment in task.get("attachments", []):
        if attachment.get("type") != "ElasticNetworkInterface":
            continue
        for detail in attachment.get("details", []):
            if detail.get("name") == "privateIPv4Address":
                try:
                    return str(ipaddress.IPv4Address(str(detail.get("value"))))
                except ValueError:
                    return None
    return None


def _port(value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = 0
    if not 0 < port < 65536:
        raise NotRunnable(f"{outputs.WEB_CONTAINER_PORT} {value!r} is not a TCP port")
    return port


def api_probe(
    app_url: str | None,
    timeout: float = 10.0,
    examples: int = 10,
    *,
    target: str | None = None,
) -> CheckResult:
    """Send the fixed probe set to ``app_url``; every answer must be as expected.

    `target` says what ``app_url`` is and how it was found (default: the stack's appUrl);
    the report names it.
    """
    if not app_url:
        raise NotRunnable(f"no {outputs.APP_URL} in the stack outputs: no app to probe")
    if not app_url.startswith(("http://", "https://")):
        raise NotRunnable(f"{outputs.APP_URL} {app_url!r} is not an http(s) URL")
    target = target or f"{outputs.APP_URL} {app_url} from the stack outputs"
    findings = [Finding("probe target", True, target)]
    for method, path, body, expected in PROBES:
        request = urllib.request.Request(  # noqa: S310 (http(s) checked above)
            app_url.rstrip("/") + path,
            data=body,
            method=method,
            headers={"content-type": "application/json"} if body is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
        except (urllib.error.URLError, OSError) as exc:
            raise NotRunnable(f"{target} did not answer {method} {path}: {exc}") from None
        ok = str(status).startswith(expected[0])
        findings.append(Finding(f"{method} {path}", ok, f"answered {status}, expected {expected}"))
    findings += _schemathesis_gets(app_url, examples)
    result = verdict(
        "api_probe",
        findings,
        f"{len(PROBES)} read-only and malformed-input probes answered as expected",
    )
    return dataclasses.replace(result, summary=f"{result.summary} (probed {target})")


def _schemathesis_gets(app_url: str, examples: int) -> list[Finding]:
    """Schema-driven probes of every GET operation; a 5xx is a failed finding."""
    try:
        import schemathesis
    except ImportError:
        return [Finding("schemathesis", True, "not installed: only the fixed probes ran")]
    try:
        schema = schemathesis.openapi.from_url(app_url.rstrip("/") + "/openapi.json")
    except Exception as exc:
        raise NotRunnable(f"cannot read {app_url}/openapi.json: {exc}") from None
    findings = []
    for result in schema.get_all_operations():
        outcome: Any = result
        if not hasattr(outcome, "ok"):  # Err: an operation the schema describes badly
            findings.append(Finding("openapi schema", False, f"invalid operation: {outcome.err()}"))
            continue
        operation = outcome.ok()
        if operation.method.upper() != "GET":
            continue
        server_errors = _server_errors(operation, app_url, examples)
        findings.append(
            Finding(
                f"schemathesis GET {operation.path}",
                not server_errors,
                f"server errors: {'; '.join(server_errors[:3])}"
                if server_errors
                else f"no 5xx in {2 * examples} generated requests at most",
            )
        )
    return findings


def _server_errors(operation: Any, app_url: str, examples: int) -> list[str]:
    """Positive and negative generated requests to one GET operation; the 5xx answers."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation.modes import GenerationMode

    errors: list[str] = []

    def probe_with(mode: Any) -> None:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def probe(case: Any) -> None:
            response = case.call(base_url=app_url.rstrip("/"), timeout=10)
            if response.status_code >= 500:
                errors.append(
                    f"{response.status_code} for {case.formatted_path} {case.query or ''}"
                )

        with contextlib.suppress(Unsatisfiable):  # no inputs: nothing invalid to send
            probe()

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        probe_with(mode)
    return errors
