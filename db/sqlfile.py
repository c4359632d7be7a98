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
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from db.errors import MigrationFailed, MigrationFileError

DEFAULT_LOCK_TIMEOUT = "5s"
DEFAULT_STATEMENT_TIMEOUT = "15min"

_DIRECTIVE = re.compile(r"^\s*--\s*rollgate:(?P<body>.*)$", re.MULTILINE)
_TIMEOUT = re.compile(r"^(0|[1-9][0-9]*(ms|s|min|h)?)$")
_KNOWN_DIRECTIVES = ("transaction", "lock_timeout", "statement_timeout")


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

    def line_of(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset in the file."""
        return _line_and_column(self.text, offset)


def read_script(path: Path) -> SqlScript:
    """Read, checksum and parse ``path``; raise ``MigrationFileError`` on any problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MigrationFileError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _line_and_column(raw[: exc.start].decode("utf-8", "replace"), exc.start)
        raise MigrationFileError(
            f"{path}:{line}:{column}: not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
            details={"file": str(path), "line": line, "column": column},
        ) from exc
    directives = _parse_directives(path, text)
    statements = split_statements(path, text)
    return SqlScript(
        path=path,
        text=text,
        sha256=hashlib.sha256(raw).hexdigest(),
        statements=statements,
        transactional=directives.get("transaction", "true") == "true",
        lock_timeout=directives.get("lock_timeout", DEFAULT_LOCK_TIMEOUT),
        statement_timeout=directives.get("statement_timeout", DEFAULT_STATEMENT_TIMEOUT),
        directives=directives,
    )


def split_statements(path: Path, text: str) -> tuple[Statement, ...]:
    """Split ``text`` into statements with PostgreSQL's parser; syntax errors name the line."""
    from pglast import parser

    try:
        # Parsing the whole file first catches errors that splitting alone
        # would let through (splitting only needs to find statement ends).
        parser.parse_sql(text)
        slices = list(parser.split(text, with_parser=True, only_slices=True))
    except parser.ParseError as exc:
        message = str(exc.args[0])
        # pglast gives no location for errors at end of input: point at the end.
        location = exc.args[1] if len(exc.args) > 1 else None
        offset = len(text.rstrip()) if location is None else int(location)
        line, column = _line_and_column(text, offset)
        raise MigrationFileError(
            f"{path}:{line}:{column}: syntax error: {message}",
            details={"file": str(path), "line": line, "column": column, "error": message},
        ) from exc
    statements = []
    for piece in slices:
        start = int(piece.start)
        line, column = _line_and_column(text, start)
        statements.append(Statement(text=text[piece], offset=start, line=line, column=column))
    return tuple(statements)


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


def _parse_directives(path: Path, text: str) -> dict[str, str]:
    directives: dict[str, str] = {}
    for match in _DIRECTIVE.finditer(text):
        line, _ = _line_and_column(text, match.start())
        for item in match["body"].split():
            key, sep, value = item.partition("=")
            where = f"{path}:{line}"
            if not sep or not value:
                raise MigrationFileError(f"{where}: directive {item!r} is not key=value")
            if key not in _KNOWN_DIRECTIVES:
                raise MigrationFileError(
                    f"{where}: unknown directive {key!r}; known: {', '.join(_KNOWN_DIRECTIVES)}"
                )
            if key == "transaction" and value not in ("true", "false"):
                raise MigrationFileError(
                    f"{where}: transaction must be true or false, not {value!r}"
                )
            if key.endswith("_timeout") and not _TIMEOUT.match(value):
                raise MigrationFileError(
                    f"{where}: {key}={value!r} is not a duration like 500ms, 5s, 10min, 1h or 0"
                )
            directives[key] = value
    return directives


def _line_and_column(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    line = before.count("\n") + 1
    column = offset - (before.rfind("\n") + 1) + 1
    return line, column
