"""Usage errors: one JSON document under --json (row c), explicit empty options (row u),
and path options that are not what they claim to be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.rollgate.conftest import ROOT, UNREACHABLE, run


@pytest.mark.parametrize(
    ("argv", "command", "message"),
    [
        (["--json", "db", "revert", "--to", "abc"], "db revert", "not a migration version: 'abc'"),
        (["db", "revert", "--json"], "db revert", "the following arguments are required: --to"),
        (["--json", "frobnicate"], None, "invalid choice: 'frobnicate'"),
        (["--json", "db", "frobnicate"], "db", "invalid choice: 'frobnicate'"),
        (["db", "status", "--json", "--no-such-option"], "db status", "unrecognized arguments"),
        (["--json", "db", "migrate", "--lock-wait", "-5"], "db migrate", "between 0 and 86400"),
        (["--js", "sample", "--seed", "x"], "sample", "not a whole number: 'x'"),
        (["--json", "sample", "--seed", "-1"], "sample", "between 0 and 2147483647"),
        (["--json", "gate", "--rto-seconds", "nan"], "gate", "between 0 and 86400"),
        (["--json", "gate", "--rto-seconds", "0"], "gate", "more than 0 seconds"),
        (["--json", "gate", "--lock-budget-seconds", "-1"], "gate", "between 0 and 86400"),
        (["--json", "rehearse", "--rto-seconds", "inf"], "rehearse", "between 0 and 86400"),
        (["--json", "smoke", "--lock-budget", "1e9"], "smoke", "between 0 and 86400"),
        (["--json", "snapshot", "create", "--jobs", "0"], "snapshot create", "between 1 and 64"),
        (["--json", "snapshot", "prune", "--keep", "0"], "snapshot prune", "between 1 and"),
        (["--json", "audit", "trend", "--window", "0"], "audit trend", "between 1 and 1000"),
        (["--json", "gate", "--report-dir", ""], "gate", "must not be empty"),
        (["--json", "gate", "--stack", "../../etc/x"], "gate", "not a stack name"),
        (["--json", "gate", "--commit", "a\nb"], "gate", "must be one line"),
        (["--json", "release", "record", "--app-image", " "], "release record", "not be empty"),
        (
            ["--json", "snapshot", "create", "--release-commit", "x" * 600],
            "snapshot create",
            "at most 512",
        ),
        (["--json", "rehearse", "--app-image", "img\nFAILED"], "rehearse", "must be one line"),
        (["--json", "--dsn"], None, "expected one argument"),
        (["--json"], None, "no command given"),
        (["--json", "db"], "db", "no command given"),
    ],
)
def test_json_usage_errors_are_one_document_on_stdout(
    capsys: pytest.CaptureFixture[str], argv: list[str], command: str | None, message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    document = json.loads(out)  # the whole of stdout is one document
    assert document["ok"] is False and document["exit_code"] == 2
    assert document["command"] == command
    assert document["error"]["type"] == "UsageError"
    assert message in document["error"]["message"]
    assert document["error"]["details"]["usage"].startswith("usage: rollgate")
    assert "usage: rollgate" in err and "Traceback" not in err


def test_human_usage_errors_keep_argparse_form(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "db", "revert", "--to", "abc")
    assert code == 2 and out == ""
    assert err.startswith("usage: rollgate db revert")
    assert "rollgate db revert: error: argument --to: not a migration version: 'abc'" in err


def test_json_after_a_double_dash_is_not_an_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "db", "status", "--", "--json")
    assert code == 2 and out == ""


@pytest.mark.parametrize(
    ("option", "value"),
    [("--dsn", ""), ("--dsn", "  "), ("--migrations", ""), ("--schema", ""), ("--config", "")],
)
def test_an_explicit_empty_option_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    code, out, _ = run(capsys, "--json", "db", "status", option, value)
    assert code == 2
    document = json.loads(out)
    assert document["error"]["type"] == "UsageError"
    assert f"argument {option}: must not be empty" in document["error"]["message"]


def test_an_empty_dsn_never_falls_back_to_database_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, empty_dsn: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", empty_dsn)
    code, _, err = run(capsys, "--dsn", "", "db", "migrate")
    assert code == 2 and "argument --dsn: must not be empty" in err
    with psycopg.connect(empty_dsn) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname = 'schema_migrations'"
        ).fetchone()
    assert tables == (0,)  # nothing was migrated


@pytest.fixture
def odd_paths(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "a fifo\n.sql"
    os.mkfifo(fifo)
    regular = tmp_path / "plain.sql"
    regular.write_text("SELECT 1;\n")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    return {
        "fifo": fifo,
        "regular": regular,
        "directory": tmp_path,
        "loop": loop,
        "too-long": tmp_path / ("x" * 300),
        "missing": tmp_path / "nonexistent" / "schema.sql",
    }


@pytest.mark.parametrize(
    ("option", "kind", "message"),
    [
        ("--schema", "fifo", "not a regular file, so not a usable schema file"),
        ("--config", "fifo", "not a regular file, so not a usable config file"),
        ("--migrations", "fifo", "not a directory, so not a migrations directory"),
        ("--schema", "directory", "a directory, so not a usable schema file"),
        ("--config", "directory", "a directory, so not a usable config file"),
        ("--migrations", "regular", "not a directory, so not a migrations directory"),
        ("--schema", "loop", "Too many levels of symbolic links"),
        ("--migrations", "too-long", "File name too long"),
        ("--config", "missing", "config file not found (check --config)"),
        ("--schema", "missing", "schema file not found (check --schema)"),
    ],
)
def test_path_options_are_refused_by_name_before_anything_opens_them(
    capsys: pytest.CaptureFixture[str],
    odd_paths: dict[str, Path],
    option: str,
    kind: str,
    message: str,
) -> None:
    path = odd_paths[kind]
    code, _, err = run(capsys, "db", "status", option, str(path), "--dsn", UNREACHABLE)
    assert code == 2, err
    assert err.startswith(f"FAILED: {path}: ") and message in err
    assert "Traceback" not in err


def test_a_fifo_as_schema_is_refused_instead_of_blocking_db_check(
    odd_paths: dict[str, Path],
) -> None:
    # A real process with a deadline: the old code blocked forever reading the FIFO.
    result = subprocess.run(
        [sys.executable, "-m", "rollgate", "db", "check", "--schema", str(odd_paths["fifo"])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "not a regular file, so not a usable schema file (check --schema)" in result.stderr
