"""db.lint against the real squawk binary and real files.

Every "squawk" here is a real executable: the installed one, or a small shell
script in tmp_path standing in for a broken install. Nothing is mocked.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from core.errors import CannotRun, ToolUnavailable
from db.destructive import classify_reverts
from db.errors import MigrationFileError
from db.lint import (
    EXCLUDED_RULES,
    IGNORE_NEEDS_REASON,
    IGNORE_NEEDS_RULE,
    LintFinding,
    lint_migrations,
    lintable_files,
    runs_in_transaction,
    set_aside_expected_drops,
    split_at_baseline,
)
from db.migrations import load_migrations
from tests.db.conftest import write_migration_set

REPO_MIGRATIONS = Path(__file__).resolve().parents[2] / "db" / "migrations"

# Line 4, column 7 is where squawk points: at the `integer` of `n integer`.
INT_COLUMN = """\
-- 0001_create_t: one table.

CREATE TABLE public.t (
    n integer NOT NULL
);
"""


def write(directory: Path, name: str, sql: str) -> Path:
    path = directory / name
    path.write_text(sql, encoding="utf-8")
    return path


def executable(directory: Path, name: str, script: str) -> str:
    path = directory / name
    path.write_text("#!/bin/sh\n" + script, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def rules(findings: tuple[LintFinding, ...]) -> list[str]:
    return [finding.rule for finding in findings]


def test_a_clean_transactional_migration_passes(tmp_path: Path) -> None:
    path = write(
        tmp_path, "0001_create_t.up.sql", "CREATE TABLE public.t (id bigint PRIMARY KEY);\n"
    )

    report = lint_migrations([path])

    assert report.ok, [f.describe() for f in report.findings]
    assert report.files_checked == 1
    assert report.squawk_version.startswith("2.")


def test_a_finding_has_1_based_line_and_column_and_its_rule(tmp_path: Path) -> None:
    path = write(tmp_path, "0001_create_t.up.sql", INT_COLUMN)

    report = lint_migrations([path])

    assert not report.ok
    [finding] = report.findings
    assert (finding.file, finding.line, finding.column) == (path, 4, 7)
    assert finding.rule == "prefer-bigint-over-int"
    assert finding.help
    assert finding.describe() == f"{path}:4:7: prefer-bigint-over-int: {finding.message}"


def test_columns_count_characters_not_bytes(tmp_path: Path) -> None:
    # squawk counts bytes; "é" and "—" are 2 and 3 bytes but one column each.
    sql = 'CREATE TABLE public.t ("café—x" bigint, n integer);\n'
    path = write(tmp_path, "0001_create_t.up.sql", sql)

    [finding] = lint_migrations([path]).findings

    assert finding.column == sql.index("integer") + 1


@pytest.mark.parametrize("spelled", ["0001_create_t.up.sql", "sub/../0001_create_t.up.sql"])
def test_findings_keep_the_path_as_the_caller_spelled_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelled: str
) -> None:
    write(tmp_path, "0001_create_t.up.sql", INT_COLUMN)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)

    [finding] = lint_migrations([Path(spelled)]).findings

    assert finding.file == Path(spelled)


def test_glob_characters_in_paths_are_taken_literally(tmp_path: Path) -> None:
    # squawk treats its arguments as glob patterns; pytest paths can hold "[".
    directory = tmp_path / "case[1]"
    directory.mkdir()
    path = write(directory, "0001_create_*?.up.sql", INT_COLUMN)

    [finding] = lint_migrations([path]).findings

    assert finding.file == path


@pytest.mark.parametrize(
    "ignore",
    [
        "-- squawk-ignore prefer-bigint-over-int -- a small counter",
        "/* squawk-ignore prefer-bigint-over-int -- a small counter */",
        "-- squawk-ignore prefer-robust-stmts, prefer-bigint-over-int -- a small counter",
    ],
)
def test_an_ignore_with_a_reason_silences_the_finding(tmp_path: Path, ignore: str) -> None:
    sql = INT_COLUMN.replace("    n integer", f"    {ignore}\n    n integer")
    path = write(tmp_path, "0001_create_t.up.sql", sql)

    report = lint_migrations([path])

    assert report.ok, [f.describe() for f in report.findings]


@pytest.mark.parametrize(
    "ignore",
    [
        "-- squawk-ignore prefer-bigint-over-int",
        "-- squawk-ignore prefer-bigint-over-int --",
        "-- squawk-ignore prefer-bigint-over-int --   ",
        "/* squawk-ignore prefer-bigint-over-int */",
    ],
)
def test_an_ignore_without_a_reason_is_a_finding(tmp_path: Path, ignore: str) -> None:
    sql = INT_COLUMN.replace("    n integer", f"    {ignore}\n    n integer")
    path = write(tmp_path, "0001_create_t.up.sql", sql)

    report = lint_migrations([path])

    # squawk honours the ignore; Rollgate still fails it, at the comment.
    [finding] = report.findings
    assert (finding.rule, finding.line, finding.column) == (IGNORE_NEEDS_REASON, 4, 5)
    assert "prefer-bigint-over-int" in finding.message


def test_a_file_ignore_without_a_reason_is_a_finding(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "0001_create_t.up.sql",
        "-- squawk-ignore-file prefer-bigint-over-int\n" + INT_COLUMN,
    )

    assert rules(lint_migrations([path]).findings) == [IGNORE_NEEDS_REASON]


def test_an_ignore_naming_no_rule_is_a_finding(tmp_path: Path) -> None:
    # A bare squawk-ignore-file silences everything, reason or not.
    path = write(
        tmp_path, "0001_create_t.up.sql", "-- squawk-ignore-file -- trust me\n" + INT_COLUMN
    )

    assert rules(lint_migrations([path]).findings) == [IGNORE_NEEDS_RULE]


def test_squawks_unused_ignore_for_an_unknown_rule_is_a_finding(tmp_path: Path) -> None:
    sql = "-- squawk-ignore prefer-bigint-over-integer -- typo\nSELECT 1;\n"
    path = write(tmp_path, "0001_select.up.sql", sql)

    [finding] = lint_migrations([path]).findings

    assert (finding.rule, finding.line) == ("unused-ignore", 1)


def test_a_non_transactional_migration_gets_robustness_findings(tmp_path: Path) -> None:
    body = "CREATE TABLE public.t (id bigint PRIMARY KEY);\n"
    wrapped = write(tmp_path, "0001_create_t.up.sql", body)
    autocommit = write(tmp_path, "0002_create_t.up.sql", "-- rollgate: transaction=false\n" + body)

    report = lint_migrations([wrapped, autocommit])

    # Outside a transaction a half-applied file must be re-runnable.
    assert [(f.file, f.rule) for f in report.findings] == [(autocommit, "prefer-robust-stmts")]


@pytest.mark.parametrize(
    ("sql", "transactional"),
    [
        ("SELECT 1;\n", True),
        ("-- rollgate: lock_timeout=5s statement_timeout=60min\nSELECT 1;\n", True),
        ("-- rollgate: transaction=true\nSELECT 1;\n", True),
        ("-- rollgate: transaction=false\nSELECT 1;\n", False),
        ("-- rollgate: lock_timeout=5s transaction=false\nSELECT 1;\n", False),
        # Anything unclear lints as autocommit, the stricter reading.
        ("SELECT 1;\n  --rollgate: transaction=false\n", False),
        ("-- rollgate: transaction=FALSE\nSELECT 1;\n", False),
    ],
)
def test_runs_in_transaction_reads_the_directive(sql: str, transactional: bool) -> None:
    assert runs_in_transaction(sql) is transactional


def test_the_timeout_rules_are_excluded_because_the_runner_sets_them(tmp_path: Path) -> None:
    path = write(tmp_path, "0001_alter_t.up.sql", "ALTER TABLE public.t ADD COLUMN c bigint;\n")

    report = lint_migrations([path])

    assert set(EXCLUDED_RULES) == {"require-lock-timeout", "require-statement-timeout"}
    assert report.ok, [f.describe() for f in report.findings]


def test_a_squawk_config_file_cannot_change_the_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # squawk reads .squawk.toml from the working directory up; this one would
    # make it skip 0001 silently, an empty report that looks like a pass.
    write(tmp_path, ".squawk.toml", 'excluded_paths = ["*0001_*"]\n')
    flawed = write(tmp_path, "0001_create_t.up.sql", INT_COLUMN)
    clean = write(tmp_path, "0002_create_u.up.sql", "CREATE TABLE public.u (id bigint);\n")
    monkeypatch.chdir(tmp_path)

    report = lint_migrations([flawed, clean])

    assert [(f.file, f.rule) for f in report.findings] == [(flawed, "prefer-bigint-over-int")]


def test_the_repos_own_migrations_lint_clean() -> None:
    files = lintable_files(REPO_MIGRATIONS)

    report = lint_migrations(files)

    assert {f.name.split(".", 1)[1] for f in files} == {"up.sql", "down.sql", "verify.sql"}
    assert report.ok, "\n".join(f.describe() for f in report.findings)
    assert report.files_checked == len(files)


def test_a_missing_migrations_directory_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(CannotRun, match="cannot list migrations"):
        lintable_files(tmp_path / "migrations")


def test_a_syntax_error_is_a_finding_naming_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path, "0001_create_t.up.sql", "SELECT 1;\nCREATE TABEL public.t (id bigint);\n"
    )

    report = lint_migrations([path])

    # One finding for the line, not one per token squawk's parser trips on.
    [finding] = report.findings
    assert (finding.rule, finding.level, finding.line) == ("syntax-error", "Error", 2)
    assert finding.describe().startswith(f"{path}:2:")


def test_no_files_is_an_empty_passing_report() -> None:
    report = lint_migrations([])

    assert report.ok
    assert report.files_checked == 0


def test_a_file_passed_twice_is_linted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "0001_create_t.up.sql", INT_COLUMN)
    monkeypatch.chdir(tmp_path)

    report = lint_migrations([path, Path("0001_create_t.up.sql"), path])

    assert report.files_checked == 1
    assert len(report.findings) == 1


def test_a_file_that_is_not_utf8_is_a_migration_file_error(tmp_path: Path) -> None:
    path = tmp_path / "0001_create_t.up.sql"
    path.write_bytes(b"SELECT 1;\nSELECT '\xff';\n")

    with pytest.raises(MigrationFileError, match=r"0001_create_t\.up\.sql:2: not valid UTF-8"):
        lint_migrations([path])


def test_a_missing_file_is_a_migration_file_error(tmp_path: Path) -> None:
    with pytest.raises(MigrationFileError, match="cannot read migration file"):
        lint_migrations([tmp_path / "0001_missing.up.sql"])


# --- squawk that cannot run -> ToolUnavailable (exit 2) ---------------------------

ANSWERS_VERSION = 'if [ "$1" = --version ]; then echo "squawk 2.70.0"; exit 0; fi\n'


@pytest.mark.parametrize(
    ("name", "script", "message"),
    [
        ("garbage", ANSWERS_VERSION + "echo 'not json'\necho boom >&2\nexit 1\n", "boom"),
        ("not-a-list", ANSWERS_VERSION + "echo '{\"a\": 1}'\nexit 1\n", "JSON report"),
        ("wrong-shape", ANSWERS_VERSION + 'echo \'[{"file": "x"}]\'\nexit 1\n', "JSON report"),
        ("failed-no-findings", ANSWERS_VERSION + "echo '[]'\nexit 1\n", r"without .* \(exit 1\)"),
        ("crashed", ANSWERS_VERSION + "echo '[]'\nexit 101\n", r"crashed \(exit 101\)"),
        ("no-version", "echo 'Segmentation fault' >&2\nexit 139\n", "version"),
    ],
)
def test_squawk_that_cannot_run_is_tool_unavailable(
    tmp_path: Path, name: str, script: str, message: str
) -> None:
    path = write(tmp_path, "0001_create_t.up.sql", INT_COLUMN)
    squawk = executable(tmp_path, name, script)

    with pytest.raises(ToolUnavailable, match=message) as caught:
        lint_migrations([path], squawk=squawk)

    assert isinstance(caught.value, CannotRun)  # exit 2, not a failed check
    assert caught.value.details["tool"] == "squawk"


def test_squawk_that_does_not_exist_is_tool_unavailable(tmp_path: Path) -> None:
    path = write(tmp_path, "0001_create_t.up.sql", INT_COLUMN)

    with pytest.raises(ToolUnavailable, match="could not be started"):
        lint_migrations([path], squawk=str(tmp_path / "no-such-squawk"))


def test_squawk_that_hangs_is_tool_unavailable(tmp_path: Path) -> None:
    path = write(tmp_path, "0001_create_t.up.sql", INT_COLUMN)
    squawk = executable(tmp_path, "hangs", ANSWERS_VERSION + "exec sleep 30\n")

    with pytest.raises(ToolUnavailable, match=r"did not finish within 0\.5s"):
        lint_migrations([path], squawk=squawk, timeout=0.5)


def test_squawk_found_nowhere_is_tool_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(ToolUnavailable, match="pip install squawk-cli"):
        lint_migrations([])


def test_squawk_beside_python_is_preferred_to_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv_bin = tmp_path / "bin"
    venv_bin.mkdir()
    executable(venv_bin, "squawk", 'echo "squawk 9.9.9"\n')
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.prefix) / "bin"), os.environ["PATH"]]))

    assert lint_migrations([]).squawk_version == "9.9.9"


# --- The lint baseline and expected drops in down files ----------------------------


def test_files_at_or_below_the_baseline_are_skipped(tmp_path: Path) -> None:
    names = [f"{v:04d}_step.{kind}.sql" for v in (1, 2, 10) for kind in ("up", "down")]
    files = [write(tmp_path, name, "SELECT 1;\n") for name in names]

    linted, skipped = split_at_baseline(files, 2)

    assert [p.name for p in skipped] == names[:4]
    assert [p.name for p in linted] == names[4:]
    assert split_at_baseline(files, 0) == (files, [])


# Down files that drop what their own up created, and one that does not.
REVERTS = {
    "0001_create_t": (
        "CREATE TABLE t (id bigint PRIMARY KEY);",
        "DROP TABLE public.t;",
        "SELECT id FROM t WHERE false;",
    ),
    "0002_add_t_note": (
        "ALTER TABLE t ADD COLUMN note text;",
        "ALTER TABLE t DROP COLUMN note;",
        "SELECT note FROM t WHERE false;",
    ),
    "0003_add_t_size": (
        "ALTER TABLE t ADD COLUMN size bigint;",
        # Drops the column it added; then, in one statement, that column again
        # and one 0002 added: a mistake, so the whole statement keeps its findings.
        "ALTER TABLE t DROP COLUMN size;\nALTER TABLE t DROP COLUMN size, DROP COLUMN note;",
        "SELECT size FROM t WHERE false;",
    ),
}


def test_drops_of_what_the_up_created_are_set_aside_and_others_stay(tmp_path: Path) -> None:
    directory = write_migration_set(tmp_path / "m", REVERTS)
    reverts = classify_reverts(load_migrations(directory))

    raw = lint_migrations(lintable_files(directory))
    report = set_aside_expected_drops(raw, reverts)

    # Before: squawk's own findings on every drop (what the old lint failed on).
    assert sorted((f.file.name, f.rule) for f in raw.findings) == [
        ("0001_create_t.down.sql", "ban-drop-table"),
        ("0002_add_t_note.down.sql", "ban-drop-column"),
        ("0003_add_t_size.down.sql", "ban-drop-column"),
        ("0003_add_t_size.down.sql", "ban-drop-column"),
        ("0003_add_t_size.down.sql", "ban-drop-column"),
    ]
    # After: only the statement dropping a column 0003's up did not add.
    assert [(f.file.name, f.line, f.rule) for f in report.findings] == [
        ("0003_add_t_size.down.sql", 2, "ban-drop-column"),
        ("0003_add_t_size.down.sql", 2, "ban-drop-column"),
    ]
    assert len(report.expected_drops) == 3
    assert report.to_dict()["expected_drops"][0]["rule"] == "ban-drop-table"
