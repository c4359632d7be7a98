"""The command line: exit codes, --json envelopes, messages without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.db.conftest import WIDGETS, write_migration_set
from tests.rollgate.conftest import ROOT, UNREACHABLE, run


def test_no_dsn_cannot_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DATABASE_URL", "PGHOST", "PGSERVICE"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run(capsys, "db", "status")
    assert code == 2
    assert err.startswith("FAILED: no database given: pass --dsn")


def test_unreachable_database_exits_2_without_password_or_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "db", "status", "--dsn", UNREACHABLE)
    assert code == 2
    assert "cannot connect to postgresql://app:***@127.0.0.1:1/app" in err
    assert "hunter2" not in out + err and "Traceback" not in err


def test_json_errors_are_an_envelope_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--json", "db", "status", "--dsn", UNREACHABLE)
    payload = json.loads(out)
    assert code == 2 and payload["exit_code"] == 2 and payload["ok"] is False
    assert payload["command"] == "db status"
    assert payload["error"]["type"] == "DatabaseUnreachable"


def test_database_url_is_the_default_dsn(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, migrated_dsn: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", migrated_dsn)
    code, out, _ = run(capsys, "db", "status")
    assert code == 0
    assert "database at 0005, latest migration 0005" in out


def test_global_options_work_before_and_after_the_verb(
    capsys: pytest.CaptureFixture[str], migrated_dsn: str
) -> None:
    before = run(capsys, "--json", "--dsn", migrated_dsn, "db", "status")
    after = run(capsys, "db", "status", "--dsn", migrated_dsn, "--json")
    assert before[0] == after[0] == 0
    assert json.loads(before[1])["result"] == json.loads(after[1])["result"]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "db", "revert")[0] == 2  # --to is required
    assert run(capsys, "db", "migrate", "--to", "two")[0] == 2
    assert run(capsys, "frobnicate")[0] == 2
    assert run(capsys)[0] == 2


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "exit codes: 0 done, 1 check failed or refused" in out


def test_migrate_dry_run_then_migrate_then_status(
    capsys: pytest.CaptureFixture[str], empty_dsn: str
) -> None:
    code, out, _ = run(capsys, "db", "migrate", "--dry-run", "--dsn", empty_dsn)
    assert code == 0 and "would apply 0001_create_base_tables" in out
    assert "nothing has been changed" in out
    code, out, err = run(capsys, "db", "migrate", "--dsn", empty_dsn)
    assert code == 0 and "migrate: 0000 -> 0005" in out
    assert "[2/5] apply 0002_add_ai_model (outside a transaction)" in err  # progress on stderr
    code, out, _ = run(capsys, "--json", "db", "status", "--dsn", empty_dsn)
    assert code == 0 and json.loads(out)["result"]["healthy"] is True


def test_revert_without_confirmation_is_refused_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], migrated_dsn: str
) -> None:
    code, _, err = run(capsys, "db", "revert", "--to", "1", "--dsn", migrated_dsn)
    assert code == 1
    assert "would revert 0002_add_ai_model" in err  # the plan is shown before refusing
    assert "revert refused: not confirmed" in err
    with psycopg.connect(migrated_dsn) as conn:
        latest = conn.execute("SELECT max(version) FROM rollgate.schema_migrations").fetchone()
    assert latest == (5,)


def test_revert_dry_run_and_yes(capsys: pytest.CaptureFixture[str], migrated_dsn: str) -> None:
    code, out, _ = run(capsys, "db", "revert", "--to", "1", "--dry-run", "--dsn", migrated_dsn)
    assert code == 0 and "would revert 0002_add_ai_model" in out
    code, out, _ = run(
        capsys, "--json", "db", "revert", "--to", "1", "--yes", "--dsn", migrated_dsn
    )
    assert code == 0
    result = json.loads(out)["result"]
    assert (result["version_before"], result["version_after"]) == (5, 1)


def test_changed_migration_file_is_refused_with_exit_1(
    capsys: pytest.CaptureFixture[str], empty_dsn: str, tmp_path: Path
) -> None:
    directory = write_migration_set(tmp_path / "m", WIDGETS)
    assert (
        run(
            capsys, "db", "migrate", "--to", "1", "--migrations", str(directory), "--dsn", empty_dsn
        )[0]
        == 0
    )
    (directory / "0001_create_widgets.up.sql").write_text("CREATE TABLE widgets (id int);\n")
    code, _, err = run(capsys, "db", "migrate", "--migrations", str(directory), "--dsn", empty_dsn)
    assert code == 1
    assert "0001_create_widgets.up.sql: changed since 0001_create_widgets was applied" in err


def test_malformed_sql_names_the_file_and_line_and_applies_nothing(
    capsys: pytest.CaptureFixture[str], empty_dsn: str, tmp_path: Path
) -> None:
    broken = dict(WIDGETS)
    broken["0003_index_widget_name"] = (
        "SELECT 1;\nCREATE INDEX ON widgets (name",
        "SELECT 1;",
        "SELECT 1;",
    )
    directory = write_migration_set(tmp_path / "m", broken)
    code, _, err = run(capsys, "db", "migrate", "--migrations", str(directory), "--dsn", empty_dsn)
    assert code == 1
    assert "0003_index_widget_name.up.sql:2:" in err and "syntax error" in err
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT to_regclass('widgets')").fetchone() == (None,)


def test_db_check_passes_on_the_bundle(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--json", "db", "check")
    payload = json.loads(out)
    assert code == 0, out
    assert payload["result"]["contract"]["ok"] and payload["result"]["lint"]["ok"]
    assert payload["result"]["server_major"] == 18


def test_db_check_fails_on_a_lint_finding(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    risky = dict(WIDGETS)
    verify = risky["0003_index_widget_name"][2]
    # Non-concurrent index on an existing table blocks writes: squawk objects.
    risky["0003_index_widget_name"] = (
        "CREATE INDEX widgets_name_idx ON widgets (name);",
        "DROP INDEX widgets_name_idx;",
        verify,
    )
    directory = write_migration_set(tmp_path / "m", risky)
    schema = tmp_path / "schema.sql"
    schema.write_text(
        "CREATE TABLE widgets (id bigint PRIMARY KEY, name text NOT NULL, colour text);\n"
        "CREATE INDEX widgets_colour_idx ON widgets (colour);\n"
        "CREATE INDEX widgets_name_idx ON widgets (name);\n"
    )
    code, out, _ = run(
        capsys, "db", "check", "--migrations", str(directory), "--schema", str(schema)
    )
    assert code == 1
    assert "lint: " in out and "require-concurrent-index-creation" in out
    assert "contract: ok" in out


def test_db_diff_exits_1_on_drift(capsys: pytest.CaptureFixture[str], migrated_dsn: str) -> None:
    assert run(capsys, "db", "diff", "--dsn", migrated_dsn)[0] == 0
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE orders ADD COLUMN note text")
    code, out, _ = run(capsys, "--json", "db", "diff", "--dsn", migrated_dsn)
    assert code == 1
    differences = json.loads(out)["result"]["differences"]
    assert [d["name"] for d in differences] == ["public.orders.note"]


def test_internal_errors_exit_3_with_a_crash_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import rollgate.commands.db as db_commands

    def explode(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(db_commands, "load_migrations", explode)
    code, _, err = run(capsys, "db", "status", "--dsn", UNREACHABLE)
    assert code == 3
    assert "internal error (ZeroDivisionError: simulated bug)" in err
    crash_file = Path(err.rsplit("traceback is in ", 1)[1].strip())
    assert "Traceback" in crash_file.read_text()
    crash_file.unlink()


def test_the_console_script_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rollgate", "db", "status", "--dsn", UNREACHABLE],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("FAILED: cannot connect")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["db", "check", "--schema", "/nonexistent/schema.sql"], "schema file not found"),
        (["db", "check", "--migrations", "/nonexistent"], "migrations directory not found"),
        (["db", "status", "--dsn", "not a dsn"], "invalid DSN"),
        (["sample", "--size", "lots", "--dsn", UNREACHABLE], "invalid size 'lots'"),
        pytest.param(
            ["db", "check", "--backend", "docker", "--image", "rollgate/absent:0"],
            "not available locally",
            marks=pytest.mark.docker,
        ),
    ],
)
def test_bad_input_cannot_run_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    failure = [line for line in err.splitlines() if line.startswith("FAILED: ")]
    assert len(failure) == 1 and message in failure[0]
    assert "Traceback" not in err


def test_connection_errors_keep_the_cause(capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = run(capsys, "db", "status", "--dsn", UNREACHABLE)
    assert "Connection refused" in err


def test_negative_lock_wait_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "db", "migrate", "--lock-wait", "-5", "--dsn", UNREACHABLE)
    assert code == 2 and "must be between 0 and 86400 seconds" in err
