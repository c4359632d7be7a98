"""The image as ECS runs it: non-root, read-only root, /tmp the only writable path,
against the throwaway Postgres in Docker and moto's SQS on the host's loopback."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator

import psycopg
import pytest

from db.migrations import BUNDLED_MIGRATIONS, load_migrations
from db.runner import MigrationRunner
from db.throwaway import ThrowawayPostgres, create_database, drop_database
from infra import outputs
from infra.tasks import worker_health_check
from tests.app.conftest import REPO, Queues, free_port, http_get, http_post, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGE = os.environ.get("ROLLGATE_APP_IMAGE", "rollgate/app:dev")


@pytest.fixture(scope="session")
def app_image() -> str:
    present = subprocess.run(
        ["docker", "image", "inspect", IMAGE], capture_output=True, check=False
    )
    if present.returncode != 0:
        subprocess.run(["bash", str(REPO / "app/image/build.sh")], check=True, timeout=900)
    return IMAGE


@pytest.fixture
def docker_dsn(docker_server: ThrowawayPostgres) -> Iterator[str]:
    name = "app_image_test"
    dsn = create_database(docker_server, name)
    with MigrationRunner(dsn, load_migrations(BUNDLED_MIGRATIONS)) as runner:
        runner.migrate()
    yield dsn
    drop_database(docker_server, name)


@pytest.fixture
def run_container(app_image: str) -> Iterator[Callable[[str, dict[str, str]], str]]:
    names: list[str] = []

    def run(role: str, env: dict[str, str]) -> str:
        name = f"rollgate-app-test-{role}-{os.getpid()}-{len(names)}"
        args = ["docker", "run", "--detach", "--name", name, "--network", "host"]
        # As the task definition runs it: read-only root, /tmp a scratch volume, non-root.
        args += ["--read-only", "--tmpfs", "/tmp", "--init"]  # noqa: S108
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        subprocess.run(
            [*args, app_image, "python", "-m", "app", role], check=True, capture_output=True
        )
        names.append(name)
        return name

    yield run
    for name in names:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)


def test_the_image_serves_health_and_runs_tasks(
    docker_dsn: str, queues: Queues, run_container: Callable[[str, dict[str, str]], str]
) -> None:
    port = free_port()
    env = {
        "DATABASE_URL": docker_dsn,
        "ROLLGATE_QUEUE_URL": queues.url,
        "ROLLGATE_DLQ_URL": queues.dlq_url,
        "AWS_ENDPOINT_URL": queues.endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "STRIPE_WEBHOOK_SECRET": "whsec_image_test_0000000",
        "ROLLGATE_STACK": "image-test",
        "ROLLGATE_POLL_WAIT_SECONDS": "1",
        "ROLLGATE_BIND_HOST": "127.0.0.1",
        "PORT": str(port),
    }
    web = run_container("web", env)
    worker = run_container("worker", env)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return http_get(url + outputs.APP_HEALTH_PATH, timeout=1)[0] == 200
        except OSError:
            return False

    wait_until(answers, 60, "the web container's /healthz")
    status, body = http_get(url + outputs.APP_READY_PATH)
    assert status == 200, body
    status, created = http_post(url + "/tasks", {"payload": {"from": "image"}})
    assert status == 201

    def succeeded() -> bool:
        with psycopg.connect(docker_dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT status FROM execution_tasks WHERE id = %s", (created["id"],)
            ).fetchone()
        return row == ("succeeded",)

    wait_until(succeeded, 60, "the worker container to run the task")
    # infra's container health check, run inside the worker container, passes.
    check = worker_health_check()[1:]
    assert subprocess.run(["docker", "exec", worker, *check], check=False).returncode == 0
    uid = subprocess.run(
        ["docker", "exec", web, "id", "-u"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert uid != "0"
