"""``rollgate gate`` as CI runs it: exit codes, the printed gate entry, the job summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.release.conftest import scenario_migrations

REPO = Path(__file__).resolve().parents[2]


def _gate(
    dsn: str, migrations: Path, tmp_path: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "step-summary.md"),
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "rollgate",
            "gate",
            "--dsn",
            dsn,
            "--migrations",
            str(migrations),
            "--store",
            str(tmp_path / "store"),
            "--report-dir",
            str(tmp_path / "report"),
            "--stack",
            "dev",
            *extra,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_no_go_exits_1_prints_the_entry_and_fills_the_job_summary(
    production_dsn, tmp_path
) -> None:
    result = _gate(production_dsn, scenario_migrations("destructive-down", tmp_path), tmp_path)
    assert result.returncode == 1, result.stderr
    assert "gate: NO-GO" in result.stdout
    report = json.loads((tmp_path / "report" / "gate-report.json").read_text())
    assert f"gate entry: {report['entry_sha256']}" in result.stdout
    summary = (tmp_path / "step-summary.md").read_text()
    assert "Rollgate gate: **NO-GO**" in summary and "declared-data-loss" in summary
    assert "gate: static" in result.stderr  # plain progress lines when not on a terminal


def test_json_output_carries_the_verdict_and_exit_code(production_dsn, tmp_path) -> None:
    result = _gate(
        production_dsn, scenario_migrations("destructive-down", tmp_path), tmp_path, "--json"
    )
    document = json.loads(result.stdout)
    assert document["exit_code"] == 1
    assert document["result"]["verdict"] == "no-go"
    assert [s["status"] for s in document["result"]["steps"]][:2] == ["failed", "skipped"]
