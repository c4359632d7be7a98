"""The migration runner: the only code that applies or reverts migrations.

It reads like the job it does::

    with runner.migration_lock():
        plan = plan_upgrade(migrations, runner.read_history())
        for step in plan.steps:
            runner.run_step(step)

Guarantees, and how they are kept:

* **One runner at a time.** A session-level advisory lock, taken by polling
  ``pg_try_advisory_lock`` with a bounded wait, held by the very session that
  runs the migrations. A blocking ``pg_advisory_lock`` would sit in an open
  transaction and deadlock with ``CREATE INDEX CONCURRENTLY``, which waits for
  every older transaction; polling in autocommit does not. The plan is computed
  only after the lock is held, so a runner that waited applies nothing that
  another already applied.
* **Losing the lock stops the work.** The lock and the work share one session
  on purpose: whoever ends the lock (``pg_terminate_backend``, a failover, a
  network cut) ends the statement that was running with it, so a second runner
  never "resumes" a ``CREATE INDEX CONCURRENTLY`` that the first is still
  building. (With a separate lock session, a killed lock would leave the work
  session running unguarded.) The runner never reconnects while it holds the
  lock, and before every statement of a non-transactional script and before
  every history write it confirms, on that session, that the lock is still
  granted to it (a script could run ``pg_advisory_unlock_all()``). If not, it
  stops with ``LockLost`` and writes nothing more.
* **History never lies.** History lives in Rollgate's own schema
  (``rollgate.schema_migrations``, see ``db.history``), never in a
  ``public.schema_migrations`` that Rails or golang-migrate own; Rollgate's
  own legacy table there is adopted (moved) under the lock. A transactional
  migration writes its history row in the same transaction as its SQL and
  verify script: both land or neither does. Before writing, the runner checks
  that it is still in the transaction it opened (the transaction id it took at
  BEGIN is still the current one): a file that slipped a COMMIT or ROLLBACK past
  the loader is refused and nothing is recorded. A non-transactional migration
  is first recorded as ``applying`` and only marked ``applied`` after its verify
  script passes; an interrupted one is resumed by the next run (its statements
  are idempotent by contract). After every script the runner re-reads its
  history and compares it with what it knows it wrote; a script that dropped or
  edited it fails the run, and the runner restores the rows it knows (the
  current step as ``applying``), so ``status`` never reports "healthy" on lost
  history.
* **Exactly the confirmed plan.** ``migrate``/``revert`` accept
  ``expected_plan``, a ``MigrationPlan.fingerprint()``; if the plan computed
  under the lock differs, nothing runs (``PlanChanged``).
* **Each migration starts from a clean session.** Before every step the session
  is reset (``RESET ALL``, role, temporary objects, sequences state, listeners;
  not ``DISCARD ALL``, which would release the lock), so a ``SET search_path``
  in one file never changes where the next one lands.
* **No silent INVALID index.** Before a non-transactional migration runs, an
  INVALID index that one of its ``CREATE INDEX CONCURRENTLY`` statements
  builds (left by a failed or killed build) is dropped so the build starts
  clean; ``IF NOT EXISTS`` would otherwise skip it. Any other INVALID index is
  reported by ``status`` and in every run report.
* **Bounded waits.** ``lock_timeout`` and ``statement_timeout`` are set for
  every migration (file directives override the defaults); a lock timeout is
  retried a bounded number of times with backoff.
* **A dead client stops its work; an interrupted one exits cleanly.**
  ``client_connection_check_interval`` makes the server abort a killed runner's
  statement instead of finishing it alone. Cleanup never sends a command on a
  session that is still busy (an interrupt can land mid-query): it cancels the
  query and closes the session instead, which also releases the lock.
* **Missing privileges are named.** A role that cannot create or write the
  history, or that a migration's statement needs, gets ``PrivilegeMissing``
  (exit 2) naming the privilege and the grant, before anything runs where
  that can be known up front.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import pq, sql

from core.postgres import connect
from core.progress import Progress
from db.errors import (
    HistoryMismatch,
    LockLost,
    LockNotAcquired,
    MigrationFailed,
    PlanChanged,
    PrivilegeMissing,
)
from db.history import HISTORY_QUALIFIED, HISTORY_SCHEMA, HISTORY_TABLE
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
from db.sqlfile import SqlScript, Statement, statement_error

# Any constant works as long as every runner agrees; it spells "Roll" in ASCII.
# It stays below 2**31 so pg_locks shows it plainly in objid.
MIGRATION_LOCK_KEY = 0x526F6C6C
LOCK_NOT_AVAILABLE = "55P03"
INSUFFICIENT_PRIVILEGE = "42501"
LEGACY_HISTORY = f"public.{HISTORY_TABLE}"

_HISTORY_COLUMNS = (
    "version",
    "name",
    "state",
    "up_sha256",
    "down_sha256",
    "verify_sha256",
    "applied_at",
    "duration_ms",
    "applied_by",
)

_HISTORY_DDL = f"""
CREATE TABLE {HISTORY_QUALIFIED} (
    version integer NOT NULL,
    name text NOT NULL,
    state text NOT NULL,
    up_sha256 text NOT NULL,
    down_sha256 text NOT NULL,
    verify_sha256 text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    duration_ms integer,
    applied_by text NOT NULL,
    xid bigint,
    CONSTRAINT schema_migrations_pkey PRIMARY KEY (version),
    CONSTRAINT schema_migrations_state_valid CHECK (state IN ('applied', 'applying', 'reverting'))
)
"""

_SELECT_HISTORY = (
    "SELECT version, name, state, up_sha256, down_sha256, verify_sha256, "
    "applied_at, duration_ms, applied_by FROM {table} ORDER BY version"
)

_LOCK_HELD = (
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory' "
    "AND pid = pg_backend_pid() AND classid = 0 AND objid = %s AND objsubid = 1 AND granted)"
)

# Session state a migration may leave behind, reset before every step. Not
# DISCARD ALL: it would also release the advisory lock this session holds.
_RESET_SESSION = (
    "RESET ALL",
    "RESET ROLE",
    "RESET SESSION AUTHORIZATION",
    "UNLISTEN *",
    "DISCARD TEMP",
    "DISCARD SEQUENCES",
    "DISCARD PLANS",
    # RESET ALL also reset this one; see the conn property for why it is set.
    "SET client_connection_check_interval = '1s'",
)


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
            "plan_fingerprint": self.plan.fingerprint(),
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
    # The server pid of the session holding the migration lock; None when not held.
    _lock_pid: int | None = field(default=None, init=False, repr=False)
    # What the history table must contain (version -> HistoryRow.essence) while
    # the lock is held: what was read under it, plus what this runner committed.
    _expected: dict[int, tuple[Any, ...]] = field(default_factory=dict, init=False, repr=False)
    _in_hand: Migration | None = field(default=None, init=False, repr=False)

    # --- connections ---------------------------------------------------------

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The runner's one session; never silently replaced while it holds the lock."""
        if self._lock_pid is not None:
            if self._conn is None or self._conn.closed or self._conn.broken:
                raise self._lock_lost("the runner's database session ended")
            return self._conn
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.dsn)
            # Abort our statements promptly if this process dies (PG >= 14).
            self._conn.execute("SET client_connection_check_interval = '1s'")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            _abandon(self._conn)
            self._conn = None

    def __enter__(self) -> MigrationRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        """Hold the migration lock for the block; wait at most ``lock_wait`` seconds.

        The lock is taken by the session that does the work (``self.conn``): see
        the module docstring for why the lock and the work share one session.
        """
        conn = self.conn
        deadline = time.monotonic() + self.lock_wait
        announced = False
        while not _scalar(conn, "SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)):
            holder = _describe_lock_holder(conn)
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
        self._lock_pid = conn.info.backend_pid
        try:
            yield
        finally:
            self._lock_pid = None
            self._expected = {}
            if _idle(conn):
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
                except psycopg.Error:
                    _abandon(conn)  # ending the session releases the lock
            else:
                # Busy (interrupted mid-statement), broken or mid-transaction:
                # sending more commands would fail; ending the session is safe.
                _abandon(conn)
                self._conn = None

    def _lock_lost(self, why: str, *, migration: Migration | None = None) -> LockLost:
        # Name the step in hand even when the loss surfaces far from it (the
        # session died mid-statement and the next access noticed).
        migration = migration or self._in_hand
        where = f" during {migration.label}" if migration else ""
        return LockLost(
            f"lost the migration lock{where}: {why}. The runner stopped before its next "
            "statement and wrote no further history; another runner may now hold the lock. "
            "Run `rollgate db status` to see where the database stands, then run again.",
            details={"migration": migration.label if migration else None, "reason": why},
        )

    def _assert_lock_held(self, migration: Migration | None = None) -> None:
        """Raise ``LockLost`` unless this session still holds the migration lock."""
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            raise self._lock_lost("the runner's database session ended", migration=migration)
        try:
            held = _scalar(conn, _LOCK_HELD, (MIGRATION_LOCK_KEY,))
        except psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split())
            raise self._lock_lost(f"the session failed ({reason})", migration=migration) from exc
        if not held:
            raise self._lock_lost(
                "the session no longer holds it (a script released advisory locks, e.g. "
                "pg_advisory_unlock_all() or DISCARD ALL)",
                migration=migration,
            )

    # --- reading -------------------------------------------------------------

    def _history_table(self) -> str | None:
        """Where Rollgate's history is: ``rollgate.schema_migrations``, its legacy
        ``public.schema_migrations`` (before adoption), or None before the first run.

        Refuses when ``rollgate.schema_migrations`` is not Rollgate's. Anything
        else named ``public.schema_migrations`` (Rails', golang-migrate's, a view)
        belongs to another tool: it is neither read nor written.
        """
        ours = _relation_shape(self.conn, HISTORY_SCHEMA, HISTORY_TABLE)
        if ours is not None:
            kind, columns = ours
            missing = [c for c in _HISTORY_COLUMNS if c not in columns]
            if kind not in ("r", "p") or missing:
                what = _RELKINDS.get(kind, f"relation of kind {kind!r}")
                lacks = f" without the columns {', '.join(missing)}" if missing else ""
                raise HistoryMismatch(
                    f"{HISTORY_QUALIFIED} is a {what}{lacks}, not Rollgate's migration history; "
                    f"Rollgate keeps its history there and will not read or overwrite it. "
                    f"Rename or move that object (ALTER ... SET SCHEMA), then run again",
                    details={"table": HISTORY_QUALIFIED, "kind": what, "missing": missing},
                )
            return HISTORY_QUALIFIED
        if _is_legacy_history(self.conn):
            return LEGACY_HISTORY
        return None

    def read_history(self) -> list[HistoryRow]:
        """Rows of Rollgate's history, oldest first ([] before the first run)."""
        try:
            table = self._history_table()
            if table is None:
                return []
            rows = self.conn.execute(_SELECT_HISTORY.format(table=table).encode()).fetchall()
        except psycopg.errors.InsufficientPrivilege as exc:
            raise self._privilege_missing(
                exc,
                "cannot read Rollgate's history",
                f"GRANT USAGE ON SCHEMA {HISTORY_SCHEMA} "
                f"and SELECT ON {HISTORY_QUALIFIED} TO the role",
            ) from exc
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

    def migrate(
        self,
        target: int | None = None,
        *,
        dry_run: bool = False,
        expected_plan: str | None = None,
    ) -> RunReport:
        """Apply pending migrations up to ``target`` (default: all).

        ``expected_plan``: a ``MigrationPlan.fingerprint()`` that was shown and
        confirmed; the run refuses (``PlanChanged``) unless the plan computed
        under the lock is exactly that one.
        """
        return self._run(
            lambda history: plan_upgrade(self.migrations, history, target), dry_run, expected_plan
        )

    def revert(
        self, target: int, *, dry_run: bool = False, expected_plan: str | None = None
    ) -> RunReport:
        """Revert applied migrations newer than ``target`` (``expected_plan``: as ``migrate``)."""
        return self._run(
            lambda history: plan_revert(self.migrations, history, target), dry_run, expected_plan
        )

    def _run(
        self,
        make_plan: Callable[[list[HistoryRow]], MigrationPlan],
        dry_run: bool,
        expected_plan: str | None = None,
    ) -> RunReport:
        if dry_run:
            history = self.read_history()
            plan = make_plan(history)
            version = current_version(history)
            return RunReport(plan, True, (), version, version, tuple(self.invalid_indexes()))
        with self.migration_lock():
            self._prepare_history()
            history = self.read_history()
            plan = make_plan(history)  # only now: another runner may have moved us on
            if expected_plan is not None and plan.fingerprint() != expected_plan:
                raise _plan_changed(plan, expected_plan)
            before = current_version(history)
            self._expected = {row.version: row.essence for row in history}
            if plan.empty:
                self.progress(f"nothing to do: the database is at {before:04d}")
            else:
                self._require_history_writable()
            executed = []
            for number, step in enumerate(plan.steps, start=1):
                self.progress(f"[{number}/{len(plan.steps)}] {step.describe()}")
                executed.append(self.run_step(step))
            after = current_version(self.read_history())
        return RunReport(plan, False, tuple(executed), before, after, tuple(self.invalid_indexes()))

    def _prepare_history(self) -> None:
        """Create (or adopt) Rollgate's history table; under the lock, before planning."""
        try:
            table = self._history_table()
            if table == HISTORY_QUALIFIED:
                self._add_xid_column()
                return
            self._require_create_privilege()
            with self.conn.transaction():
                if not _schema_exists(self.conn, HISTORY_SCHEMA):
                    self.conn.execute(f"CREATE SCHEMA {HISTORY_SCHEMA}".encode())
                if table == LEGACY_HISTORY:
                    self.conn.execute(
                        f"ALTER TABLE {LEGACY_HISTORY} SET SCHEMA {HISTORY_SCHEMA}".encode()
                    )
                else:
                    self.conn.execute(_HISTORY_DDL.encode())
            if table == LEGACY_HISTORY:
                self._add_xid_column()
                self.progress(
                    f"moved Rollgate's history from {LEGACY_HISTORY} to {HISTORY_QUALIFIED} "
                    "(its own schema, clear of other tools' schema_migrations)"
                )
        except psycopg.errors.InsufficientPrivilege as exc:
            raise self._privilege_missing(
                exc,
                "cannot create Rollgate's history",
                f"GRANT USAGE, CREATE ON SCHEMA {HISTORY_SCHEMA} TO the role (and for a "
                f"legacy {LEGACY_HISTORY}, run once as its owner)",
            ) from exc

    def _add_xid_column(self) -> None:
        """History made before xids were recorded gains the column (empty for old rows).

        A migration's transaction id lets a rollback by restore tell the
        migration's own row changes from the application's when it replays
        the writes made since a snapshot.
        """
        shape = _relation_shape(self.conn, HISTORY_SCHEMA, HISTORY_TABLE)
        if shape is not None and "xid" not in shape[1]:
            self.conn.execute(f"ALTER TABLE {HISTORY_QUALIFIED} ADD COLUMN xid bigint".encode())

    def applied_xids(self) -> dict[int, int]:
        """Transaction id of each migration that recorded one (transactional ones)."""
        if self._history_table() != HISTORY_QUALIFIED:
            return {}
        rows = self.conn.execute(
            f"SELECT version, xid FROM {HISTORY_QUALIFIED} WHERE xid IS NOT NULL".encode()
        ).fetchall()
        return {int(version): int(xid) for version, xid in rows}

    def _require_create_privilege(self) -> None:
        """The role may create the history schema (or, if it exists, the table in it)."""
        role, database, can_create_schema, schema_exists, can_create_table = self.conn.execute(
            "SELECT current_user, current_database(), "
            "has_database_privilege(current_database(), 'CREATE'), "
            "EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s), "
            "EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s "
            "AND has_schema_privilege(oid, 'USAGE, CREATE'))",
            (HISTORY_SCHEMA, HISTORY_SCHEMA),
        ).fetchone() or (None, None, False, False, False)
        if not schema_exists and not can_create_schema:
            denied = f"permission denied for database {database}"
            grant = (
                f"GRANT CREATE ON DATABASE {database} TO {role}, or have the owner run "
                f"CREATE SCHEMA {HISTORY_SCHEMA} AUTHORIZATION {role}"
            )
        elif schema_exists and not can_create_table:
            denied = f"permission denied for schema {HISTORY_SCHEMA}"
            grant = f"GRANT USAGE, CREATE ON SCHEMA {HISTORY_SCHEMA} TO {role}"
        else:
            return
        raise PrivilegeMissing(
            f"{denied}: the role {role} cannot create Rollgate's history "
            f"({HISTORY_QUALIFIED}); {grant}; or run as the migration owner. Nothing was applied",
            details={"role": role, "object": HISTORY_QUALIFIED},
        )

    def _require_history_writable(self) -> None:
        """Before any step runs: the role can write the history it will need to write."""
        needed = ("SELECT", "INSERT", "UPDATE", "DELETE")
        missing = [
            privilege
            for privilege in needed
            if not _scalar(
                self.conn, "SELECT has_table_privilege(%s, %s)", (HISTORY_QUALIFIED, privilege)
            )
        ]
        if missing:
            role = _scalar(self.conn, "SELECT current_user")
            raise PrivilegeMissing(
                f"permission denied for table {HISTORY_QUALIFIED}: the role {role} cannot write "
                f"Rollgate's history (missing {', '.join(missing)}); GRANT {', '.join(missing)} "
                f"ON {HISTORY_QUALIFIED} TO {role}, or run as the migration owner. "
                "Nothing was applied",
                details={"role": role, "object": HISTORY_QUALIFIED, "missing": missing},
            )

    def _privilege_missing(self, exc: psycopg.Error, doing: str, remedy: str) -> PrivilegeMissing:
        conn = self._conn
        role = "?"
        if conn is not None and _idle(conn):
            role = str(_scalar(conn, "SELECT current_user"))
        denied = exc.diag.message_primary or " ".join(str(exc).split())
        return PrivilegeMissing(
            f"{denied}: the role {role} {doing}; {remedy}, or run as the migration owner",
            details={"role": role, "sqlstate": exc.diag.sqlstate, "error": denied},
        )

    def record_baseline(self, migrations: Sequence[Migration]) -> None:
        """Record ``migrations`` as applied without running them (``db baseline``).

        One transaction: every row lands or none does. The caller holds
        ``migration_lock()`` and has proved that the database already has the
        schema these migrations build; nothing here checks that.
        """
        self._prepare_history()
        self._require_history_writable()
        with self.conn.transaction():
            for migration in migrations:
                self._record(migration, APPLIED, None)
        for migration in migrations:
            self._committed(migration, APPLIED)

    def run_step(self, step: Step) -> StepResult:
        """Run one step, retrying a bounded number of times on lock timeouts."""
        self._in_hand = step.migration
        try:
            return self._run_step(step)
        finally:
            self._in_hand = None

    def _run_step(self, step: Step) -> StepResult:
        script = step.migration.script(step.direction)
        for attempt in range(self.lock_retries + 1):
            try:
                started = time.monotonic()
                self._fresh_session()
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
                if isinstance(exc, LockLost):
                    raise
                if self._lock_pid is not None and (
                    self._conn is None or self._conn.closed or self._conn.broken
                ):
                    raise self._lock_lost(
                        f"the runner's database session ended ({exc.message})",
                        migration=step.migration,
                    ) from exc
                if exc.details.get("sqlstate") == INSUFFICIENT_PRIVILEGE:
                    role = _scalar(self.conn, "SELECT current_user") if _idle(self.conn) else "?"
                    raise PrivilegeMissing(
                        f"{exc.message}. The role {role} lacks a privilege that "
                        f"{step.migration.label} needs; grant it, or run as the migration owner",
                        details={**exc.details, "role": role},
                    ) from exc
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
            except psycopg.OperationalError as exc:
                if self._lock_pid is not None and (
                    self._conn is None or self._conn.closed or self._conn.broken
                ):
                    reason = " ".join(str(exc).split())
                    raise self._lock_lost(
                        f"the runner's database session ended ({reason})",
                        migration=step.migration,
                    ) from exc
                raise
        raise AssertionError("unreachable: the loop returns or raises")

    def _fresh_session(self) -> None:
        """Undo whatever session state the previous step left (search_path, role, ...)."""
        for command in _RESET_SESSION:
            self.conn.execute(command.encode())

    def _run_in_transaction(self, step: Step, script: SqlScript, started: float) -> None:
        migration = step.migration
        with self.conn.transaction():
            opened = _scalar(self.conn, "SELECT pg_current_xact_id()::text")
            _set_timeouts(self.conn, script, local=True)
            self._execute(script, migration, check_lock=False)
            if step.direction == "up":
                self._execute(migration.verify, migration, check_lock=False)
            self._before_history_write(migration, opened)
            if step.direction == "up":
                self._record(migration, APPLIED, _elapsed_ms(started))
            else:
                self._forget(migration)
        self._committed(migration, APPLIED if step.direction == "up" else None)

    def _run_outside_transaction(
        self, step: Step, script: SqlScript, started: float
    ) -> tuple[str, ...]:
        migration = step.migration
        repairs: tuple[str, ...] = ()
        self._assert_lock_held(migration)
        if step.direction == "up":
            repairs = self._drop_invalid_indexes_built_by(script)
        # Claim only what is true: this migration has started, not finished.
        started_state = APPLYING if step.direction == "up" else REVERTING
        self._before_history_write(migration, None)
        self._record(migration, started_state, None)
        self._committed(migration, started_state)
        _set_timeouts(self.conn, script, local=False)
        try:
            try:
                self._execute(script, migration, check_lock=True)
            except MigrationFailed as failure:
                # What ran before the failing statement is committed: if it
                # touched the history, that is the failure worth reporting.
                if not isinstance(failure, LockLost) and _idle(self.conn):
                    self._assert_history_intact(migration, restore=True)
                raise
            self._assert_history_intact(migration, restore=True)
            with self.conn.transaction():
                opened = _scalar(self.conn, "SELECT pg_current_xact_id()::text")
                if step.direction == "up":
                    self._execute(migration.verify, migration, check_lock=False)
                self._before_history_write(migration, opened)
                if step.direction == "up":
                    self._record(migration, APPLIED, _elapsed_ms(started))
                else:
                    self._forget(migration)
            self._committed(migration, APPLIED if step.direction == "up" else None)
        finally:
            conn = self._conn
            if conn is not None and _idle(conn):
                conn.execute("RESET lock_timeout")
                conn.execute("RESET statement_timeout")
        return repairs

    def _execute(self, script: SqlScript, migration: Migration, *, check_lock: bool) -> None:
        """Run ``script`` statement by statement; with ``check_lock``, confirm the lock first."""
        for statement in script.statements:
            if check_lock:
                self._assert_lock_held(migration)
            _execute_statement(self.conn, script, statement)

    def _before_history_write(self, migration: Migration, opened: str | None) -> None:
        """Refuse to write history unless it would tell the truth.

        ``opened``: the transaction id taken when the step's transaction began.
        If the current one differs, a statement ended that transaction (a COMMIT
        or ROLLBACK that slipped past the loader) and what the history row would
        vouch for is no longer what happened.
        """
        if opened is not None:
            in_transaction = self.conn.pgconn.transaction_status == pq.TransactionStatus.INTRANS
            now = _scalar(self.conn, "SELECT pg_current_xact_id_if_assigned()::text")
            if not in_transaction or now != opened:
                raise MigrationFailed(
                    f"{migration.label}: a statement ended the transaction the runner opened "
                    f"(a COMMIT or ROLLBACK, perhaps in a procedure or a verify script), so "
                    "what it did cannot be vouched for; nothing was recorded. Remove the "
                    "transaction control from the migration's files (use "
                    "`-- rollgate: transaction=false` for statements that need their own "
                    "transactions), check the database by hand, then run again",
                    details={"migration": migration.label, "transaction": opened, "now": now},
                )
        self._assert_lock_held(migration)
        self._assert_history_intact(migration, restore=False)

    def _assert_history_intact(self, migration: Migration, *, restore: bool) -> None:
        """The history table still exists and holds exactly what the runner knows it wrote."""
        try:
            with self.conn.transaction():
                rows = self.conn.execute(
                    _SELECT_HISTORY.format(table=HISTORY_QUALIFIED).encode()
                ).fetchall()
            found: dict[int, tuple[Any, ...]] | None = {
                row.version: row.essence for row in (HistoryRow(*r) for r in rows)
            }
        except (
            psycopg.errors.UndefinedTable,
            psycopg.errors.InvalidSchemaName,
            psycopg.errors.UndefinedColumn,
        ):
            found = None
        if found == self._expected:
            return
        what = (
            f"{HISTORY_QUALIFIED} no longer exists"
            if found is None
            else f"{HISTORY_QUALIFIED} no longer holds what the runner wrote"
        )
        outcome = "nothing was recorded"
        if restore:
            outcome = self._restore_history()
        raise MigrationFailed(
            f"{migration.label}: {what} after its scripts ran: a migration must never touch "
            f"Rollgate's history (dynamic SQL included); {outcome}. Remove the statement "
            "that changes the history, then run `rollgate db status`",
            details={"migration": migration.label, "history": HISTORY_QUALIFIED},
        )

    def _restore_history(self) -> str:
        """Write back the rows the runner knows to be true; says what it did."""
        try:
            with self.conn.transaction():
                if not _schema_exists(self.conn, HISTORY_SCHEMA):
                    self.conn.execute(f"CREATE SCHEMA {HISTORY_SCHEMA}".encode())
                if _relation_shape(self.conn, HISTORY_SCHEMA, HISTORY_TABLE) is None:
                    self.conn.execute(_HISTORY_DDL.encode())
                self.conn.execute(f"DELETE FROM {HISTORY_QUALIFIED}".encode())
                for version, name, state, up, down, verify in self._expected.values():
                    self.conn.execute(
                        f"INSERT INTO {HISTORY_QUALIFIED} (version, name, state, up_sha256, "
                        "down_sha256, verify_sha256, applied_by) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s)".encode(),
                        (version, name, state, up, down, verify, self._actor()),
                    )
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split())
            return (
                f"restoring the history failed too ({reason}): the history is LOST; restore "
                f"{HISTORY_QUALIFIED} from a backup before running anything else"
            )
        return (
            "the runner restored the history it read under the lock, with this migration "
            "marked as interrupted"
        )

    def _committed(self, migration: Migration, state: str | None) -> None:
        """Remember what history now holds for ``migration`` (None: no row)."""
        if state is None:
            self._expected.pop(migration.version, None)
        else:
            self._expected[migration.version] = (
                migration.version,
                migration.name,
                state,
                migration.up.sha256,
                migration.down.sha256,
                migration.verify.sha256,
            )

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
            # xid: the transaction writing this row. For a transactional
            # migration that is the migration's own transaction.
            f"INSERT INTO {HISTORY_QUALIFIED} AS h (version, name, state, up_sha256, "
            "down_sha256, verify_sha256, applied_at, duration_ms, applied_by, xid) "
            "VALUES (%s, %s, %s, %s, %s, %s, now(), %s, %s, "
            "pg_current_xact_id_if_assigned()::text::bigint) "
            "ON CONFLICT (version) DO UPDATE SET state = EXCLUDED.state, "
            "applied_at = EXCLUDED.applied_at, duration_ms = EXCLUDED.duration_ms, "
            "applied_by = EXCLUDED.applied_by, xid = EXCLUDED.xid".encode(),
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
            f"DELETE FROM {HISTORY_QUALIFIED} WHERE version = %s".encode(), (migration.version,)
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


_RELKINDS = {
    "r": "table",
    "p": "partitioned table",
    "v": "view",
    "m": "materialized view",
    "f": "foreign table",
    "S": "sequence",
    "i": "index",
    "c": "composite type",
}


def _relation_shape(
    conn: psycopg.Connection[Any], schema: str, name: str
) -> tuple[str, tuple[str, ...]] | None:
    """(relkind, column names) of ``schema.name``, or None if there is no such relation."""
    row = conn.execute(
        "SELECT c.relkind::text, array(SELECT a.attname::text FROM pg_catalog.pg_attribute a "
        "WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) "
        "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    ).fetchone()
    return None if row is None else (row[0], tuple(row[1]))


def _is_legacy_history(conn: psycopg.Connection[Any]) -> bool:
    """``public.schema_migrations`` is a table with exactly Rollgate's columns (its old home).

    Exactly: the required columns, and at most the optional ``xid`` that later
    releases add; a look-alike with any other column belongs to someone else.
    """
    shape = _relation_shape(conn, "public", HISTORY_TABLE)
    if shape is None or shape[0] != "r":
        return False
    columns = set(shape[1])
    return set(_HISTORY_COLUMNS) <= columns <= {*_HISTORY_COLUMNS, "xid"}


def _schema_exists(conn: psycopg.Connection[Any], schema: str) -> bool:
    return bool(
        _scalar(
            conn,
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s)",
            (schema,),
        )
    )


def _execute_statement(
    conn: psycopg.Connection[Any], script: SqlScript, statement: Statement
) -> None:
    try:
        conn.execute(statement.text.encode("utf-8"))  # bytes: never %-formatted
    except psycopg.Error as exc:
        raise statement_error(script, statement, exc) from exc


def _idle(conn: psycopg.Connection[Any]) -> bool:
    """The session can take a command now: open, healthy, not mid-query or mid-transaction."""
    return (
        not conn.closed
        and not conn.broken
        and conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
    )


def _abandon(conn: psycopg.Connection[Any]) -> None:
    """End a session that may be busy: cancel its running query, then close it.

    Closing ends the session server-side, which rolls back any open transaction
    and releases the advisory lock; no command is sent on a busy connection.
    """
    if conn.closed:
        return
    if conn.pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
        # Best effort: closing below ends the session regardless.
        with contextlib.suppress(Exception):
            conn.cancel_safe(timeout=5.0)
    conn.close()


def _plan_changed(plan: MigrationPlan, expected: str) -> PlanChanged:
    steps = "; ".join(step.describe() for step in plan.steps) or "nothing to do"
    return PlanChanged(
        f"the database changed since you confirmed the plan: the plan is now "
        f"{plan.current:04d} -> {plan.target:04d}: {steps}. Nothing was changed; "
        "run again to see the new plan",
        details={
            "expected_fingerprint": expected,
            "fingerprint": plan.fingerprint(),
            "plan": [step.describe() for step in plan.steps],
        },
    )
