"""``rollgate rehearse`` end to end, and the scenarios it plays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from db.migrations import load_migrations
from release.apps import DEFAULT_APP_IMAGE
from release.rehearse import RehearsalOptions, rehearse
from release.scenarios import load_scenario, materialize, release_n_version, scenario_names

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
