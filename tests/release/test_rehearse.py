"""``rollgate rehearse`` end to end, and the scenarios it plays."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.progress import silent
from db.migrations import load_migrations
from db.roles import READER_GROUP
from db.runner import MigrationRunner
from release import apps, standins
from release.apps import DEFAULT_APP_IMAGE
from release.rehearse import (
    AUDIT_ROLE,
    RehearsalOptions,
    TimelineStep,
    _post_deploy,
    _Timeline,
    _World,
    rehearse,
)
from release.scenarios import (
    HEALTHY,
    load_scenario,
    materialize,
    release_n_version,
    scenario_names,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", scenario_names())
def test_every_scenario_is_a_loadable_migration_set(name, tmp_path) -> None:
    scenario = load_scenario(name)
    migrations = load_migrations(materialize(scenario, tmp_path / name))
    assert migrations[-1].version == release_n_version() + 1
    assert scenario.expect in ("go", "no-go")


def test_the_broken_scenarios_the_issue_names_exist() -> None:
    assert {
        "destructive-down",
        "lock-past-budget",
        "app-not-ready",
        "incompatible-schema",
    } <= set(scenario_names())


@pytest.mark.slow
def test_a_broken_release_ends_in_no_go_with_nothing_rolled_out(tmp_path) -> None:
    report = rehearse(
        RehearsalOptions(
            size="1MB",
            scenario="destructive-down",
            report_dir=tmp_path / "r",
            app_runner="processes",
        )
    )
    assert report.gate_verdict == "no-go"
    assert report.outcome == "passed"  # the scenario expects no-go
    rolled = report.proof["nothing_rolled_out"]
    assert rolled["ok"] and rolled["schema_version"] == release_n_version()
    assert all(process.endswith(":N") for process in rolled["processes"])
    assert "rollback run" not in " ".join(s.name for s in report.steps)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("runner", "size", "runs_as"),
    [
        pytest.param("processes", "10MB", "processes", id="processes"),
        pytest.param(
            "image",
            "5MB",
            f"container {DEFAULT_APP_IMAGE}",
            id="image",
            marks=pytest.mark.docker,
        ),
    ],
)
def test_rehearse_end_to_end_restores_with_rpo_0_and_every_task_accounted_for(
    tmp_path, runner, size, runs_as
) -> None:
    """The main job, through the CLI: deploy, gate, roll out, incident, rollback, proof."""
    report_dir = tmp_path / "report"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rollgate",
            "rehearse",
            "--size",
            size,
            "--app-runner",
            runner,
            "--report-dir",
            str(report_dir),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    timeline = json.loads((report_dir / "timeline.json").read_text())
    names = [s["name"] for s in timeline["steps"]]
    assert "gate N+1" in names and "rollback run: plan, confirm, run" in names
    rollback = next(s for s in timeline["steps"] if s["name"].startswith("rollback run"))
    assert rollback["details"]["plan"]["path"] == "restore"
    proof = timeline["proof"]
    assert proof["rpo"] == "RPO 0"
    assert proof["replay"]["rpo_zero"] is True and proof["replay"]["rows_replayed"] > 0
    assert proof["tasks"]["lost"] == 0
    assert proof["tasks"]["present"] == proof["tasks"]["accepted"] > 0
    assert proof["webhooks"]["present"] == proof["webhooks"]["accepted"]
    assert proof["tables_changed_unexpectedly"] == []
    assert proof["recovery_seconds"] <= proof["rto_seconds"]
    # The post-deploy suite ran against the stand-in stack (TLS, the audit role) and passed.
    post_deploy = next(s for s in timeline["steps"] if s["name"] == "post-deploy smoke")
    assert post_deploy["status"] == "passed", post_deploy["summary"]
    assert post_deploy["details"]["suite"]["passed"] == 4
    html = (report_dir / "report.html").read_text()
    assert html.count("<svg") >= 2 and "Recovery time against the budget" in html
    assert (report_dir / "gate" / "gate-report.json").is_file()
    assert (report_dir / "logs" / "rehearsal.log").is_file()
    assert any(p.name.startswith("app-worker-N+1") for p in (report_dir / "logs").iterdir())
    # How the app ran, said in the timeline, the text output and the HTML.
    assert timeline["app_runner"]["runs_as"] == runs_as
    assert f"app: {runs_as}" in result.stdout and f"The app ran as {runs_as}" in html
    gate = json.loads((report_dir / "gate" / "gate-report.json").read_text())
    rehearsed = next(s for s in gate["steps"] if s["name"] == "rehearse")["details"]
    assert {r["runs_as"] for r in rehearsed["apps"]["runs_as"].values()} == {runs_as}
    if runner == "image":
        # ECS and the release records name the image that ran; the smoke suite's N-1
        # checks ran it too instead of being skipped.
        stand_ins = timeline["steps"][0]["details"]
        assert stand_ins["ecs_images"] == {
            release: {"web": DEFAULT_APP_IMAGE, "worker": DEFAULT_APP_IMAGE}
            for release in ("N", "N+1")
        }
        assert rehearsed["smoke"]["summary"]["n_minus_1"]["checked"] is True


# --- the post-deploy step, on its own -------------------------------------------------------


@pytest.fixture
def n_plus_1_serving(
    production_dsn: str,
    moto_endpoint: str,
    tmp_path: Path,
) -> Iterator[tuple[_World, list[Any]]]:
    """The world as the post-deploy step finds it: N+1 migrated, its web serving."""
    world = _World(tmp_path / "report", endpoint=moto_endpoint, dsn=production_dsn)
    migrations_dir = materialize(load_scenario(HEALTHY), world.report_dir / "work" / "migrations")
    migrations = load_migrations(migrations_dir)
    with MigrationRunner(production_dsn, migrations) as runner:
        runner.migrate()
    world.queues = apps.create_queues(moto_endpoint, f"tasks-{secrets.token_hex(4)}")
    world.certificates = standins.make_certificates(
        world.report_dir / "work" / "tls", ["localhost"]
    )
    world.audit_password = standins.new_password()
    try:
        ready = apps.wait_ready(world.start("web", "N+1"))
        assert ready.ready, ready.reason
        yield world, migrations
    finally:
        world.close()


def _post_deploy_step(world: _World, migrations: list[Any]) -> TimelineStep:
    with _Timeline(silent).step("post-deploy smoke") as step:
        _post_deploy(world, migrations, step)
    return step


def _places_holding(step: TimelineStep, directory: Path, secret: str) -> list[str]:
    """Files under ``directory``, and the step's record (timeline.json, report.html), with it."""
    places = [
        str(path.relative_to(directory))
        for path in sorted(directory.rglob("*"))
        if path.is_file() and secret.encode() in path.read_bytes()
    ]
    if secret in json.dumps(step.to_dict(), default=str):
        places.append("the step's timeline entry")
    return places


@pytest.mark.slow
def test_the_post_deploy_step_passes_on_the_stand_in_stack_as_the_real_audit_role(
    n_plus_1_serving: tuple[_World, list[Any]],
) -> None:
    world, migrations = n_plus_1_serving
    step = _post_deploy_step(world, migrations)
    assert step.status == "passed", step.summary
    suite = step.details["suite"]
    assert suite["exit_code"] == 0 and suite["passed"] == 4, suite
    # The suite's database check ran as a role the project's bootstrap made: a LOGIN
    # member of the reader group, nothing more.
    assert suite["audit_role"]["name"] == AUDIT_ROLE
    with psycopg.connect(world.dsn) as conn:
        row = conn.execute(
            "SELECT r.rolcanlogin, r.rolsuper, pg_has_role(r.rolname, %s, 'MEMBER') "
            "FROM pg_roles r WHERE r.rolname = %s",
            (READER_GROUP, AUDIT_ROLE),
        ).fetchone()
    assert row == (True, False, True)
    outputs = json.loads(Path(suite["stack_outputs"]).read_text())
    assert outputs["appUrl"].startswith("https://localhost:")
    secret = apps.aws_client("secretsmanager", world.endpoint).get_secret_value(
        SecretId=outputs["dbAuditSecretArn"]
    )
    assert json.loads(secret["SecretString"]) == {
        "username": AUDIT_ROLE,
        "password": world.audit_password,
    }
    # The password lives in the secret only: no stack output, log or report holds it.
    assert _places_holding(step, world.report_dir, world.audit_password) == []


@pytest.mark.slow
def test_the_post_deploy_step_fails_when_the_front_is_not_signed_by_the_trusted_ca(
    n_plus_1_serving: tuple[_World, list[Any]], tmp_path: Path
) -> None:
    world, migrations = n_plus_1_serving
    assert world.certificates is not None
    # The suite is told to trust a CA that did not sign the front's certificate.
    stranger = standins.make_certificates(tmp_path / "stranger", ["localhost"], ca_name="Stranger")
    world.certificates = standins.Certificates(
        ca=stranger.ca, certificate=world.certificates.certificate, key=world.certificates.key
    )
    step = _post_deploy_step(world, migrations)
    assert step.status == "failed", step.summary
    assert step.details["suite"]["exit_code"] == 1
    assert "test_the_app_is_ready_over_tls" in step.summary
    assert "certificate verify failed" in step.summary
    # The other three checks still passed: only the TLS check caught the fault.
    assert step.details["suite"]["passed"] == 3
    assert _places_holding(step, world.report_dir, world.audit_password) == []
