"""SQL files as lists of statements that know where they came from.

Rollgate parses every SQL file with PostgreSQL's own parser (pglast) before
running any of it, for two reasons:

* a syntax error is reported as ``file:line:column`` before a single
  statement has run, so malformed SQL never half-applies;
* statements run one at a time, so a server-side error (a missing column, a
  lock timeout) is reported at the exact line of the file that caused it, and
  ``CREATE INDEX CONCURRENTLY`` can run outside a transaction (a multi-statement
  query string would wrap it in an implicit one).

Files also carry directives in comments, e.g.::

    -- rollgate: transaction=false
    -- rollgate: lock_timeout=5s statement_timeout=60min

``lock_timeout`` must lie between 1ms and 10min, ``statement_timeout`` be 0
(none) or between 1ms and 24h. ``catalog=unchanged`` declares an up that
changes only what the catalog comparison does not read (grants, default
privileges): the contract then accepts an unchanged catalog, and the verify
script is what proves the change. Only a regular file of at most 256 MiB, in
UTF-8 without NUL bytes, is read; psql meta-commands are refused, except the
ones pg_dump writes in a schema file (``read_schema_script``). What a
migration may contain is ``db.sqlrules``' business (``read_migration_script``).
Line and column lookups are O(log n) after one pass, so a 50 MB file loads in
seconds.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import psycopg

from db.errors import MigrationFailed, MigrationFileError

DEFAULT_LOCK_TIMEOUT = "5s"
DEFAULT_STATEMENT_TIMEOUT = "15min"
# A migration or schema file is SQL text a person reviews: 256 MiB is far past
# any real one, and refusing beyond it keeps a stray dump or device from
# exhausting memory.
MAX_SCRIPT_BYTES = 256 * 1024 * 1024

_DIRECTIVE = re.compile(r"^\s*--\s*rollgate:(?P<body>.*)$", re.MULTILINE)
_TIMEOUT = re.compile(r"(?P<number>0|[1-9][0-9]*)(?P<unit>ms|s|min|h)?", re.ASCII)
_KNOWN_DIRECTIVES = ("transaction", "lock_timeout", "statement_timeout", "catalog")
_UNIT_MS = {"": 1, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
_INT_MAX = 2**31 - 1  # PostgreSQL's timeouts are int milliseconds
# (smallest, largest) in milliseconds; 0 is allowed separately where it is sane.
# lock_timeout=0 waits forever, and every writer queues behind the waiting ALTER.
_TIMEOUT_BOUNDS = {
    "lock_timeout": (1, 10 * 60_000, False, "between 1ms and 10min (0 would wait forever "
                     "and block every writer queued behind the lock)"),
    "statement_timeout": (1, 24 * 3_600_000, True, "0 (no limit) or between 1ms and 24h"),
}  # fmt: skip

# A line whose first token is a backslash is a psql meta-command (\set, \i, ...).
_META_LINE = re.compile(r"^[ \t]*\\", re.MULTILINE)
# The only meta-commands pg_dump writes into a plain-format dump (PostgreSQL 18
# adds \restrict/\unrestrict around it; --create adds \connect).
PG_DUMP_META_COMMANDS = frozenset({"\\restrict", "\\unrestrict", "\\connect"})
_RESTRICT_KEY = re.compile(
    r"^([ \t]*\\(?:un)?restrict[ \t]+)([A-Za-z0-9]+)([ \t]*\r?)$", re.MULTILINE
)


def _blank_key(match: re.Match[str]) -> str:
    return match[1] + " " * len(match[2]) + match[3]


META_COMMAND_FIX = (
    "psql meta-command; Rollgate does not run files through psql, so remove it (write plain SQL)"
)


class LineIndex:
    """Character offset -> 1-based (line, column), in O(log lines) after one O(n) pass."""

    def __init__(self, text: str) -> None:
        starts = [0]
        find = text.find
        position = find("\n")
        while position != -1:
            starts.append(position + 1)
            position = find("\n", position + 1)
        self._starts = starts

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of the character at ``offset``."""
        index = bisect.bisect_right(self._starts, offset) - 1
        return index + 1, offset - self._starts[index] + 1


@dataclass(frozen=True)
class Statement:
    """One SQL statement and where it starts in its file."""

    text: str
    offset: int  # character offset of the statement's first character
    line: int  # 1-based line of that character
    column: int  # 1-based column of that character


@dataclass(frozen=True)
class SqlScript:
    """A parsed SQL file: its statements, checksum and directives."""

    path: Path
    text: str
    sha256: str
    statements: tuple[Statement, ...]
    transactional: bool = True
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT
    statement_timeout: str = DEFAULT_STATEMENT_TIMEOUT
    directives: dict[str, str] = field(default_factory=dict)
    # pg_dump meta-commands skipped in a schema file, as (line, text).
    skipped_meta_commands: tuple[tuple[int, str], ...] = ()

    @cached_property
    def _lines(self) -> LineIndex:
        return LineIndex(self.text)

    def line_of(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset in the file."""
        return self._lines.position(offset)


def read_script(path: Path, *, max_bytes: int = MAX_SCRIPT_BYTES) -> SqlScript:
    """Read, checksum and parse ``path``; raise ``MigrationFileError`` on any problem.

    Only a regular file of at most ``max_bytes`` is read, as strict UTF-8 without
    NUL bytes; psql meta-commands are refused. No migration rules apply here:
    see ``read_migration_script`` and ``read_schema_script``.
    """
    return _read(path, max_bytes=max_bytes, allowed_meta_commands=frozenset())


def read_migration_script(path: Path, *, max_bytes: int = MAX_SCRIPT_BYTES) -> SqlScript:
    """``read_script`` plus the rules of ``db.sqlrules`` every migration file obeys."""
    from db.sqlrules import check_migration_script

    script = read_script(path, max_bytes=max_bytes)
    check_migration_script(script)
    return script


def read_schema_script(path: Path, *, max_bytes: int = MAX_SCRIPT_BYTES) -> SqlScript:
    """Read a schema file, accepting ``pg_dump --schema-only`` output verbatim.

    The psql meta-commands pg_dump writes (``\\restrict KEY``, ``\\unrestrict
    KEY``, ``\\connect``) are skipped: they are blanked out in place, so every
    statement keeps its own line and column. Any other meta-command is refused.
    """
    return _read(path, max_bytes=max_bytes, allowed_meta_commands=PG_DUMP_META_COMMANDS)


def _read(path: Path, *, max_bytes: int, allowed_meta_commands: frozenset[str]) -> SqlScript:
    raw = read_regular_file(path, max_bytes=max_bytes)
    nul = raw.find(b"\x00")
    if nul != -1:
        line, column = LineIndex(_prefix_text(raw, nul)).position(len(_prefix_text(raw, nul)))
        raise MigrationFileError(
            f"{path}:{line}:{column}: NUL byte at byte offset {nul}; PostgreSQL would ignore "
            "everything after it, so the file is refused (save it as plain UTF-8 text)",
            details={"file": str(path), "line": line, "column": column, "byte": nul},
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = _prefix_text(raw, exc.start)
        line, column = LineIndex(prefix).position(len(prefix))
        raise MigrationFileError(
            f"{path}:{line}:{column}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} "
            f"at byte offset {exc.start}); save the file as UTF-8",
            details={"file": str(path), "line": line, "column": column, "byte": exc.start},
        ) from exc
    lines = LineIndex(text)
    sql, skipped = _blank_meta_commands(path, text, lines, allowed_meta_commands)
    directives = _parse_directives(path, text, lines)
    statements = _split(path, sql, lines)
    return SqlScript(
        path=path,
        text=text,
        sha256=hashlib.sha256(raw).hexdigest(),
        statements=statements,
        transactional=directives.get("transaction", "true") == "true",
        lock_timeout=directives.get("lock_timeout", DEFAULT_LOCK_TIMEOUT),
        statement_timeout=directives.get("statement_timeout", DEFAULT_STATEMENT_TIMEOUT),
        directives=directives,
        skipped_meta_commands=skipped,
    )


def read_regular_file(path: Path, *, max_bytes: int = MAX_SCRIPT_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``.

    Anything else (a FIFO, a socket, a device such as ``/dev/zero``, a
    directory, a symlink to one of those) is refused by name before any
    ``open()`` that could block; the open itself is non-blocking and re-checked
    with ``fstat`` in case the file was swapped in between.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise MigrationFileError(
            f"{path}: cannot read: {exc.strerror or exc}", details={"file": str(path)}
        ) from exc
    _require_regular(path, info, max_bytes)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise MigrationFileError(
            f"{path}: cannot read: {exc.strerror or exc}", details={"file": str(path)}
        ) from exc
    try:
        _require_regular(path, os.fstat(fd), max_bytes)
        chunks = []
        remaining = max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        raise MigrationFileError(
            f"{path}: cannot read: {exc.strerror or exc}", details={"file": str(path)}
        ) from exc
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise _too_big(path, len(data), max_bytes)
    return data


def _require_regular(path: Path, info: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = _file_kind(info.st_mode)
        target = ""
        if os.path.islink(path):
            target = f" (a symlink to {os.readlink(path)})"
        raise MigrationFileError(
            f"{path}: is {kind}{target}, not a regular file; only regular files are read "
            "as SQL: replace it with the file itself or move it out of the directory",
            details={"file": str(path), "kind": kind},
        )
    if info.st_size > max_bytes:
        raise _too_big(path, info.st_size, max_bytes)


def _too_big(path: Path, size: int, max_bytes: int) -> MigrationFileError:
    return MigrationFileError(
        f"{path}: {size:,} bytes or more, over the limit of {max_bytes:,} bytes "
        f"({max_bytes // (1024 * 1024)} MiB) for one SQL file; split it into several "
        "migrations, or load bulk data outside migrations",
        details={"file": str(path), "bytes": size, "limit": max_bytes},
    )


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    for test, name in kinds:
        if test(mode):
            return name
    return "not a regular file"


def _prefix_text(raw: bytes, end: int) -> str:
    return raw[:end].decode("utf-8", "replace")


def split_statements(path: Path, text: str) -> tuple[Statement, ...]:
    """Split ``text`` into statements with PostgreSQL's parser; syntax errors name the line."""
    return _split(path, text, LineIndex(text))


def _split(path: Path, text: str, lines: LineIndex) -> tuple[Statement, ...]:
    from pglast import parser

    try:
        # The split runs PostgreSQL's full raw grammar, so it is also the syntax
        # check; it is linear, unlike building pglast's Python tree of the file.
        slices = parser.split(text, with_parser=True, only_slices=True)
    except parser.ParseError as exc:
        message = str(exc.args[0])
        # pglast gives no location for errors at end of input: point at the end.
        location = exc.args[1] if len(exc.args) > 1 else None
        offset = len(text.rstrip()) if location is None else int(location)
        line, column = lines.position(offset)
        if text.startswith("\\", offset):
            message = f"{META_COMMAND_FIX} ({message})"
        raise MigrationFileError(
            f"{path}:{line}:{column}: syntax error: {message}",
            details={"file": str(path), "line": line, "column": column, "error": message},
        ) from exc
    statements = []
    for piece in slices:
        start = int(piece.start)
        line, column = lines.position(start)
        statements.append(Statement(text=text[piece], offset=start, line=line, column=column))
    return tuple(statements)


def _blank_meta_commands(
    path: Path, text: str, lines: LineIndex, allowed: frozenset[str]
) -> tuple[str, tuple[tuple[int, str], ...]]:
    """``text`` with the allowed meta-command lines blanked; refuse any other meta-command.

    Only a backslash that PostgreSQL's scanner sees as a token (not inside a
    string, a dollar-quoted body or a comment) at the start of a line counts.
    """
    if "\\" not in text or not _META_LINE.search(text):
        return text, ()
    from pglast import parser

    try:
        # pg_dump's random \restrict key is not SQL: one starting with a digit
        # ("3oRQ...") is trailing junk after a number to the scanner. Blank the
        # keys (letters and digits only, so no quoting can change) for the scan
        # alone; positions stay the same.
        tokens = parser.scan(_RESTRICT_KEY.sub(_blank_key, text))
    except parser.ParseError:
        return text, ()  # the split reports the syntax error with its position
    blanked = list(text) if allowed else None
    skipped = []
    for token in tokens:
        if token.name != "ASCII_92":  # a bare backslash
            continue
        start = int(token.start)
        line_start = text.rfind("\n", 0, start) + 1
        if text[line_start:start].strip(" \t"):
            continue  # mid-line: the parser reports it as a syntax error
        line_end = text.find("\n", start)
        line_end = len(text) if line_end == -1 else line_end
        command_line = text[start:line_end].rstrip("\r")
        command = command_line.split(maxsplit=1)[0] if command_line.split() else "\\"
        line, column = lines.position(start)
        if command not in allowed:
            fix = META_COMMAND_FIX
            if command == "\\.":
                fix = (
                    "the end of COPY data: this file holds table data (a pg_dump without "
                    "--schema-only?); SQL files here hold statements only"
                )
            raise MigrationFileError(
                f"{path}:{line}:{column}: {command_line[:60]!r}: {fix}",
                details={"file": str(path), "line": line, "column": column, "rule": "psql"},
            )
        assert blanked is not None
        blanked[line_start:line_end] = " " * (line_end - line_start)
        skipped.append((line, command_line))
    if blanked is None or not skipped:
        return text, ()
    return "".join(blanked), tuple(skipped)


def execute_script(conn: psycopg.Connection[Any], script: SqlScript) -> None:
    """Run every statement of ``script`` on ``conn``, in order.

    The caller decides the transaction (a ``conn.transaction()`` block, or
    autocommit for non-transactional scripts). A failing statement raises
    ``MigrationFailed`` naming the file and line; psycopg's own error is chained
    so the caller can still inspect its SQLSTATE.
    """
    for statement in script.statements:
        try:
            conn.execute(statement.text.encode("utf-8"))  # bytes: never %-formatted
        except psycopg.Error as exc:
            raise statement_error(script, statement, exc) from exc


def statement_error(script: SqlScript, statement: Statement, exc: psycopg.Error) -> MigrationFailed:
    """A ``MigrationFailed`` that points at the line in ``script`` where ``exc`` happened."""
    diag = exc.diag
    offset = statement.offset
    if diag.statement_position:
        # The server counts characters from 1 within the statement it received.
        offset += int(diag.statement_position) - 1
    line, column = script.line_of(offset)
    parts = [diag.message_primary or str(exc).strip()]
    if diag.message_detail:
        parts.append(f"DETAIL: {diag.message_detail}")
    if diag.message_hint:
        parts.append(f"HINT: {diag.message_hint}")
    message = f"{script.path}:{line}:{column}: " + " ".join(parts)
    return MigrationFailed(
        message,
        details={
            "file": str(script.path),
            "line": line,
            "column": column,
            "sqlstate": diag.sqlstate,
            "error": diag.message_primary,
        },
    )


def _parse_directives(path: Path, text: str, lines: LineIndex) -> dict[str, str]:
    directives: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    if "rollgate:" not in text:
        return directives
    for match in _DIRECTIVE.finditer(text):
        line, _ = lines.position(match.start())
        where = f"{path}:{line}"
        for item in match["body"].split():
            key, sep, value = item.partition("=")
            if not sep or not value:
                raise MigrationFileError(f"{where}: directive {item!r} is not key=value")
            if key not in _KNOWN_DIRECTIVES:
                raise MigrationFileError(
                    f"{where}: unknown directive {key!r}; known: {', '.join(_KNOWN_DIRECTIVES)}"
                )
            if key in first_seen:
                raise MigrationFileError(
                    f"{where}: directive {key!r} is already set on line {first_seen[key]}; keep one"
                )
            first_seen[key] = line
            if key == "transaction" and value not in ("true", "false"):
                raise MigrationFileError(
                    f"{where}: transaction must be true or false, not {value!r}"
                )
            if key == "catalog" and value != "unchanged":
                raise MigrationFileError(
                    f"{where}: catalog can only be declared unchanged (a migration that "
                    f"changes only privileges), not {value!r}"
                )
            if key in _TIMEOUT_BOUNDS:
                _check_timeout(where, key, value)
            directives[key] = value
    return directives


def timeout_milliseconds(value: str) -> int | None:
    """``5s`` -> 5000, as PostgreSQL reads it (a bare number is milliseconds); None if malformed."""
    match = _TIMEOUT.fullmatch(value)
    if not match:
        return None
    number = match["number"]
    if len(number) > 15:  # beyond any bound, and int() of a huge string is slow
        return _INT_MAX * 1000
    return int(number) * _UNIT_MS[match["unit"] or ""]


def _check_timeout(where: str, key: str, value: str) -> None:
    milliseconds = timeout_milliseconds(value)
    if milliseconds is None:
        raise MigrationFileError(
            f"{where}: {key}={value!r} is not a duration like 500ms, 5s, 10min, 1h or 0"
        )
    smallest, largest, zero_allowed, bounds = _TIMEOUT_BOUNDS[key]
    if milliseconds == 0 and zero_allowed:
        return
    if not smallest <= milliseconds <= min(largest, _INT_MAX):
        raise MigrationFileError(f"{where}: {key}={value} is out of bounds: it must be {bounds}")
