"""The canonical schema file: loading it, and regenerating it from the migrations.

Loading (``read_schema_file`` + ``load_schema``) accepts what teams actually
have, ``pg_dump --schema-only`` output taken from production, verbatim:

* PostgreSQL 18's psql meta-commands ``\\restrict KEY`` / ``\\unrestrict KEY``
  are blanked out (same length, so every ``file:line`` stays true);
* its ``SET`` lines and ``set_config('search_path', '', false)`` run as they
  are, and the file runs with ``check_function_bodies = off`` (as pg_dump's
  own header sets), so a function body may name a table created further down;
* ownership (``ALTER ... OWNER TO``) and privileges (``GRANT``/``REVOKE``,
  ``ALTER DEFAULT PRIVILEGES``) are skipped: they name production's roles,
  which a throwaway server does not have, and the catalog comparison leaves
  owners and privileges out anyway;
* ``SET statement_timeout``/``lock_timeout``/``transaction_timeout``/
  ``idle_in_transaction_session_timeout`` are skipped too (pg_dump writes
  ``= 0``): the load has a bounded wait of its own.

The file runs in one transaction as the RDS-like, non-superuser owner role
(``db.throwaway.create_database(..., owner=True)``), with a
``statement_timeout`` (default 15min) and a ``lock_timeout`` (default 5s): a
file that sleeps or waits forever fails, naming its ``file:line``. A
``-- rollgate: statement_timeout=... lock_timeout=...`` directive in the file
overrides the defaults, an explicit argument overrides both.

Regenerating (``generate_schema``, the engine of ``rollgate db schema``):
apply every migration on a throwaway server as the owner role, then
``pg_dump --schema-only --no-owner --no-privileges`` without Rollgate's own
history, normalised so the same migrations always give the same bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from core.errors import CannotRun, ToolUnavailable
from core.postgres import connect
from core.progress import Progress
from db.catalog import EVERY_SCHEMA, Catalog, read_catalog
from db.config import CatalogScope
from db.errors import MigrationFailed
from db.history import HISTORY_SCHEMA, HISTORY_TABLE
from db.migrations import Migration
from db.runner import MigrationRunner
from db.sqlfile import (
    SqlScript,
    Statement,
    read_schema_script,
    statement_error,
)
from db.throwaway import ThrowawayPostgres, create_database, drop_database

# Header lines that vary with the server and pg_dump builds, not the schema.
_VERSION_LINE = re.compile(r"^-- Dumped (from database|by pg_dump) version .*\n", re.MULTILINE)

_TIMEOUT_SETTINGS = frozenset(
    {
        "statement_timeout",
        "lock_timeout",
        "transaction_timeout",
        "idle_in_transaction_session_timeout",
    }
)
PG_DUMP_TIMEOUT_SECONDS = 600.0
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0}
# The server's statement_timeout normally fires first and names itself; the
# watchdog is the backstop for files that lift it.
_WATCHDOG_GRACE = 1.0
_WATCHDOG_POLL = 0.05


@dataclass(frozen=True)
class SkippedStatement:
    """A statement of the schema file that the loader does not run, and why."""

    line: int
    reason: str


@dataclass(frozen=True)
class SchemaFile:
    """A parsed schema file: what runs, and what is skipped."""

    script: SqlScript
    skipped: tuple[SkippedStatement, ...] = field(default=())


def read_schema_file(path: Path) -> SchemaFile:
    """Read and parse a schema file (plain SQL or pg_dump output); errors name ``file:line``.

    ``db.sqlfile.read_schema_script`` does the reading (regular files only,
    bounded size, no NUL bytes, pg_dump's psql meta-commands blanked in place
    so every file:line stays true); this keeps what the loader runs apart from
    what it skips, and why.
    """
    parsed = read_schema_script(path)
    kept: list[Statement] = []
    skipped: list[SkippedStatement] = []
    for statement in parsed.statements:
        reason = _skip_reason(statement)
        if reason is None:
            kept.append(statement)
        else:
            skipped.append(SkippedStatement(statement.line, reason))
    return SchemaFile(dataclasses.replace(parsed, statements=tuple(kept)), tuple(skipped))


def load_schema(
    dsn: str,
    schema: SchemaFile,
    *,
    statement_timeout: str | None = None,
    lock_timeout: str | None = None,
) -> None:
    """Run ``schema`` in one transaction on ``dsn`` with bounded waits (see module docstring).

    The bound holds twice: the server's ``statement_timeout``/``lock_timeout``,
    and a client-side watchdog that cancels any statement running past
    ``statement_timeout`` (plus a second's grace), which nothing in the file
    (``RESET ALL``, ``set_config(...)``, a ``DO`` block) can lift.
    """
    script = schema.script
    statement_timeout = statement_timeout or script.statement_timeout
    lock_timeout = lock_timeout or script.lock_timeout
    limit = _duration_seconds(statement_timeout)
    with connect(dsn) as conn, conn.transaction():
        conn.execute(
            "SELECT set_config('check_function_bodies', 'off', true), "
            "set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)",
            (statement_timeout, lock_timeout),
        )
        with _Watchdog(conn, None if limit is None else limit + _WATCHDOG_GRACE) as watchdog:
            for statement in script.statements:
                try:
                    with watchdog.armed():
                        conn.execute(statement.text.encode("utf-8"))  # bytes: never %-formatted
                except psycopg.Error as exc:
                    error = statement_error(script, statement, exc)
                    if watchdog.fired:
                        error = MigrationFailed(
                            error.message.replace(
                                "canceling statement due to user request",
                                "canceling statement due to statement timeout",
                            ),
                            details={**error.details, "cancelled_by": "rollgate watchdog"},
                        )
                    raise _explain_timeout(error, statement_timeout, lock_timeout) from exc


class _Watchdog:
    """Cancels the statement in flight on ``conn`` once it has run ``seconds``."""

    def __init__(self, conn: psycopg.Connection[Any], seconds: float | None) -> None:
        self._conn = conn
        self._seconds = seconds
        self._deadline: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="rollgate-schema-watchdog")
        self.fired = False

    def __enter__(self) -> _Watchdog:
        if self._seconds is not None:
            self._thread.daemon = True
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        if self._seconds is not None:
            with self._lock:
                self._deadline = time.monotonic() + self._seconds
        try:
            yield
        finally:
            with self._lock:
                self._deadline = None

    def _watch(self) -> None:
        while not self._stop.wait(_WATCHDOG_POLL):
            # Cancel under the lock: the next statement cannot start meanwhile,
            # so a late cancel finds an idle session (a no-op), never a stranger.
            with self._lock:
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    self._deadline = None
                    self.fired = True
                    self._conn.cancel_safe(timeout=10)


def _duration_seconds(value: str) -> float | None:
    """Seconds in a duration (``500ms``, ``5s``, ``10min``, ``1h``; bare = ms); 0 is no bound."""
    match = re.fullmatch(r"\s*(\d+)\s*(ms|s|min|h)?\s*", value)
    if not match:
        raise CannotRun(
            f"statement_timeout {value!r} is not a duration like 500ms, 5s, 10min or 1h"
        )
    seconds = int(match[1]) * _UNIT_SECONDS[match[2] or "ms"]
    return seconds or None


def canonical_catalog_of(
    server: ThrowawayPostgres,
    schema_path: Path,
    *,
    statement_timeout: str | None = None,
    lock_timeout: str | None = None,
    scope: CatalogScope = EVERY_SCHEMA,
) -> Catalog:
    """Load ``schema_path`` as the owner role into a scratch database; read its catalog."""
    schema = read_schema_file(schema_path)
    name = f"canonical_{secrets.token_hex(4)}"
    dsn = create_database(server, name, owner=True)
    try:
        load_schema(dsn, schema, statement_timeout=statement_timeout, lock_timeout=lock_timeout)
        # A fresh session: the file's own SETs (search_path = '', ...) stay behind.
        with connect(dsn) as conn:
            return read_catalog(conn, scope=scope)
    finally:
        drop_database(server, name)


def generate_schema(
    server: ThrowawayPostgres,
    migrations: Sequence[Migration],
    *,
    progress: Progress | None = None,
) -> str:
    """The schema every migration builds, as normalised ``pg_dump --schema-only`` text."""
    say = progress or (lambda message: None)
    name = f"schema_{secrets.token_hex(4)}"
    owner_dsn = create_database(server, name, owner=True)
    try:
        say(f"applying {len(migrations)} migration(s) on a throwaway Postgres ({server.backend})")
        with MigrationRunner(owner_dsn, migrations, lock_wait=5, lock_retries=0) as runner:
            runner.migrate()
        say("dumping the result with pg_dump --schema-only")
        return normalize_dump(_pg_dump_schema(server, name))
    finally:
        drop_database(server, name)


@dataclass(frozen=True)
class GeneratedSchema:
    """The schema the migrations build, and the server that built it."""

    text: str
    backend: str
    server_major: int
    migrations: tuple[str, ...]
    warnings: tuple[str, ...]


def schema_from_migrations(
    migrations: Sequence[Migration],
    *,
    backend: str = "embedded",
    image: str | None = None,
    progress: Progress | None = None,
) -> GeneratedSchema:
    """Start a throwaway server that has the extensions needed; ``generate_schema`` on it."""
    from db.throwaway.extensions import required_extensions, start_for_extensions

    say = progress or (lambda message: None)
    needed = required_extensions(script for m in migrations for script in (m.up, m.down))
    with start_for_extensions(backend, needed, image=image, progress=say) as server:
        for warning in server.warnings:
            say(f"warning: {warning}")
        text = generate_schema(server, migrations, progress=say)
        return GeneratedSchema(
            text=text,
            backend=server.backend,
            server_major=server.major_version,
            migrations=tuple(m.label for m in migrations),
            warnings=tuple(server.warnings),
        )


def normalize_dump(text: str) -> str:
    """pg_dump text without what varies between runs and machines.

    Dropped: the ``\\restrict``/``\\unrestrict`` lines (their key is random per
    run; they guard psql against a malicious server, and this dump comes from
    a throwaway server Rollgate started and reads back without psql) and the
    ``Dumped from/by ... version`` lines (they name the builds, not the schema).
    Each dropped line takes the blank line after it along.
    """
    text = re.sub(r"^\\(un)?restrict [A-Za-z0-9]+\n(\n)?", "", text, flags=re.MULTILINE)
    text = re.sub(_VERSION_LINE.pattern + r"(\n)?", "", text, flags=re.MULTILINE)
    return text


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: readers see the old file or the new, never half."""
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise CannotRun(f"cannot write {path}: {exc.strerror} ({directory})") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o777)
        else:
            os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _skip_reason(statement: Statement) -> str | None:
    from pglast import ast, enums, parser

    lowered = statement.text.lower()
    if not any(word in lowered for word in ("owner", "grant", "revoke", "privileges", "set")):
        return None  # cheap filter: most statements cannot be any of these
    nodes = [raw.stmt for raw in parser.parse_sql(statement.text)]
    if len(nodes) != 1:
        return None
    node = nodes[0]
    owner_change = isinstance(node, ast.AlterOwnerStmt) or (
        isinstance(node, ast.AlterTableStmt)
        and bool(node.cmds)
        and all(cmd.subtype == enums.AlterTableType.AT_ChangeOwner for cmd in node.cmds or ())
    )
    if owner_change:
        return "ownership (ALTER ... OWNER TO)"
    if isinstance(node, ast.GrantStmt | ast.AlterDefaultPrivilegesStmt):
        return "privileges (GRANT/REVOKE)"
    if (
        isinstance(node, ast.VariableSetStmt)
        and node.name is not None
        and node.name.lower() in _TIMEOUT_SETTINGS
    ):
        return f"{node.name} (the load has its own bounded wait)"
    return None


def _explain_timeout(
    exc: MigrationFailed, statement_timeout: str, lock_timeout: str
) -> MigrationFailed:
    if exc.details.get("sqlstate") not in ("57014", "55P03"):
        return exc
    limit = (
        f"statement_timeout={statement_timeout}"
        if exc.details.get("sqlstate") == "57014"
        else f"lock_timeout={lock_timeout}"
    )
    return MigrationFailed(
        f"{exc.message} (loading the schema file is bounded by {limit}; a schema file "
        "creates objects and should not wait: remove the slow statement, or raise the "
        "bound with a `-- rollgate: statement_timeout=...` line in the file)",
        details={**exc.details, "bound": limit},
    )


def _pg_dump_schema(server: ThrowawayPostgres, dbname: str) -> str:
    """``pg_dump --schema-only`` of ``dbname``, without Rollgate's own history."""
    bin_dir = server.client_bin()
    params = conninfo_to_dict(server.dsn(dbname))
    # Connection parameters through the environment: a password in argv is
    # visible to every user of the machine (ps).
    env = {**os.environ}
    for key, variable in (
        ("host", "PGHOST"),
        ("port", "PGPORT"),
        ("user", "PGUSER"),
        ("password", "PGPASSWORD"),
        ("dbname", "PGDATABASE"),
    ):
        value = params.get(key)
        if value:
            env[variable] = str(value)
        else:
            env.pop(variable, None)
    with psycopg.connect(server.dsn(dbname)) as conn:
        row = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"{HISTORY_SCHEMA}.{HISTORY_TABLE}",)
        ).fetchone()
    history_in_own_schema = bool(row and row[0])
    command = [
        str(bin_dir / "pg_dump"),
        "--schema-only",
        "--no-owner",
        "--no-privileges",
        "--no-tablespaces",
        f"--exclude-schema={HISTORY_SCHEMA}",
    ]
    if not history_in_own_schema:
        # A runner from before the move keeps its history in public.
        command.append(f"--exclude-table=public.{HISTORY_TABLE}")
    try:
        done = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=PG_DUMP_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolUnavailable(f"could not run {command[0]}: {exc}") from exc
    if done.returncode != 0:
        raise CannotRun(f"pg_dump --schema-only failed: {done.stderr.strip()}")
    return done.stdout
