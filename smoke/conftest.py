"""The smoke suite's options, session fixtures and its JSON / Markdown summary.

Run it as ``pytest smoke --smoke-...`` or through ``rollgate smoke``
(``smoke.run.run_smoke``). Pre-deploy checks share one prepared database
(``prepared``); post-deploy checks (``--smoke-post-deploy``) read the stack's
outputs instead and the pre-deploy ones are skipped, and the other way round.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from smoke.apps import MAX_RECEIVE, REGION, RunningApp, app_env, start_app, wait_until
from smoke.prepare import Prepared, prepare
from smoke.summary import SUMMARY_KEY, Summary, write_summaries

REPO_ROOT = Path(__file__).resolve().parents[1]

# Loopback only, and no reaper container: the suite cleans up after itself.
os.environ.setdefault("TC_HOST", "127.0.0.1")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", REGION)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("smoke", "Rollgate smoke suite")
    add = group.addoption
    add("--smoke-migrations", type=Path, default=REPO_ROOT / "db/migrations")
    add("--smoke-schema", type=Path, default=REPO_ROOT / "db/schema.sql")
    add("--smoke-backend", default="auto", choices=("auto", "docker", "embedded"))
    add("--smoke-image", default=None, help="Postgres image for the docker backend")
    add("--smoke-snapshot", default=None)
    add("--smoke-store", default=None)
    add("--smoke-aws-endpoint-url", default=None, help="SQS endpoint (default: moto on loopback)")
    add("--smoke-app-image", default=None, help="the release's app image (default: processes)")
    add("--smoke-previous-app-image", default=None, help="the previous release's app image")
    add("--smoke-sample-size", default="25MB")
    add("--smoke-from-version", type=int, default=None)
    add("--smoke-lock-budget", type=float, default=5.0, help="seconds writers may be blocked")
    add("--smoke-ready-timeout", type=float, default=60.0)
    add("--smoke-dlq-timeout", type=float, default=45.0)
    add("--smoke-no-redrive", action="store_true", help="queue without a redrive policy")
    add("--smoke-output-dir", type=Path, default=Path("smoke-report"))
    add("--smoke-post-deploy", action="store_true")
    add("--smoke-stack-outputs", default=None, help="`pulumi stack output --json` file, or -")
    add("--smoke-ca-bundle", type=Path, default=None)
    add(
        "--smoke-database",
        default=None,
        help="start from this database on the server the gate hands over (see smoke.run)",
    )
    add("--smoke-start-checksums", type=Path, default=None, help="the start database's checksums")
    add(
        "--smoke-reversibility-proven-by",
        default=None,
        help="the caller proves the revert (say how): no clone, the check is skipped",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "post_deploy: checks the live stack (--smoke-post-deploy)")
    config.stash[SUMMARY_KEY] = Summary(post_deploy=bool(config.getoption("--smoke-post-deploy")))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Pre-deploy and post-deploy checks never run together: deselect the other kind."""
    post = bool(config.getoption("--smoke-post-deploy"))
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        is_post = item.get_closest_marker("post_deploy") is not None
        (keep if is_post == post else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    summary: Summary = item.config.stash[SUMMARY_KEY]
    summary.record(report)
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    summary: Summary = session.config.stash[SUMMARY_KEY]
    write_summaries(summary, session.config.getoption("--smoke-output-dir"), int(exitstatus))


def smoke_option(config: pytest.Config, name: str) -> Any:
    return config.getoption(f"--smoke-{name}")


@pytest.fixture(scope="session")
def summary(pytestconfig: pytest.Config) -> Summary:
    found: Summary = pytestconfig.stash[SUMMARY_KEY]
    return found


@pytest.fixture(scope="session")
def lock_budget(pytestconfig: pytest.Config) -> float:
    return float(smoke_option(pytestconfig, "lock-budget"))


@pytest.fixture(scope="session")
def prepared(pytestconfig: pytest.Config, summary: Summary) -> Iterator[Prepared]:
    """The throwaway database: starting point built, pending migrations applied."""
    result = prepare(
        migrations_dir=smoke_option(pytestconfig, "migrations"),
        backend=smoke_option(pytestconfig, "backend"),
        image=smoke_option(pytestconfig, "image"),
        sample_size=smoke_option(pytestconfig, "sample-size"),
        from_version=smoke_option(pytestconfig, "from-version"),
        lock_budget=smoke_option(pytestconfig, "lock-budget"),
        progress=lambda message: print(f"smoke: {message}", file=sys.stderr),
        snapshot=smoke_option(pytestconfig, "snapshot"),
        store=smoke_option(pytestconfig, "store"),
        aws_endpoint_url=smoke_option(pytestconfig, "aws-endpoint-url"),
        database=smoke_option(pytestconfig, "database"),
        start_checksums_file=smoke_option(pytestconfig, "start-checksums"),
        reversibility_proven_by=smoke_option(pytestconfig, "reversibility-proven-by"),
    )
    summary.prepared = result.to_dict()
    summary.locks = [m.to_dict() for m in result.locks]
    try:
        yield result
    finally:
        result.close()


@pytest.fixture(scope="session")
def sqs_endpoint(pytestconfig: pytest.Config) -> Iterator[str]:
    """The SQS endpoint: ``--smoke-aws-endpoint-url``, else moto on 127.0.0.1."""
    given = smoke_option(pytestconfig, "aws-endpoint-url")
    if given:
        yield given
        return
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class Queues:
    url: str
    dlq_url: str
    client: Any

    def depth(self, url: str) -> int:
        attributes = self.client.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )


def make_queues(endpoint: str, *, redrive: bool) -> Queues:
    """A task queue and its DLQ, shaped like infra's (redrive after MAX_RECEIVE receives)."""
    client = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint)
    name = f"smoke-tasks-{secrets.token_hex(4)}"
    dlq_url = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    attributes = {"VisibilityTimeout": "30"}
    if redrive:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE)}
        )
    url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return Queues(url, dlq_url, client)


@dataclass
class AppUnderTest:
    """One release of the app (``current`` or ``previous``) running on the migrated database."""

    release: str
    app: RunningApp
    queues: Queues
    dsn: str
    ready: bool
    readiness: Any
    dlq_timeout: float


@pytest.fixture(scope="session", params=["current", "previous"])
def app_under_test(
    request: pytest.FixtureRequest,
    prepared: Prepared,
    sqs_endpoint: str,
    summary: Summary,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppUnderTest]:
    """The release's app (or the previous release's) against the migrated schema."""
    config = request.config
    release = str(request.param)
    if release == "current":
        image = smoke_option(config, "app-image")
    else:
        image = smoke_option(config, "previous-app-image")
        if not image:
            summary.n_minus_1 = {"checked": False, "reason": "no --previous-app-image given"}
            pytest.skip("no --previous-app-image: N-1 compatibility not checked")
    if image and prepared.docker_absent:
        summary.notes.append(f"Docker is absent: {image} ran as processes from this checkout")
        image = None
    summary.app_runner[release] = {"kind": "container" if image else "process", "image": image}
    if not image:
        summary.notes.append(
            f"{release} app ran as processes (python -m app web|worker), not as a container"
        )
    queues = make_queues(sqs_endpoint, redrive=not smoke_option(config, "no-redrive"))
    scratch = tmp_path_factory.mktemp(f"app-{release}")
    # The app connects as the owner role here; production's app role is DML-only.
    env = app_env(prepared.dsn, queues.url, queues.dlq_url, sqs_endpoint, scratch)
    app = start_app(image, env, scratch, release)
    timeout = float(smoke_option(config, "ready-timeout"))
    last: list[Any] = [None]

    def ready() -> bool:
        from smoke.apps import http_json

        try:
            status, body = http_json(app.url + "/readyz", timeout=3)
        except OSError as exc:
            last[0] = f"no answer ({type(exc).__name__})"
            return False
        last[0] = {"status": status, "body": body}
        return status == 200

    is_ready = bool(wait_until(ready, timeout, interval=0.5))
    try:
        yield AppUnderTest(
            release,
            app,
            queues,
            prepared.dsn,
            is_ready,
            {"ready": is_ready, "timeout_seconds": timeout, "last_answer": last[0]},
            float(smoke_option(config, "dlq-timeout")),
        )
    finally:
        app.stop()
