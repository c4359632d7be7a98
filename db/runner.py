"""The migration runner: the only code that applies or reverts migrations.

It reads like the job it does::

    with runner.migration_lock():
        plan = plan_upgrade(migrations, runner.read_history())
        for step in plan.steps:
            runner.run_step(step)

Guarantees, and how they are kept:

* **One runner at a time.** A session-level advisory lock, taken by polling
  ``pg_try_advisory_lock`` on a dedicated, idle connection with a bounded
  wait. A blocking ``pg_advisory_lock`` would sit in an open transaction and
  deadlock with ``CREATE INDEX CONCURRENTLY``, which waits for every older
  transaction. The plan is computed only after the lock is held, so a runner
  that waited applies nothing that another already applied.
* **History never lies.** A transactional migration writes its history row in
  the same transaction as its SQL and verify script: both land or neither
  does. A non-transactional one is first recorded as ``applying`` and only
  marked ``applied`` after its verify script passes; an interrupted one is
  resumed by the next run (its statements are idempotent by contract).
* **No silent INVALID index.** Before a non-transactional migration runs, an
  INVALID index that one of its ``CREATE INDEX CONCURRENTLY`` statements
  builds (left by a failed or killed build) is dropped so the build starts
  clean; ``IF NOT EXISTS`` would otherwise skip it. Any other INVALID index is
  reported by ``status`` and in every run report.
* **Bounded waits.** ``lock_timeout`` and ``statement_timeout`` are set for
  every migration (file directives override the defaults); a lock timeout is
  retried a bounded number of times with backoff.
* **A dead client stops its work.** ``client_connection_check_interval`` makes
  the server abort a killed runner's statement instead of finishing it alone.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from core.postgres import connect
from core.progress import Progress
from db.errors import HistoryMismatch, LockNotAcquired, MigrationFailed
from db.migrations import Migration
from db.plan import (
    APPLIED,
    APPLYING,
    REVERTING,
    HistoryRow,
    MigrationPlan,
    Step,
    check_history,
    current_version,
    plan_revert,
    plan_upgrade,
)
from db.sqlfile import SqlScript, execute_script

# Any constant works as long as every runner agrees; it spells "Roll" in ASCII.
# It stays below 2**31 so pg_locks shows it plainly in objid.
MIGRATION_LOCK_KEY = 0x526F6C6C
LOCK_NOT_AVAILABLE = "55P03"
HISTORY_TABLE = "schema_migrations"

_HISTORY_DDL = """
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    state text NOT NULL,
    up_sha256 text NOT NULL,
    down_sha256 text NOT NULL,
    verify_sha256 text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    duration_ms integer,
    applied_by text NOT NULL,
    CONSTRAINT schema_migrations_pkey PRIMARY KEY (version),
    CONSTRAINT schema_migrations_state_valid CHECK (state IN ('applied', 'applying', 'reverting'))
)
"""


@dataclass(frozen=True)
class StepResult:
    """What happened when one step ran."""

    label: str
    direction: str
    transactional: bool
    duration_ms: int
    retries: int = 0
    repairs: tuple[str, ...] = ()
    resumed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "migration": self.label,
            "direction": self.direction,
            "transactional": self.transactional,
            "duration_ms": self.duration_ms,
            "retries": self.retries,
            "repairs": list(self.repairs),
            "resumed": self.resumed,
        }


@dataclass(frozen=True)
class RunReport:
    """The outcome of ``migrate`` or ``revert``."""

    plan: MigrationPlan
    dry_run: bool
    executed: tuple[StepResult, ...]
    version_before: int
    version_after: int
    invalid_indexes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "direction": self.plan.direction,
            "dry_run": self.dry_run,
            "version_before": self.version_before,
            "version_after": self.version_after,
            "target": self.plan.target,
            "plan": [step.describe() for step in self.plan.steps],
            "executed": [result.to_dict() for result in self.executed],
            "invalid_indexes": list(self.invalid_indexes),
        }


@dataclass(frozen=True)
class MigrationStatus:
    label: str
    version: int
    state: str  # applied | pending | applying | reverting | orphaned
    applied_at: datetime | None = None
    applied_by: str | None = None
    duration_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "migration": self.label,
            "version": self.version,
            "state": self.state,
            "applied_at": self.applied_at.isoformat() if self.applied_at else None,
            "applied_by": self.applied_by,
            "duration_ms": self.duration_ms,
        }


@dataclass(frozen=True)
class StatusReport:
    current: int
    latest: int
    migrations: tuple[MigrationStatus, ...]
    problems: tuple[str, ...] = ()
    invalid_indexes: tuple[str, ...] = ()
    server_version: str = ""

    @property
    def healthy(self) -> bool:
        """No refusals pending and nothing half-done or INVALID."""
        return (
            not self.problems
            and not self.invalid_indexes
            and all(m.state in (APPLIED, "pending") for m in self.migrations)
        )

    @property
    def pending(self) -> list[MigrationStatus]:
        return [m for m in self.migrations if m.state == "pending"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "latest": self.latest,
            "healthy": self.healthy,
            "server_version": self.server_version,
            "migrations": [m.to_dict() for m in self.migrations],
            "problems": list(self.problems),
            "invalid_indexes": list(self.invalid_indexes),
        }


@dataclass
class MigrationRunner:
    """Applies and reverts ``migrations`` on the database at ``dsn``."""

    dsn: str
    migrations: Sequence[Migration]
    lock_wait: float = 60.0
    lock_retries: int = 3
    retry_backoff: float = 1.0
    actor: str | None = None
    progress: Progress = field(default=lambda message: None)
    _conn: psycopg.Connection[Any] | None = field(default=None, init=False, repr=False)

    # --- connections ---------------------------------------------------------

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.dsn)
            # Abort our statements promptly if this process dies (PG >= 14).
            self._conn.execute("SET client_connection_check_interval = '1s'")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> MigrationRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        """Hold the migration lock for the block; wait at most ``lock_wait`` seconds."""
        lock_conn = connect(self.dsn, application_name="rollgate-lock")
        try:
            deadline = time.monotonic() + self.lock_wait
            announced = False
            while not _scalar(lock_conn, "SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)):
                holder = _describe_lock_holder(lock_conn)
                if time.monotonic() >= deadline:
                    raise LockNotAcquired(
                        f"another migration runner holds the lock ({holder}) and did not "
                        f"release it within {self.lock_wait:g}s; nothing was applied. "
                        "Wait for it to finish, then run again.",
                        details={"holder": holder, "waited_seconds": self.lock_wait},
                    )
                if not announced:
                    self.progress(f"waiting for the migration lock held by {holder}")
                    announced = True
                time.sleep(0.2)
            yield
        finally:
            # Closing the session releases the lock even if unlock fails.
            lock_conn.close()

    # --- reading -------------------------------------------------------------

    def read_history(self) -> list[HistoryRow]:
        """Rows of schema_migrations, oldest first ([] before the first run)."""
        exists = _scalar(self.conn, "SELECT to_regclass('public.schema_migrations') IS NOT NULL")
        if not exists:
            return []
        rows = self.conn.execute(
            "SELECT version, name, state, up_sha256, down_sha256, verify_sha256, "
            "applied_at, duration_ms, applied_by FROM public.schema_migrations ORDER BY version"
        ).fetchall()
        return [HistoryRow(*row) for row in rows]

    def invalid_indexes(self) -> list[str]:
        """Qualified names of INVALID indexes (failed or interrupted CONCURRENTLY builds)."""
        rows = self.conn.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_index i "
            "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE NOT i.indisvalid "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
            "ORDER BY 1"
        ).fetchall()
        return [row[0] for row in rows]

    def status(self) -> StatusReport:
        """Where the database stands against the migration files. Changes nothing."""
        history = self.read_history()
        problems: tuple[str, ...] = ()
        try:
            check_history(self.migrations, history)
        except HistoryMismatch as exc:
            problems = tuple(exc.details.get("problems", [exc.message]))
        rows = {row.version: row for row in history}
        entries = []
        for migration in self.migrations:
            row = rows.pop(migration.version, None)
            if row is None:
                entries.append(MigrationStatus(migration.label, migration.version, "pending"))
            else:
                entries.append(
                    MigrationStatus(
                        migration.label,
                        migration.version,
                        row.state,
                        row.applied_at,
                        row.applied_by,
                        row.duration_ms,
                    )
                )
        for row in rows.values():  # recorded, but no files: reported as a problem too
            entries.append(
                MigrationStatus(row.label, row.version, "orphaned", row.applied_at, row.applied_by)
            )
        return StatusReport(
            current=current_version(history),
            latest=self.migrations[-1].version if self.migrations else 0,
            migrations=tuple(sorted(entries, key=lambda m: m.version)),
            problems=problems,
            invalid_indexes=tuple(self.invalid_indexes()),
            server_version=str(_scalar(self.conn, "SHOW server_version")),
        )

    # --- changing ------------------------------------------------------------

    def migrate(self, target: int | None = None, *, dry_run: bool = False) -> RunReport:
        """Apply pending migrations up to ``target`` (default: all)."""
        return self._run(lambda history: plan_upgrade(self.migrations, history, target), dry_run)

    def revert(self, target: int, *, dry_run: bool = False) -> RunReport:
        """Revert applied migrations newer than ``target``."""
        return self._run(lambda history: plan_revert(self.migrations, history, target), dry_run)

    def _run(
        self, make_plan: Callable[[list[HistoryRow]], MigrationPlan], dry_run: bool
    ) -> RunReport:
        if dry_run:
            history = self.read_history()
            plan = make_plan(history)
            version = current_version(history)
            return RunReport(plan, True, (), version, version, tuple(self.invalid_indexes()))
        with self.migration_lock():
            self.conn.execute(_HISTORY_DDL)
            history = self.read_history()
            plan = make_plan(history)  # only now: another runner may have moved us on
            before = current_version(history)
            if plan.empty:
                self.progress(f"nothing to do: the database is at {before:04d}")
            executed = []
            for number, step in enumerate(plan.steps, start=1):
                self.progress(f"[{number}/{len(plan.steps)}] {step.describe()}")
                executed.append(self.run_step(step))
            after = current_version(self.read_history())
        return RunReport(plan, False, tuple(executed), before, after, tuple(self.invalid_indexes()))

    def record_baseline(self, migrations: Sequence[Migration]) -> None:
        """Record ``migrations`` as applied without running them (``db baseline``).

        One transaction: every row lands or none does. The caller holds
        ``migration_lock()`` and has proved that the database already has the
        schema these migrations build; nothing here checks that.
        """
        with self.conn.transaction():
            self.conn.execute(_HISTORY_DDL)
            for migration in migrations:
                self._record(migration, APPLIED, None)

    def run_step(self, step: Step) -> StepResult:
        """Run one step, retrying a bounded number of times on lock timeouts."""
        script = step.migration.script(step.direction)
        for attempt in range(self.lock_retries + 1):
            try:
                started = time.monotonic()
                if script.transactional:
                    repairs: tuple[str, ...] = ()
                    self._run_in_transaction(step, script, started)
                else:
                    repairs = self._run_outside_transaction(step, script, started)
                return StepResult(
                    label=step.migration.label,
                    direction=step.direction,
                    transactional=script.transactional,
                    duration_ms=_elapsed_ms(started),
                    retries=attempt,
                    repairs=repairs,
                    resumed=step.resume,
                )
            except MigrationFailed as exc:
                if (
                    exc.details.get("sqlstate") != LOCK_NOT_AVAILABLE
                    or attempt == self.lock_retries
                ):
                    raise
                delay = self.retry_backoff * 2**attempt
                self.progress(
                    f"lock timeout ({script.lock_timeout}) in {step.migration.label}; "
                    f"retry {attempt + 1}/{self.lock_retries} in {delay:g}s"
                )
                time.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    def _run_in_transaction(self, step: Step, script: SqlScript, started: float) -> None:
        migration = step.migration
        with self.conn.transaction():
            _set_timeouts(self.conn, script, local=True)
            execute_script(self.conn, script)
            if step.direction == "up":
                execute_script(self.conn, migration.verify)
                self._record(migration, APPLIED, _elapsed_ms(started))
            else:
                self._forget(migration)

    def _run_outside_transaction(
        self, step: Step, script: SqlScript, started: float
    ) -> tuple[str, ...]:
        migration = step.migration
        repairs: tuple[str, ...] = ()
        if step.direction == "up":
            repairs = self._drop_invalid_indexes_built_by(script)
        # Claim only what is true: this migration has started, not finished.
        self._record(migration, APPLYING if step.direction == "up" else REVERTING, None)
        _set_timeouts(self.conn, script, local=False)
        try:
            execute_script(self.conn, script)
            if step.direction == "up":
                with self.conn.transaction():
                    execute_script(self.conn, migration.verify)
                self._record(migration, APPLIED, _elapsed_ms(started))
            else:
                self._forget(migration)
        finally:
            if not self.conn.closed and not self.conn.broken:
                self.conn.execute("RESET lock_timeout")
                self.conn.execute("RESET statement_timeout")
        return repairs

    def _drop_invalid_indexes_built_by(self, script: SqlScript) -> tuple[str, ...]:
        invalid = set(self.invalid_indexes())
        dropped = []
        for qualified in concurrent_index_targets(script):
            if qualified in invalid:
                self.progress(f"dropping INVALID index {qualified} left by an interrupted build")
                schema, name = qualified.split(".", 1)
                self.conn.execute(
                    sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(
                        sql.Identifier(schema), sql.Identifier(name)
                    )
                )
                dropped.append(f"dropped INVALID index {qualified} before rebuilding it")
        return tuple(dropped)

    def _record(self, migration: Migration, state: str, duration_ms: int | None) -> None:
        self.conn.execute(
            "INSERT INTO public.schema_migrations AS h (version, name, state, up_sha256, "
            "down_sha256, verify_sha256, applied_at, duration_ms, applied_by) "
            "VALUES (%s, %s, %s, %s, %s, %s, now(), %s, %s) "
            "ON CONFLICT (version) DO UPDATE SET state = EXCLUDED.state, "
            "applied_at = EXCLUDED.applied_at, duration_ms = EXCLUDED.duration_ms, "
            "applied_by = EXCLUDED.applied_by",
            (
                migration.version,
                migration.name,
                state,
                migration.up.sha256,
                migration.down.sha256,
                migration.verify.sha256,
                duration_ms,
                self._actor(),
            ),
        )

    def _forget(self, migration: Migration) -> None:
        self.conn.execute(
            "DELETE FROM public.schema_migrations WHERE version = %s", (migration.version,)
        )

    def _actor(self) -> str:
        """Who applied it: ROLLGATE_ACTOR (a CI job, an on-call handle) or role@host."""
        if self.actor:
            return self.actor
        if os.environ.get("ROLLGATE_ACTOR"):
            return os.environ["ROLLGATE_ACTOR"]
        role = _scalar(self.conn, "SELECT current_user")
        return f"{role}@{socket.gethostname()}"


def concurrent_index_targets(script: SqlScript) -> list[str]:
    """``schema.name`` of every index ``script`` builds with CREATE INDEX CONCURRENTLY."""
    from pglast import ast, parse_sql

    targets = []
    for statement in script.statements:
        for raw in parse_sql(statement.text):
            node = raw.stmt
            if isinstance(node, ast.IndexStmt) and node.concurrent and node.idxname:
                schema = (node.relation.schemaname if node.relation else None) or "public"
                targets.append(f"{schema}.{node.idxname}")
    return targets


def _set_timeouts(conn: psycopg.Connection[Any], script: SqlScript, *, local: bool) -> None:
    scope = sql.SQL("SET LOCAL" if local else "SET")
    for name, value in (
        ("lock_timeout", script.lock_timeout),
        ("statement_timeout", script.statement_timeout),
    ):
        conn.execute(sql.SQL("{} {} = {}").format(scope, sql.Identifier(name), sql.Literal(value)))


def _describe_lock_holder(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(
        "SELECT a.pid, a.application_name, "
        "extract(epoch FROM now() - a.backend_start)::int "
        "FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = %s "
        "AND l.objsubid = 1 LIMIT 1",
        (MIGRATION_LOCK_KEY,),
    ).fetchone()
    if row is None:
        return "a session that has just released it"
    pid, application, seconds = row
    return f"server pid {pid}, application {application or 'unknown'!r}, connected {seconds}s ago"


def _scalar(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query.encode(), params).fetchone()
    return None if row is None else row[0]


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
