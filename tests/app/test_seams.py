"""Facts the app and its neighbours must agree on, held together where both can be seen.

* infra's task definitions (the real Pulumi program under mocks, as tests/infra
  runs it) start the app's commands, on the app's port, with every variable the
  app needs, and health-check the app's paths and heartbeat file;
* the app's copy of Rollgate's history-table names equals db.history's (the app
  may not import db).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from app import schema
from app.__main__ import ROLES
from app.settings import DEFAULT_PORT, Settings, load_settings
from app.web import create_app
from db import history
from infra import outputs
from tests.app.conftest import settings_for
from tests.infra.harness import ProgramRun, run_program, stack_config

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*deprecated in favor of.*:DeprecationWarning:pulumi_aws"
)
TASK = "aws:ecs/taskDefinition:TaskDefinition"
QUEUE = "aws:sqs/queue:Queue"


@pytest.fixture(scope="module", params=["dev", "prod"])
def program(request: pytest.FixtureRequest) -> ProgramRun:
    stack: str = request.param
    return run_program(stack_config(stack), stack)


def container(program: ProgramRun, role: str) -> dict[str, Any]:
    [only] = json.loads(program.one(TASK, f"-{role}-task").inputs["containerDefinitions"])
    return only  # type: ignore[no-any-return]


def task_environment(program: ProgramRun, role: str) -> dict[str, str]:
    """What the container's process sees: plain values, and placeholders for secrets."""
    definition = container(program, role)
    env = {item["name"]: str(item["value"]) for item in definition["environment"]}
    # Secrets Manager fills these at start; placeholders of the right shape stand in.
    env |= {item["name"]: "whsec_from_secrets_manager" for item in definition["secrets"]}
    return env


def app_settings(program: ProgramRun, role: str) -> Settings:
    return load_settings(task_environment(program, role), "web" if role == "web" else "worker")


@pytest.mark.parametrize("role", ROLES)
def test_task_definitions_run_the_apps_commands(program: ProgramRun, role: str) -> None:
    command = container(program, role)["command"]
    assert command == ["python", "-m", "app", role]
    assert tuple(command) == getattr(outputs, f"APP_{role.upper()}_COMMAND")


def test_the_web_port_and_health_paths_are_the_apps(program: ProgramRun) -> None:
    web = container(program, "web")
    [mapping] = web["portMappings"]
    port = app_settings(program, "web").port
    assert mapping["containerPort"] == port == DEFAULT_PORT
    assert f"http://127.0.0.1:{port}{outputs.APP_HEALTH_PATH}" in web["healthCheck"]["command"][3]
    target_group = program.one("aws:lb/targetGroup:TargetGroup")
    assert target_group.inputs["healthCheck"]["path"] == outputs.APP_HEALTH_PATH


def test_the_app_serves_the_health_paths_infra_checks() -> None:
    env = {
        "DATABASE_URL": "postgresql://app@127.0.0.1:1/app",
        "ROLLGATE_QUEUE_URL": "http://127.0.0.1:1/000000000000/tasks",
        "ROLLGATE_DLQ_URL": "http://127.0.0.1:1/000000000000/dlq",
        "AWS_DEFAULT_REGION": "us-east-1",
        "STRIPE_WEBHOOK_SECRET": "whsec_seam_test_only",
        "ROLLGATE_STACK": "seam",
    }
    paths = {getattr(route, "path", None) for route in create_app(settings_for(env)).routes}
    assert {outputs.APP_HEALTH_PATH, outputs.APP_READY_PATH} <= paths


def test_the_worker_starts_on_exactly_what_its_task_definition_gives_it(
    program: ProgramRun,
) -> None:
    settings = app_settings(program, "worker")
    worker = container(program, "worker")
    # libpq variables locate the database; user and password arrive as secrets.
    assert settings.database_url == ""
    assert {outputs.SECRET_DB_USER, outputs.SECRET_DB_PASSWORD} <= {
        secret["name"] for secret in worker["secrets"]
    }
    assert settings.stack == program.stack
    assert settings.metric_namespace == outputs.METRIC_NAMESPACE
    # Attempts match the redrive, so a failed task's message reaches the DLQ.
    # The task queue is the one queue that redrives to a DLQ (the audit schedule's
    # dead-letter queue and the DLQ itself do not).
    [queue] = [q for q in program.of_type(QUEUE) if q.inputs.get("redrivePolicy")]
    redrive = json.loads(queue.inputs["redrivePolicy"])
    assert settings.max_attempts == int(redrive["maxReceiveCount"])
    assert settings.visibility_timeout_seconds == int(queue.inputs["visibilityTimeoutSeconds"])
    # The task in hand is released before ECS's SIGKILL.
    assert settings.stop_grace_seconds < worker["stopTimeout"]
    # The health check reads the file the worker touches.
    assert settings.heartbeat_file == outputs.WORKER_HEARTBEAT_FILE
    assert outputs.WORKER_HEARTBEAT_FILE in worker["healthCheck"]["command"][3]


def test_the_web_task_starts_on_what_its_task_definition_gives_it(program: ProgramRun) -> None:
    settings = app_settings(program, "web")
    web = container(program, "web")
    assert settings.database_url == ""
    assert settings.stripe_webhook_secret is not None
    assert outputs.SECRET_STRIPE_WEBHOOK in {secret["name"] for secret in web["secrets"]}
    assert settings.stack == program.stack


def test_history_table_names_match_db_history() -> None:
    assert schema.HISTORY_SCHEMA == history.HISTORY_SCHEMA
    assert schema.HISTORY_TABLE == history.HISTORY_TABLE
    assert f"{schema.HISTORY_SCHEMA}.{schema.HISTORY_TABLE}" == history.HISTORY_QUALIFIED


def test_the_image_puts_the_rds_ca_bundle_where_the_task_definitions_look() -> None:
    """PGSSLROOTCERT (verify-full) points into the directory the Dockerfile copies certs to."""
    from pathlib import Path

    dockerfile = (Path(__file__).resolve().parents[2] / "app" / "Dockerfile").read_text()
    directory = str(Path(outputs.RDS_CA_BUNDLE_PATH).parent)
    assert f"COPY certs/ {directory}/" in dockerfile
