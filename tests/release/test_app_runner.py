"""How the rehearsal runs the app: the auto/image/processes choice, and the container runner."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from core.errors import CannotRun
from db.throwaway.session import SESSION_ENV, docker_leftovers
from release import apps
from release.rehearse import INCIDENT_EXECUTOR, INCIDENT_MODULE
from smoke.apps import container_exists

MISSING_IMAGE = "rollgate/no-such-app:never-built"


@pytest.fixture
def no_docker_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A PATH with no docker command on it (a machine without Docker)."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_processes_is_chosen_without_looking_at_docker(no_docker_on_path: None) -> None:
    runner = apps.choose_app_runner("processes", apps.DEFAULT_APP_IMAGE)
    assert (runner.kind, runner.image, runner.description) == ("processes", None, "processes")


def test_auto_without_docker_runs_processes_and_says_why(no_docker_on_path: None) -> None:
    runner = apps.choose_app_runner("auto", apps.DEFAULT_APP_IMAGE)
    assert runner.kind == "processes"
    assert "docker command is not installed" in runner.reason


def test_image_without_docker_cannot_run_and_says_how_to_fix_it(no_docker_on_path: None) -> None:
    with pytest.raises(CannotRun) as raised:
        apps.choose_app_runner("image", apps.DEFAULT_APP_IMAGE)
    message = str(raised.value)
    assert "bash app/image/build.sh" in message and "--app-runner processes" in message


def test_an_unknown_runner_cannot_run() -> None:
    with pytest.raises(CannotRun, match="auto, image, processes"):
        apps.choose_app_runner("kubernetes", apps.DEFAULT_APP_IMAGE)


@pytest.mark.docker
def test_auto_picks_the_image_when_docker_has_it() -> None:
    runner = apps.choose_app_runner("auto", apps.DEFAULT_APP_IMAGE)
    assert (runner.kind, runner.image) == ("image", apps.DEFAULT_APP_IMAGE)
    assert runner.description == f"container {apps.DEFAULT_APP_IMAGE}"


@pytest.mark.docker
def test_a_missing_image_falls_back_under_auto_and_is_refused_under_image() -> None:
    runner = apps.choose_app_runner("auto", MISSING_IMAGE)
    assert runner.kind == "processes"
    assert f"{MISSING_IMAGE} is not present locally" in runner.reason
    with pytest.raises(CannotRun, match=re.escape(apps.BUILD_COMMAND)):
        apps.choose_app_runner("image", MISSING_IMAGE)


def _labels(name: str) -> dict[str, str]:
    result = subprocess.run(
        ["docker", "container", "inspect", "--format", "{{json .Config.Labels}}", name],
        capture_output=True,
        text=True,
        check=True,
    )
    labels: dict[str, str] = json.loads(result.stdout)
    return labels


@pytest.mark.docker
def test_the_container_runner_reads_the_workers_outcomes_and_leaves_nothing_behind(
    production_dsn: str, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Web and worker from the image; the incident module mounted; stop removes both.

    Under a test session the containers carry its label, so the session's leftover
    check (``scripts/run-tests``) would name any that outlived it.
    """
    session = "apprunner" + secrets.token_hex(4)
    monkeypatch.setenv(SESSION_ENV, session)
    runner = apps.choose_app_runner("image", apps.DEFAULT_APP_IMAGE)
    queues = apps.create_queues(moto_endpoint, "runner-test")
    env = apps.app_env(production_dsn, queues, moto_endpoint, tmp_path / "work", "N+1")
    logs = tmp_path / "logs"
    web = runner.start("web", env, logs, "N+1")
    worker = runner.start(
        "worker",
        {**env, "ROLLGATE_EXECUTOR": INCIDENT_EXECUTOR},
        logs,
        "N+1",
        modules=(INCIDENT_MODULE,),
    )
    started = [web, worker]
    try:
        assert all(isinstance(app, apps.AppContainer) for app in started)
        names = [app.name for app in started if isinstance(app, apps.AppContainer)]
        assert all(name.startswith(apps.CONTAINER_PREFIX) for name in names)
        assert _labels(names[0]).get("rollgate.throwaway") == "1"
        assert docker_leftovers(session) == sorted(names)
        ready = apps.wait_ready(web, timeout=60)
        assert ready.ready, ready.reason
        for n in range(3):
            status, _body = apps.post_task(web.url, {"n": n})
            assert status in (200, 201)
        # The incident's executor, from the mounted module, fails every task.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not worker.outcomes().get("retry"):
            time.sleep(0.5)
        assert worker.outcomes().get("retry", 0) >= 1, worker.log_tail(20)
        assert not worker.outcomes().get("succeeded")
        assert worker.log_path == logs / "app-worker-N+1.log"
    finally:
        codes = [app.stop(timeout=10) for app in started]
    assert not any(container_exists(name) for name in names)
    assert docker_leftovers(session) == []
    assert not web.alive() and not worker.alive()
    assert codes[1] == 0, worker.log_tail(10)  # SIGTERM: the worker stopped cleanly
