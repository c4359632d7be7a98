"""Leftover checks see only their own test session's throwaway servers.

Each test starts a real server under a *different* session id, the way a
second ``scripts/run-tests`` on the same machine would, and asks the leftover
check of another session about it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import CannotRun
from db.throwaway import start_throwaway
from db.throwaway.embedded import reap_abandoned
from db.throwaway.session import (
    SESSION_ENV,
    current_session,
    embedded_directory_name,
    leftovers,
    session_of_directory,
)

ROOT = Path(__file__).resolve().parents[2]


def check_leftovers(session: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """The leftover check exactly as scripts/run-tests runs it."""
    return subprocess.run(
        [sys.executable, "-m", "db.throwaway.session", "leftovers", session, *extra],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )


def test_another_sessions_embedded_server_is_not_this_sessions_leftover(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SESSION_ENV, "othersession1")
    with start_throwaway("embedded") as server:
        datadir = server.datadir  # type: ignore[attr-defined]
        assert session_of_directory(datadir.name) == "othersession1"

        assert leftovers("mysession1", docker=False) == []
        assert check_leftovers("mysession1", "--no-docker").returncode == 0
        # The other session's own check does see it, while it runs.
        assert leftovers("othersession1", docker=False) == [str(datadir)]
        found = check_leftovers("othersession1", "--no-docker")
        assert found.returncode == 1 and str(datadir) in found.stderr
    assert leftovers("othersession1", docker=False) == []


@pytest.mark.docker
def test_another_sessions_container_is_not_this_sessions_leftover(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SESSION_ENV, "othersession2")
    with start_throwaway("docker") as server:
        name = server.container_name  # type: ignore[attr-defined]
        assert leftovers("mysession2") == []
        assert leftovers("othersession2") == [f"container {name}"]
        assert check_leftovers("mysession2").returncode == 0
    assert leftovers("othersession2") == []


def test_session_ids_are_read_checked_and_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SESSION_ENV, raising=False)
    assert current_session() is None
    monkeypatch.setenv(SESSION_ENV, "3fa9c01b22de")
    assert current_session() == "3fa9c01b22de"
    monkeypatch.setenv(SESSION_ENV, "../../etc")
    with pytest.raises(CannotRun, match="not a session id"):
        current_session()

    assert session_of_directory(embedded_directory_name(42, "ab12", "s1")) == "s1"
    assert session_of_directory(embedded_directory_name(42, "ab12", None)) is None
    assert session_of_directory("unrelated") is None


def test_the_reaper_still_knows_session_directories(tmp_path: Path) -> None:
    # A session-labelled directory whose owner is gone is reaped like any other.
    dead_pid = 2**22 + 12345  # above pid_max on Linux: no such process
    abandoned = tmp_path / embedded_directory_name(dead_pid, "ab12", "gone1")
    abandoned.mkdir()
    assert reap_abandoned(tmp_path) == [abandoned]
    assert not abandoned.exists()
