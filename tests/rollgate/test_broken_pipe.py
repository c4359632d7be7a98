"""Row s: a reader that goes away (``rollgate db status | true``) ends output quietly.

The pipe's read end is closed before the child starts, so every write the
child makes meets EPIPE: no race with a reader that happens to be fast.
The exit code stays the work's own (see rollgate.error_handler).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.rollgate.conftest import ROOT, UNREACHABLE


def run_into_a_closed_pipe(
    *argv: str, tmp_path: Path, stream: str = "stdout"
) -> subprocess.CompletedProcess[str]:
    """``rollgate ARGV`` with ``stream`` (stdout or stderr) a pipe nobody reads."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: the first write fails with EPIPE
    try:
        return subprocess.run(
            [sys.executable, "-m", "rollgate", *argv],
            stdout=write_end if stream == "stdout" else subprocess.PIPE,
            stderr=write_end if stream == "stderr" else subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)},
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize("as_json", [[], ["--json"]], ids=["human", "json"])
def test_status_into_a_closed_pipe_exits_quietly_with_its_own_code(
    migrated_dsn: str, tmp_path: Path, as_json: list[str]
) -> None:
    result = run_into_a_closed_pipe(
        *as_json, "db", "status", "--dsn", migrated_dsn, tmp_path=tmp_path
    )
    assert result.stderr == ""  # no traceback, no "Exception ignored ... BrokenPipeError"
    assert result.returncode == 0  # the status was healthy; the reader's leaving changes nothing
    assert list(tmp_path.iterdir()) == []  # no crash file


def test_a_failure_into_a_closed_pipe_keeps_its_exit_code(tmp_path: Path) -> None:
    result = run_into_a_closed_pipe(
        "--json", "db", "status", "--dsn", UNREACHABLE, tmp_path=tmp_path
    )
    assert result.returncode == 2 and result.stderr == ""


def test_work_done_before_the_pipe_closed_is_reported_as_done(
    empty_dsn: str, tmp_path: Path
) -> None:
    result = run_into_a_closed_pipe(
        "--json", "db", "migrate", "--dsn", empty_dsn, tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    with psycopg.connect(empty_dsn) as conn:
        tables = conn.execute("SELECT to_regclass('public.customers') IS NOT NULL").fetchone()
    assert tables == (True,)


def test_progress_into_a_closed_stderr_does_not_stop_the_work(
    empty_dsn: str, tmp_path: Path
) -> None:
    # Progress lines meet EPIPE in the middle of migrate.
    result = run_into_a_closed_pipe(
        "db", "migrate", "--dsn", empty_dsn, tmp_path=tmp_path, stream="stderr"
    )
    assert result.returncode == 0
    assert "migrate: 0000 -> 0005" in result.stdout
