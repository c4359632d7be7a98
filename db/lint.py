"""Squawk over every migration file, with Rollgate's rules on top.

Part of ``rollgate db check``. squawk (the Postgres migration linter) reads each
file the way the runner will execute it, and Rollgate adds one rule of its own:

    A squawk finding fails the check unless the migration silences it with an
    explicit ignore comment that names the rule AND gives a reason:

        -- squawk-ignore prefer-bigint-over-int -- bounded by maxReceiveCount
        -- squawk-ignore-file ban-drop-table -- a revert drops what 0001 made

So besides squawk's own findings (including its ``unused-ignore`` for an
ignore naming an unknown rule) this module reports every ignore comment with
no reason (``rollgate-ignore-needs-reason``) or no rule
(``rollgate-ignore-needs-rule``; a bare ``squawk-ignore-file`` silences every
rule in the file).

How squawk is run, and why:

* ``--assume-in-transaction`` exactly for files the runner wraps in a
  transaction (no ``-- rollgate: transaction=false``). Inside one transaction a
  failure leaves nothing behind, so squawk's "make it re-runnable" advice does
  not apply; outside one it does.
* ``--exclude`` for the rules in ``EXCLUDED_RULES`` (the runner covers them).
* ``--config /dev/null``: the policy lives here, in code. squawk otherwise
  reads a ``.squawk.toml`` from the working directory upwards (say, one a
  developer keeps for an editor), and its ``excluded_paths`` would make squawk
  skip a migration without a word: an empty report that looks like a pass.
* ``--pg-version`` of the target server, so version-dependent rules match it.

Two policies fit the lint to a real project's history:

* **A baseline** (``lint.since`` in ``rollgate.toml``, ``--lint-since N``):
  migrations at or below version N already run in production, so they are not
  linted (``split_at_baseline``), as strong_migrations' ``start_after`` and
  Atlas's ``--latest`` do. The report counts what was skipped and why.
* **Expected destruction in down files**: a down file dropping what its own up
  created is doing its job. squawk's drop findings on such statements
  (``db.destructive.REVERT_RULES``) leave the findings and are reported as
  destructive reverts instead (``set_aside_expected_drops``); a drop of
  anything else stays a finding.

Up, down and verify scripts are all linted (see ``lintable_files``). Positions
are 1-based lines and 1-based *character* columns (squawk counts bytes from
0), so ``LintFinding.describe()`` is ``path:line:col: rule: message`` that an
editor can jump to.

Nothing here prints. Squawk missing, crashing or printing something that is
not its JSON report raises ``ToolUnavailable`` (exit 2), never an empty, passing
report; an unreadable migration raises ``MigrationFileError``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.errors import CannotRun, ToolUnavailable
from db.destructive import REVERT_RULES, DestructiveRevert
from db.errors import MigrationFileError

# Rules switched off for every file, each with the reason it does not apply.
EXCLUDED_RULES: Mapping[str, str] = {
    "require-lock-timeout": (
        "the runner sets lock_timeout before every migration, from its "
        "`-- rollgate: lock_timeout=` header or the default"
    ),
    "require-statement-timeout": (
        "the runner sets statement_timeout before every migration, from its "
        "`-- rollgate: statement_timeout=` header or the default"
    ),
}

IGNORE_NEEDS_REASON = "rollgate-ignore-needs-reason"
IGNORE_NEEDS_RULE = "rollgate-ignore-needs-rule"

# squawk lints hundreds of files in well under a second; a minute means it hung.
DEFAULT_TIMEOUT_SECONDS = 60.0

# The up, down and verify scripts of each migration (see lintable_files).
LINTED_SUFFIXES = (".up.sql", ".down.sql", ".verify.sql")

# The version prefix of a migration file name (0042_add_x.up.sql -> 42).
_VERSION_PREFIX = re.compile(r"^(?P<version>\d+)_")

# The same directive line the runner reads, wherever it sits in the file.
_DIRECTIVE = re.compile(r"^\s*--\s*rollgate:(?P<body>.*)$", re.MULTILINE)

# Where squawk might see an ignore: a line or block comment whose body starts
# (after blanks) with squawk-ignore. Matched on raw text, so the rare lookalike
# inside a string or function body is flagged too: a false alarm fixed by
# adding a reason, never an ignore slipping past unchecked.
_IGNORE_LINE = "squawk-ignore"  # silences the rules on the next line
_IGNORE_FILE = "squawk-ignore-file"  # silences the rules in the whole file
_IGNORE_START = re.compile(r"--[^\S\n]*squawk-ignore|/\*\s*squawk-ignore")

# The tail of stderr worth putting in a message; squawk can print backtraces.
_STDERR_TAIL_LINES = 20


@dataclass(frozen=True)
class LintFinding:
    """One problem in one migration file, at a 1-based line and column."""

    file: Path
    line: int
    column: int
    rule: str
    level: str
    message: str
    help: str | None = None

    def describe(self) -> str:
        """``path:line:col: rule: message``, the gcc shape editors jump to."""
        return f"{self.file}:{self.line}:{self.column}: {self.rule}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.file),
            "line": self.line,
            "column": self.column,
            "rule": self.rule,
            "level": self.level,
            "message": self.message,
            "help": self.help,
        }


@dataclass(frozen=True)
class LintReport:
    """Everything one lint run found, and what it ran.

    ``expected_drops`` are squawk findings taken out of ``findings`` because
    the down file drops what its own up created (a destructive revert, not a
    mistake); ``skipped_files`` are the files at or below the ``since``
    baseline, not linted because they are in production already.
    """

    findings: tuple[LintFinding, ...]
    files_checked: int
    squawk_version: str
    since: int = 0
    skipped_files: tuple[Path, ...] = ()
    expected_drops: tuple[LintFinding, ...] = ()

    @property
    def ok(self) -> bool:
        """True when no file has a finding: every finding fails the check."""
        return not self.findings

    @property
    def skipped_reason(self) -> str | None:
        """Why files were not linted, or None when none were skipped."""
        if not self.skipped_files:
            return None
        return (
            f"migrations at or below the lint baseline {self.since:04d} "
            "(lint.since / --lint-since) are in production already"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "files_checked": self.files_checked,
            "squawk_version": self.squawk_version,
            "findings": [finding.to_dict() for finding in self.findings],
            "lint_since": self.since,
            "skipped": {
                "files": len(self.skipped_files),
                "paths": [str(path) for path in self.skipped_files],
                "reason": self.skipped_reason,
            },
            "expected_drops": [finding.to_dict() for finding in self.expected_drops],
        }


def lintable_files(migrations_dir: Path) -> list[Path]:
    """The files ``db check`` lints in ``migrations_dir``: up, down and verify.

    Verify scripts are included on purpose. squawk parses them like any other
    SQL (SELECTs and DO blocks lint clean), so linting them catches a syntax
    error before a deploy reaches the verify step, and flags DDL that has crept
    into what should be a read-only check.
    """
    try:
        entries = list(migrations_dir.iterdir())
    except OSError as exc:
        raise CannotRun(
            f"cannot list migrations in {migrations_dir}: {exc.strerror or exc}",
            details={"directory": str(migrations_dir)},
        ) from exc
    return sorted(
        path for path in entries if path.is_file() and path.name.endswith(LINTED_SUFFIXES)
    )


def split_at_baseline(files: Sequence[Path], since: int) -> tuple[list[Path], list[Path]]:
    """``(to_lint, skipped)``: files of migrations above ``since``, and the rest.

    A file whose name carries no version prefix is always linted: skipping
    something the baseline does not clearly cover would hide it.
    """
    to_lint: list[Path] = []
    skipped: list[Path] = []
    for path in files:
        match = _VERSION_PREFIX.match(path.name)
        if since > 0 and match is not None and int(match["version"]) <= since:
            skipped.append(path)
        else:
            to_lint.append(path)
    return to_lint, skipped


def set_aside_expected_drops(
    report: LintReport, reverts: Sequence[DestructiveRevert]
) -> LintReport:
    """``report`` without squawk's drop findings on statements that drop only
    what the migration's own up created; those move to ``expected_drops``.

    A finding is set aside when its rule is one of ``REVERT_RULES``, it sits
    inside a down-file statement the classifier saw, and every object that
    statement destroys is ``expected``. ``DROP TABLE mine, theirs`` keeps its
    finding: ``theirs`` was not created by the up.
    """
    by_statement: dict[tuple[Path, int, int], list[DestructiveRevert]] = {}
    for revert in reverts:
        key = (revert.file.absolute(), revert.line, revert.end_line)
        by_statement.setdefault(key, []).append(revert)

    def expected(finding: LintFinding) -> bool:
        if finding.rule not in REVERT_RULES:
            return False
        where = finding.file.absolute()
        for (path, start, end), destroyed in by_statement.items():
            if path == where and start <= finding.line <= end:
                return all(revert.expected for revert in destroyed)
        return False

    kept = tuple(finding for finding in report.findings if not expected(finding))
    moved = tuple(finding for finding in report.findings if expected(finding))
    return replace(report, findings=kept, expected_drops=report.expected_drops + moved)


def runs_in_transaction(sql: str) -> bool:
    """Whether the runner wraps this file in one transaction.

    A tiny reading of the ``-- rollgate: transaction=...`` directive, kept here
    so the lint depends on no other module. Where it could disagree with the
    runner's full parser it errs towards "not transactional", which lints
    *more* strictly: any directive line anywhere, and any value but ``true``.
    Malformed directives are the runner's to reject, not the lint's.
    """
    for match in _DIRECTIVE.finditer(sql):
        for item in match["body"].split():
            key, _, value = item.partition("=")
            if key == "transaction" and value != "true":
                return False
    return True


def find_squawk(squawk: str | None = None) -> str:
    """The squawk to run: ``squawk`` if given, else beside Python, else on PATH.

    Beside ``sys.executable`` first, because ``pip install squawk-cli`` puts it
    in the venv's bin directory, which need not be on PATH (an IDE or cron
    running ``.venv/bin/rollgate`` directly).
    """
    if squawk is not None:
        return squawk
    beside_python = Path(sys.executable).parent / "squawk"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    on_path = shutil.which("squawk")
    if on_path is not None:
        return on_path
    raise ToolUnavailable(
        f"squawk not found: looked in {beside_python.parent} and on PATH. "
        "Install it into this environment with `pip install squawk-cli`.",
        details={"tool": "squawk", "searched": [str(beside_python.parent), "PATH"]},
    )


def lint_migrations(
    migration_files: Sequence[Path],
    *,
    squawk: str | None = None,
    pg_version: int = 18,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> LintReport:
    """Lint ``migration_files`` with squawk and Rollgate's ignore rules.

    Each file is linted the way the runner executes it: transactional files
    with ``--assume-in-transaction``, ``transaction=false`` files without. At
    most two squawk processes run, one per group. Findings come back in the
    order the files were given, then by position.

    Raises ``ToolUnavailable`` if squawk cannot be found, started, finished
    within ``timeout`` seconds, or understood; ``MigrationFileError`` if a file
    cannot be read as UTF-8 text.
    """
    executable = find_squawk(squawk)
    version = _squawk_version(executable, timeout)

    # One entry per file, however it is spelled: squawk would lint it twice.
    unique: dict[Path, Path] = {}
    for path in migration_files:
        unique.setdefault(path.absolute(), path)
    files = list(unique.values())
    sources = {path: _read_sql(path) for path in files}

    findings: list[LintFinding] = []
    for path, sql in sources.items():
        findings.extend(_ignore_findings(path, sql))

    wrapped = {path: runs_in_transaction(sql) for path, sql in sources.items()}
    for in_transaction in (True, False):
        group = [path for path in files if wrapped[path] is in_transaction]
        if group:
            findings.extend(
                _run_squawk(
                    executable,
                    group,
                    sources,
                    in_transaction=in_transaction,
                    pg_version=pg_version,
                    timeout=timeout,
                )
            )

    order = {path: index for index, path in enumerate(files)}
    findings.sort(key=lambda f: (order.get(f.file, len(order)), f.line, f.column, f.rule))
    return LintReport(
        findings=tuple(_drop_cascading_syntax_errors(findings)),
        files_checked=len(files),
        squawk_version=version,
    )


# --- Rollgate's ignore rule ----------------------------------------------------


@dataclass(frozen=True)
class _Ignore:
    """One squawk ignore comment, split the way squawk splits it."""

    kind: str  # _IGNORE_LINE or _IGNORE_FILE
    rules: tuple[str, ...]
    reason: str
    line: int
    column: int


def _find_ignores(sql: str) -> Iterator[_Ignore]:
    for match in _IGNORE_START.finditer(sql):
        body_start = match.start() + 2  # past "--" or "/*"
        terminator = "\n" if match.group().startswith("--") else "*/"
        end = sql.find(terminator, body_start)
        body = sql[body_start : end if end != -1 else len(sql)]
        # As squawk reads it: the directive runs up to the first "--", and
        # whatever follows is the reason.
        directive, _, reason = body.strip().partition("--")
        directive = directive.strip()
        kind = _IGNORE_FILE if directive.startswith(_IGNORE_FILE) else _IGNORE_LINE
        rules = tuple(rule.strip() for rule in directive[len(kind) :].split(",") if rule.strip())
        line, column = _line_and_column(sql, match.start())
        yield _Ignore(kind, rules, reason.strip(), line, column)


def _ignore_findings(path: Path, sql: str) -> list[LintFinding]:
    """A finding for every squawk ignore comment missing a rule or a reason."""
    findings = []
    for ignore in _find_ignores(sql):
        named = ", ".join(ignore.rules)
        if not ignore.rules:
            silenced = "every rule in the file" if ignore.kind == _IGNORE_FILE else "nothing"
            findings.append(
                LintFinding(
                    path,
                    ignore.line,
                    ignore.column,
                    IGNORE_NEEDS_RULE,
                    "Error",
                    f"`{ignore.kind}` names no rule (it silences {silenced})",
                    f"Name the rules it silences: `-- {ignore.kind} <rule>[, <rule>] -- <why>`.",
                )
            )
        if not ignore.reason:
            findings.append(
                LintFinding(
                    path,
                    ignore.line,
                    ignore.column,
                    IGNORE_NEEDS_REASON,
                    "Error",
                    f"`{ignore.kind}` of {named or 'every rule'} gives no reason",
                    f"Say why after ` -- `: `-- {ignore.kind} {named or '<rule>'} -- <why>`.",
                )
            )
    return findings


# --- Running squawk --------------------------------------------------------------


def _squawk_version(executable: str, timeout: float) -> str:
    """squawk's version (``2.70.0``); running it also proves squawk starts."""
    completed = _run([executable, "--version"], timeout)
    text = completed.stdout.strip()
    if completed.returncode != 0 or not text.startswith("squawk "):
        raise _could_not_run(executable, "did not report its version", completed)
    return text.removeprefix("squawk ").strip()


def _run_squawk(
    executable: str,
    files: Sequence[Path],
    sources: Mapping[Path, str],
    *,
    in_transaction: bool,
    pg_version: int,
    timeout: float,
) -> list[LintFinding]:
    # squawk expands its arguments as glob patterns and reports the matched
    # path, so pass absolute, glob-escaped paths and map its answers back to
    # the paths the caller gave (a pytest tmp_path can contain "[").
    # Keys are normalised only to compare names: squawk drops a leading "./".
    by_reported_name = {os.path.normpath(path.absolute()): path for path in files}
    argv = [
        executable,
        "--reporter",
        "json",
        "--config",
        os.devnull,
        "--pg-version",
        str(pg_version),
        "--exclude",
        ",".join(EXCLUDED_RULES),
        "--assume-in-transaction" if in_transaction else "--no-assume-in-transaction",
        "--",
        *(_glob_escape(str(path.absolute())) for path in files),
    ]
    completed = _run(argv, timeout)
    raw = _parse_report(completed.stdout)
    # squawk exits 1 both for "found problems" and "could not run", so only a
    # well-formed JSON list counts as a report. An exit 1 with an empty list
    # claims failure with nothing to show: refuse to call that a pass.
    if raw is None:
        raise _could_not_run(executable, "did not print a JSON report", completed)
    if completed.returncode not in (0, 1):
        raise _could_not_run(executable, "crashed", completed)
    if completed.returncode == 1 and not raw:
        raise _could_not_run(executable, "failed without reporting a finding", completed)

    findings = []
    for item in raw:
        reported = os.path.normpath(item["file"])
        path = by_reported_name.get(reported, Path(item["file"]))
        sql = sources.get(path)
        findings.append(
            LintFinding(
                file=path,
                line=item["line"] + 1,
                column=_char_column(sql, item["line"], item["column"]),
                rule=item["rule_name"],
                level=item["level"],
                message=item["message"],
                help=item["help"],
            )
        )
    return findings


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv,
            # squawk reads SQL from stdin when given no paths: never let it wait.
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolUnavailable(
            f"squawk did not finish within {timeout:g}s: {argv[0]}",
            details={"tool": "squawk", "argv": argv, "timeout": timeout},
        ) from exc
    except OSError as exc:
        raise ToolUnavailable(
            f"squawk could not be started: {argv[0]}: {exc.strerror or exc}. "
            "Install it with `pip install squawk-cli`.",
            details={"tool": "squawk", "argv": argv, "error": str(exc)},
        ) from exc


_REQUIRED_KEYS: Mapping[str, type | tuple[type, ...]] = {
    "file": str,
    "line": int,
    "column": int,
    "level": str,
    "message": str,
    "help": (str, type(None)),
    "rule_name": str,
}


def _parse_report(stdout: str) -> list[dict[str, Any]] | None:
    """squawk's JSON findings, or None if stdout is anything else."""
    try:
        raw = json.loads(stdout)
    except ValueError:
        return None
    if not isinstance(raw, list):
        return None
    for item in raw:
        if not isinstance(item, dict):
            return None
        for key, expected in _REQUIRED_KEYS.items():
            # bool is an int to isinstance; a line of `true` is still garbage.
            value = item.get(key)
            if not isinstance(value, expected) or isinstance(value, bool):
                return None
    return raw


def _could_not_run(
    executable: str, what: str, completed: subprocess.CompletedProcess[str]
) -> ToolUnavailable:
    stderr = completed.stderr.strip()
    tail = "\n".join(stderr.splitlines()[-_STDERR_TAIL_LINES:])
    message = f"squawk ({executable}) {what} (exit {completed.returncode})"
    message += f":\n{tail}" if tail else f" and printed: {completed.stdout.strip()[:200]!r}"
    return ToolUnavailable(
        message,
        details={
            "tool": "squawk",
            "argv": list(completed.args),
            "returncode": completed.returncode,
            "stdout": completed.stdout,
            "stderr": completed.stderr,
        },
    )


# --- Small helpers ---------------------------------------------------------------


def _read_sql(path: Path) -> str:
    # Strict UTF-8 here: squawk's own error for a bad byte names no file.
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MigrationFileError(
            f"{path}: cannot read migration file: {exc.strerror or exc}",
            details={"file": str(path)},
        ) from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise MigrationFileError(
            f"{path}:{line}: not valid UTF-8 (byte {exc.start}); save the file as UTF-8",
            details={"file": str(path), "line": line, "byte": exc.start},
        ) from exc


def _glob_escape(name: str) -> str:
    # The escapes of Rust's glob::Pattern::escape, which squawk's matcher reads.
    return re.sub(r"[][*?]", lambda m: f"[{m.group()}]", name)


def _char_column(sql: str | None, line0: int, byte_column0: int) -> int:
    """squawk's 0-based byte column on a 0-based line, as a 1-based character column."""
    if sql is None:
        return byte_column0 + 1
    lines = sql.split("\n")
    if not 0 <= line0 < len(lines):
        return byte_column0 + 1
    prefix = lines[line0].encode("utf-8")[:byte_column0]
    return len(prefix.decode("utf-8", errors="replace")) + 1


def _line_and_column(sql: str, offset: int) -> tuple[int, int]:
    before = sql[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _drop_cascading_syntax_errors(findings: list[LintFinding]) -> list[LintFinding]:
    # squawk's parser recovers token by token and reports every token after a
    # mistake; the first syntax error on a line is the one worth reading.
    seen: set[tuple[Path, int]] = set()
    kept = []
    for finding in findings:
        if finding.rule == "syntax-error":
            if (finding.file, finding.line) in seen:
                continue
            seen.add((finding.file, finding.line))
        kept.append(finding)
    return kept
