"""``rollgate smoke`` as a process: pytest's exit code, the JSON envelope, Docker absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from smoke.run import SmokeReport
from tests.smoke.conftest import REPO, Extra

pytestmark = pytest.mark.slow


def test_rollgate_smoke_exits_with_pytests_code_and_reports_json(
    seeded: Callable[[Extra], Path], tmp_path: Path
) -> None:
    migrations = seeded(
        {
            "0006_add_customer_nickname": (
                "ALTER TABLE public.customers ADD COLUMN nickname text;",
                "ALTER TABLE public.customers DROP COLUMN nickname;",
                "SELECT 1;",
            )
        }
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rollgate",
            "--json",
            "--migrations",
            str(migrations),
            "smoke",
            "--backend",
            "embedded",
            "--sample-size",
            "2MB",
            "--output-dir",
            str(tmp_path / "out"),
            "-k",
            "canonical or verify",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 1, result.stderr
    envelope = json.loads(result.stdout)
    assert envelope["ok"] is False and envelope["exit_code"] == 1
    checks = envelope["result"]["summary"]["checks"]
    failed = [k for k, v in checks.items() if v["outcome"] == "failed"]
    assert [k.split("::")[-1] for k in failed] == ["test_catalog_equals_the_canonical_schema"]
    assert Path(envelope["result"]["junit_xml"]).exists()


def test_auto_falls_back_to_embedded_when_docker_is_absent_and_says_so(
    smoke: Callable[..., SmokeReport], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "no-docker-here"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no `docker` to find
    report = smoke(backend="auto", select="canonical")
    assert report.exit_code == 0, report.summary
    assert report.summary["backend"] == "embedded"
    assert report.summary["docker_absent"] is True
    assert (
        "Docker is absent: the embedded Postgres backend was used"
        in report.summary["prepared"]["notes"]
    )
    assert "(Docker absent)" in report.markdown_summary.read_text()
