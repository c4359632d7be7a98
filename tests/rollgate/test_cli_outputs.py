"""Where a command writes is checked before its work, and a bad environment default is a
usage error: exit 2 with a message that names the option, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import CannotRun
from core.paths import writable_directory
from rollback.store import StoreError, open_store
from tests.rollgate.conftest import ROOT, UNREACHABLE, run


def test_a_bad_environment_default_is_a_usage_error_not_a_crash(tmp_path: Path) -> None:
    # The default is read from the environment when the gate's options are parsed; it
    # used to be converted while the parser was built, crashing every command.
    result = subprocess.run(
        [sys.executable, "-m", "rollgate", "--json", "gate", "--dsn", UNREACHABLE],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ROLLGATE_RTO_SECONDS": "soon"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert (
        "--rto-seconds: not a number of seconds: 'soon'"
        in json.loads(result.stdout)["error"]["message"]
    )
    other = subprocess.run(
        [sys.executable, "-m", "rollgate", "--help"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ROLLGATE_RTO_SECONDS": "soon"},
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert other.returncode == 0  # other commands are not affected at all


@pytest.mark.parametrize("shape", ["file", "under-a-file", "too-long"])
def test_an_unusable_output_directory_cannot_run(tmp_path: Path, shape: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    path = {
        "file": blocker,
        "under-a-file": blocker / "reports",
        "too-long": tmp_path / ("r" * 300),
    }[shape]
    with pytest.raises(CannotRun, match=r"cannot write the reports in .*: "):
        writable_directory(path, "the reports")
    assert blocker.read_text() == ""  # nothing written over


def test_a_usable_output_directory_is_created_and_left_clean(tmp_path: Path) -> None:
    path = writable_directory(tmp_path / "a" / "b", "the reports")
    assert path.is_dir() and list(path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["gate", "--store", "{store}", "--report-dir", "{blocker}/x"], "--report-dir"),
        (["rehearse", "--report-dir", "{blocker}"], "--report-dir"),
        (["smoke", "--output-dir", "{blocker}/x"], "--output-dir"),
        (["audit", "trend", "--store", "{store}", "--html", "{blocker}/t.html"], "--html"),
    ],
)
def test_commands_refuse_an_unusable_report_location_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    store = tmp_path / "store"
    filled = [a.format(blocker=blocker, store=store) for a in argv]
    code, out, err = run(capsys, "--json", "--dsn", UNREACHABLE, *filled)
    assert code == 2, err
    error = json.loads(out)["error"]
    assert error["type"] != "InternalError" and message in error["message"]
    # Before any work: the gate took no snapshot and wrote no log entry.
    assert not (store / "snapshots").exists() and not (store / "logs").exists()


def test_a_store_that_is_a_file_is_refused_at_open(tmp_path: Path) -> None:
    blocker = tmp_path / "store"
    blocker.write_text("")
    for uri in (str(blocker), f"file://{blocker}"):
        with pytest.raises(StoreError, match="is a file, not a directory"):
            open_store(uri)


def test_a_log_directory_that_is_a_file_is_a_store_error_not_a_race(tmp_path: Path) -> None:
    # mkdir's FileExistsError used to pass for "another writer got there first", so the
    # ledger retried 20 times and blamed a race; cleanup then raised NotADirectoryError.
    store = open_store(str(tmp_path / "store"))
    (tmp_path / "store" / "logs").mkdir(parents=True)
    (tmp_path / "store" / "logs" / "gate").write_text("")
    with pytest.raises(StoreError, match="cannot append to log gate") as caught:
        store.create_log_entry("gate", "00000001.json", b"{}")
    assert "raced" not in str(caught.value)
