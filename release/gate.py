"""``rollgate gate``: the hard, fail-closed go/no-go before a rollout (``pulumi up``).

Steps, in order; the first that fails ends the gate with **no-go**:

1. **static**: the migration files load and their checksums agree with the
   target's history (``db.plan.check_history``); squawk lint above the lint
   baseline; no pending down migration destroys data its up did not write
   unless the down file declares it (a ``-- declared-data-loss: <why>`` line);
   the stack's ``Pulumi.<stack>.yaml`` passes infra's own config validation.
2. **snapshot**: a rollback snapshot of the target database (with its
   replication slot, so a rollback by restore can replay later writes).
3. **verify**: the snapshot restored on a throwaway Postgres and compared with
   its manifest; only a verified snapshot lets the rollout continue.
4. **rehearse**, on the copy verify restored (no second restore):
   the pending migrations applied while a probe measures how long writers
   wait on each table, then reverted, with the data compared before and after;
   the new app (its image, or processes of this checkout when no image is
   given; a given image that cannot run here makes the step inconclusive; on
   a loopback SQS sandbox) must become ready and serve its basic requests;
   release N's app must do the same on the new schema (N-1 compatibility);
   then the smoke suite (``smoke.run``) on the same copy and server. Without
   the suite the step is **inconclusive** (never go).
5. **budget**: the rollback plan for this release (``rollback.plan``, fed the
   measured restore and migration times) fits the recovery-time window; no
   migration blocked writers past the lock budget; a release that is not N-1
   compatible needs ``allow_incompatible``, which the report records.

A step that could not run is **inconclusive**; the gate then keeps going to
find a definite failure, but its verdict is at best inconclusive. Every
report is appended to the store's hash-chained ``gate`` log.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from core.errors import CannotRun, RollgateError
from core.paths import writable_directory
from core.progress import Progress, silent
from db.catalog import Catalog, diff_catalogs, read_catalog
from db.checksums import TableChecksum, parallel_table_checksums
from db.destructive import DestructiveRevert, affected_data, classify_reverts
from db.lint import lint_migrations, lintable_files, set_aside_expected_drops, split_at_baseline
from db.migrations import Migration, load_migrations
from db.plan import check_history, current_version
from db.runner import MigrationRunner
from db.throwaway import TARGET_POSTGRES_MAJOR, ThrowawayPostgres, create_database, start_throwaway
from db.throwaway.attached import handoff
from release import apps
from rollback import ledger
from rollback.ecs import Services, ServiceState
from rollback.plan import RollbackFacts, RollbackRefused, SnapshotChoice, plan_rollback
from rollback.releases import Release, list_releases
from rollback.snapshot import DUMP_DIRECTORY, ReleaseInfo, create_snapshot, drop_slot
from rollback.store import SnapshotStore
from rollback.verify import checked_artifacts, restore_dump, verify_snapshot

GATE_LOG = "gate"
GO, NO_GO, INCONCLUSIVE = "go", "no-go", "inconclusive"
PASSED, FAILED, NOT_RUN, SKIPPED = "passed", "failed", "inconclusive", "skipped"
STEPS = ("static", "snapshot", "verify", "rehearse", "budget")
EXIT_CODES = {GO: 0, NO_GO: 1, INCONCLUSIVE: 2}
SMOKE_MISSING = "smoke suite not available"
REVERT_PROOF = (
    "the gate reverted this copy and compared its catalog with the copy's before the "
    "migrations, and its data with the snapshot's checksums"
)
_DECLARED_LOSS = re.compile(r"^--\s*declared-data-loss:\s*\S", re.MULTILINE)


@dataclass(frozen=True)
class GateOptions:
    """What the gate checks, and against what (the CLI fills it from flags and config)."""

    dsn: str
    store: SnapshotStore
    migrations_dir: Path
    schema_path: Path
    stack: str | None = None
    stack_dir: Path = Path()
    app_image: str | None = None
    previous_app_image: str | None = None
    aws_endpoint_url: str | None = None
    rto_seconds: float = 900.0
    lock_budget_seconds: float = 5.0
    allow_incompatible: bool = False
    lint_since: int = 0
    backend: str = "embedded"
    commit: str | None = None
    report_dir: Path = Path("gate-report")
    #: Settings the new (N+1) app processes run with on top of the sandbox's.
    new_app_env: Mapping[str, str] = field(default_factory=dict)
    #: Steps to run ("static" ... "budget"); the rest are recorded as skipped.
    steps: tuple[str, ...] = STEPS


@dataclass
class StepResult:
    name: str
    status: str = SKIPPED
    seconds: float = 0.0
    summary: str = ""
    findings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "summary": self.summary,
            "findings": list(self.findings),
            "details": self.details,
        }


@dataclass
class GateReport:
    verdict: str
    steps: list[StepResult]
    started_at: str
    seconds: float
    target: dict[str, Any]
    allow_incompatible: bool
    snapshot_id: str | None = None
    entry_sha256: str | None = None
    report_path: Path | None = None
    summary_path: Path | None = None
    #: Why the report is missing from the store's gate log (``None``: it is there).
    ledger_error: str | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def step(self, name: str) -> StepResult:
        return next(s for s in self.steps if s.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "seconds": round(self.seconds, 3),
            "target": self.target,
            "allow_incompatible": self.allow_incompatible,
            "snapshot_id": self.snapshot_id,
            "steps": [s.to_dict() for s in self.steps],
            "entry_sha256": self.entry_sha256,
            "ledger_error": self.ledger_error,
            "report_path": str(self.report_path) if self.report_path else None,
            "summary_path": str(self.summary_path) if self.summary_path else None,
        }


#: Called with ("start", step) and ("end", step) as the gate moves on.
StepListener = Callable[[str, StepResult], None]


def _no_listener(_event: str, _step: StepResult) -> None:
    return None


class _Stop(Exception):
    """A step failed: the gate fails closed here."""


@dataclass
class _State:
    options: GateOptions
    progress: Progress
    migrations: list[Migration] = field(default_factory=list)
    live_version: int = 0
    pending: list[Migration] = field(default_factory=list)
    snapshot_id: str | None = None
    slot: str | None = None
    restore_seconds: float | None = None
    server: ThrowawayPostgres | None = None
    up_seconds: float = 0.0
    blocked: list[str] = field(default_factory=list)
    previous_app_ok: bool | None = None
    previous_app_problems: list[str] = field(default_factory=list)
    #: The copy's catalog before the rehearsal migrated it (the revert must restore it).
    catalog_before: Catalog | None = None
    #: Tables whose data the down files lose as declared (recorded, not findings).
    declared_losses: list[str] = field(default_factory=list)
    rehearsed: bool = False
    rehearsal_db: str | None = None
    #: The copy's checksums after the rehearsal's revert (the smoke suite starts from them).
    start_checksums: list[TableChecksum] = field(default_factory=list)
    #: The verify step's throwaway server, started while the snapshot is taken.
    server_start: Future[ThrowawayPostgres] | None = None


def run_gate(
    options: GateOptions,
    *,
    progress: Progress = silent,
    on_step: StepListener = _no_listener,
) -> GateReport:
    """Run every step in order; return the report (written, and chained into the store)."""
    writable_directory(options.report_dir, "the gate's reports (--report-dir)")
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    state = _State(options, progress)
    steps = [StepResult(name) for name in STEPS]
    runners: dict[str, Callable[[_State, StepResult], None]] = {
        "static": _static,
        "snapshot": _snapshot,
        "verify": _verify,
        "rehearse": _rehearse,
        "budget": _budget,
    }
    stopped = False
    with contextlib.ExitStack() as cleanup:
        if "verify" in options.steps:
            # Starting a server (1-2 s) needs nothing from the steps before verify:
            # overlap it with them. Its own progress would interleave, so it is silent.
            pool = cleanup.enter_context(ThreadPoolExecutor(1, "gate-server-start"))
            state.server_start = pool.submit(start_throwaway, options.backend)
        cleanup.callback(_close_server, state)
        for step in steps:
            if stopped or step.name not in options.steps:
                step.summary = "not run: an earlier step failed" if stopped else "not selected"
                continue
            on_step("start", step)
            step_started = time.monotonic()
            try:
                runners[step.name](state, step)
                if step.status == SKIPPED:
                    step.status = PASSED
            except _Stop:
                step.status = FAILED
                stopped = True
            except RollgateError as exc:
                # CheckFailed from a library call is a finding; CannotRun is "could not run".
                if isinstance(exc, CannotRun):
                    step.status = NOT_RUN
                    stopped = step.name in ("snapshot", "verify")  # later steps need them
                else:
                    step.status = FAILED
                    stopped = True
                step.findings.append(str(exc))
                step.summary = step.summary or str(exc).split(";")[0][:200]
            step.seconds = time.monotonic() - step_started
            on_step("end", step)
    verdict = _verdict(steps)
    if verdict == NO_GO and state.slot is not None:
        # Nothing rolls out, so no rollback will replay from this snapshot's slot;
        # an idle slot only pins WAL. The snapshot itself stays (prune decides). An
        # inconclusive gate keeps it: a rerun or an overridden rollout still needs it.
        with contextlib.suppress(RollgateError, psycopg.Error):
            drop_slot(options.dsn, state.slot)
    report = GateReport(
        verdict=verdict,
        steps=steps,
        started_at=started_at,
        seconds=time.monotonic() - started,
        target={
            "database": _database_name(options.dsn),
            "store": options.store.uri,
            "stack": options.stack,
            "commit": options.commit,
            "app_image": options.app_image,
            "previous_app_image": options.previous_app_image,
            "live_version": state.live_version,
            "pending": [m.label for m in state.pending],
        },
        allow_incompatible=options.allow_incompatible,
        snapshot_id=state.snapshot_id,
    )
    record_report(report, options.store)
    write_report(report, options.report_dir)
    return report


def record_report(report: GateReport, store: SnapshotStore) -> None:
    """Chain ``report`` into the store's gate log; a go that cannot be recorded is not go.

    A rollout cites the gate entry it passed (``release record --gate-entry``),
    so an unrecorded go would be a rollout nobody can trace: it becomes
    inconclusive. The report is still written by the caller: the work is done,
    and someone must read why it was not recorded.
    """
    try:
        entry = ledger.append(store, GATE_LOG, _ledger_body(report))
    except RollgateError as exc:
        report.ledger_error = f"the report could not be recorded in the store: {exc}"
        if report.verdict == GO:
            report.verdict = INCONCLUSIVE
        return
    report.entry_sha256 = entry.entry_sha256


def _verdict(steps: Sequence[StepResult]) -> str:
    if any(s.status == FAILED for s in steps):
        return NO_GO
    if any(s.status == NOT_RUN for s in steps):
        return INCONCLUSIVE
    if all(s.status == PASSED for s in steps):
        return GO
    # A step left out (--steps) means the release was not fully gated.
    return INCONCLUSIVE


def _ledger_body(report: GateReport) -> dict[str, Any]:
    body = report.to_dict()
    for key in ("entry_sha256", "ledger_error", "report_path", "summary_path"):
        body.pop(key, None)
    return body


def _database_name(dsn: str) -> str:
    from psycopg import conninfo

    with contextlib.suppress(psycopg.ProgrammingError):
        return str(conninfo.conninfo_to_dict(dsn).get("dbname") or "")
    return ""


def _close_server(state: _State) -> None:
    if state.server is None and state.server_start is not None:
        # The gate stopped before verify took the server: wait for it, then stop it.
        with contextlib.suppress(Exception):
            state.server = state.server_start.result()
    state.server_start = None
    if state.server is not None:
        state.server.close()
        state.server = None


# --- 1. static ----------------------------------------------------------------------


def _static(state: _State, step: StepResult) -> None:
    options = state.options
    state.progress("loading migrations and checking them against the target's history")
    state.migrations = load_migrations(options.migrations_dir)
    with MigrationRunner(options.dsn, state.migrations) as runner:
        history = runner.read_history()
    check_history(state.migrations, history)
    state.live_version = current_version(history)
    state.pending = [m for m in state.migrations if m.version > state.live_version]
    step.details["live_version"] = state.live_version
    step.details["pending"] = [m.label for m in state.pending]

    state.progress("linting the migrations above the baseline with squawk")
    files, _skipped = split_at_baseline(lintable_files(options.migrations_dir), options.lint_since)
    reverts = classify_reverts(state.migrations)
    lint = lint_migrations(files, pg_version=TARGET_POSTGRES_MAJOR)
    lint = set_aside_expected_drops(lint, reverts)
    step.details["lint"] = {"files": lint.files_checked, "findings": len(lint.findings)}
    if lint.skipped_reason:
        step.status = NOT_RUN
        step.findings.append(f"squawk lint could not run: {lint.skipped_reason}")
    step.findings += [finding.describe() for finding in lint.findings]

    undeclared = undeclared_data_loss(state.pending)
    step.details["undeclared_data_loss"] = [r.describe() for r in undeclared]
    step.findings += [
        f"{r.describe()}: {r.file}:{r.line} destroys data its up did not write. Make the "
        "down reversible, or declare the loss with a '-- declared-data-loss: <why>' line"
        for r in undeclared
    ]

    if options.stack:
        state.progress(f"validating the stack config Pulumi.{options.stack}.yaml")
        problems = stack_config_problems(options.stack_dir, options.stack)
        step.details["stack_config"] = problems or "valid"
        step.findings += problems
    else:
        step.details["stack_config"] = "not checked (no --stack)"

    if lint.findings or undeclared or (options.stack and step.details["stack_config"] != "valid"):
        step.summary = f"{len(step.findings)} finding(s)"
        raise _Stop
    step.summary = (
        f"{len(state.migrations)} migration(s), {len(state.pending)} pending; "
        f"lint clean ({lint.files_checked} file(s)); stack config "
        + ("valid" if options.stack else "not checked")
    )


def undeclared_data_loss(pending: Sequence[Migration]) -> list[DestructiveRevert]:
    """Destructive reverts of data the up did not write, in downs that do not declare it."""
    found = []
    for revert in classify_reverts(pending):
        if not revert.loses_data or revert.expected:
            continue
        migration = next(m for m in pending if m.label == revert.migration)
        if _DECLARED_LOSS.search(migration.down.text):
            continue
        found.append(revert)
    return found


def stack_config_problems(stack_dir: Path, stack: str) -> list[str]:
    """infra's own validation of ``Pulumi.<stack>.yaml`` (no Pulumi engine needed)."""
    path = stack_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise CannotRun(f"no stack config {path}: pass --stack with an existing stack name")
    try:
        yaml = importlib.import_module("yaml")
    except ImportError as exc:  # pragma: no cover - pyyaml ships with the dev extras
        raise CannotRun("validating the stack config needs PyYAML (pip install pyyaml)") from exc
    # parse_config is infra's pure validator: plain strings in, one error listing every
    # problem out. Importing pulumi as a library starts no engine.
    from infra.config import InvalidConfig, parse_config

    document = yaml.safe_load(path.read_text()) or {}
    raw = {
        key.split(":", 1)[1]: ("true" if v is True else "false" if v is False else str(v))
        for key, v in (document.get("config") or {}).items()
        if key.startswith("rollgate:")
    }
    try:
        parse_config(raw, stack=stack)
    except InvalidConfig as exc:
        return [f"{path.name}: {line.strip()}" for line in str(exc).splitlines() if line.strip()]
    return []


# --- 2. snapshot, 3. verify ---------------------------------------------------------------


def _snapshot(state: _State, step: StepResult) -> None:
    options = state.options
    # The snapshot protects the release running now (N), so it carries N's commit: that
    # is what `rollback plan` matches when it looks for a way back to N.
    current = _recorded_releases(options.store)
    manifest = create_snapshot(
        options.dsn,
        options.store,
        release=ReleaseInfo(
            bundle_commit=current[-1].commit if current else None,
            app_image=options.previous_app_image,
        ),
        progress=state.progress,
    )
    state.snapshot_id = manifest.id
    state.slot = manifest.slot.name if manifest.slot else None
    step.details = {
        "snapshot_id": manifest.id,
        "rows": manifest.total_rows,
        "bytes": manifest.total_bytes,
        "slot": state.slot,
        "timings": dict(manifest.timings),
    }
    step.summary = f"{manifest.id}: {manifest.total_rows} rows, {manifest.total_bytes} bytes"


def _verify(state: _State, step: StepResult) -> None:
    options = state.options
    assert state.snapshot_id is not None
    state.progress(f"waiting for the throwaway Postgres ({options.backend}) to restore-test")
    started, state.server_start = state.server_start, None
    state.server = started.result() if started is not None else None
    if state.server is None:
        state.server = start_throwaway(options.backend, progress=state.progress)
    # The verified copy is kept for the rehearsal and the smoke suite, which so need no
    # second restore. It is restored as the RDS-like owner role: migrations run as it.
    state.rehearsal_db = f"gate_{secrets.token_hex(4)}"
    report = verify_snapshot(
        options.store,
        state.snapshot_id,
        state.server,
        migrations=state.migrations,
        keep_as=state.rehearsal_db,
        as_owner=True,
        progress=state.progress,
    )
    state.restore_seconds = report.restore_seconds
    step.details = report.to_dict()
    step.findings += list(report.problems)
    if not report.ok:
        step.summary = f"snapshot {state.snapshot_id} did not verify"
        raise _Stop
    step.summary = f"restored and matched in {report.restore_seconds:.1f}s"


# --- 4. rehearse --------------------------------------------------------------------------


def _rehearse(state: _State, step: StepResult) -> None:
    options = state.options
    assert state.snapshot_id is not None and state.server is not None
    server = state.server
    if state.rehearsal_db is not None:
        dsn = server.owner_dsn(state.rehearsal_db)  # the copy verify restored and checked
    else:  # pragma: no cover - verify always keeps its copy when it passes
        dsn = create_database(server, f"gate_{secrets.token_hex(4)}", owner=True)
        state.progress(f"restoring {state.snapshot_id} for the rehearsal")
        from rollback.verify import load_manifest

        manifest = load_manifest(options.store, state.snapshot_id)
        with checked_artifacts(options.store, manifest) as files:
            restore_dump(files / DUMP_DIRECTORY, dsn, server_major=server.major_version)
    _app_runners(options)  # a given image that cannot run: inconclusive before any work
    timings: dict[str, float] = {}
    step.details["timings_seconds"] = timings
    with psycopg.connect(dsn) as conn:
        state.catalog_before = read_catalog(conn)
    with _timed(timings, "migrations"):
        step.details["migrations"] = _rehearse_migrations(state, dsn, step)
    with _timed(timings, "apps_and_revert"):
        step.details["apps"] = _rehearse_apps(state, dsn, step)
    state.rehearsed = True
    if step.findings and step.status != NOT_RUN:
        step.summary = f"{len(step.findings)} finding(s)"
        raise _Stop
    with _timed(timings, "smoke_suite"):
        smoke = _run_smoke(state, dsn, step)
    step.details["smoke"] = smoke
    if smoke.get("status") == FAILED:
        step.summary = "the smoke suite failed"
        raise _Stop
    if smoke.get("status") == NOT_RUN:
        step.status = NOT_RUN
        step.summary = f"migrations and apps rehearsed; inconclusive: {SMOKE_MISSING}"
        step.findings.append(f"inconclusive: {SMOKE_MISSING} (smoke/run.py is not installed)")
        return
    step.summary = "migrations up and down, new app, previous app, smoke: all passed"


@contextlib.contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Record how long the body took in ``timings[name]`` (seconds), even when it raises."""
    started = time.monotonic()
    try:
        yield
    finally:
        timings[name] = round(time.monotonic() - started, 3)


def _rehearse_migrations(state: _State, dsn: str, step: StepResult) -> dict[str, Any]:
    """Apply the pending migrations one by one under a writer probe (see ``_writer_probe``)."""
    budget = state.options.lock_budget_seconds
    per_migration: list[dict[str, Any]] = []
    with MigrationRunner(dsn, state.migrations) as runner:
        for migration in state.pending:
            state.progress(f"rehearsing {migration.label} (writer probe, budget {budget:g}s)")
            with _writer_probe(dsn, budget) as blocked:
                started = time.monotonic()
                runner.migrate(migration.version)
                seconds = time.monotonic() - started
            state.up_seconds += seconds
            per_migration.append(
                {"migration": migration.label, "up_seconds": round(seconds, 3), "blocked": blocked}
            )
            blocked_messages = [
                f"{migration.label} blocked writers of {table} for more than the lock budget "
                f"of {budget:g}s ({migration.up.path}); split the change or use a lock-free "
                "form (CONCURRENTLY, NOT VALID then VALIDATE)"
                for table in blocked
            ]
            state.blocked += blocked_messages
            step.findings += blocked_messages  # a rollout would stall writers: stop here
    return {"lock_budget_seconds": budget, "applied": per_migration}


def _revert_and_compare(state: _State, dsn: str) -> list[str]:
    """Revert the pending migrations; the catalog and the data from before must be back.

    The data's reference is the snapshot's manifest (the data before the
    release); the catalog's is the copy's own, read before the migrations ran.
    The rows the rehearsal's own requests wrote are deleted first (they are
    marked), so what remains is exactly the down migrations' effect. Data a
    down file loses as ``db.destructive`` reads it (declared, or written by its
    up) is recorded, not a finding: the static step already refused the
    undeclared kind, as the smoke suite's reversibility check does.
    """
    from rollback.verify import load_manifest

    assert state.snapshot_id is not None
    with MigrationRunner(dsn, state.migrations) as runner:
        runner.revert(state.live_version)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM public.execution_tasks WHERE payload ? 'gate_rehearsal'")
        conn.execute("DELETE FROM public.payment_events WHERE stripe_event_id LIKE 'evt\\_gate%%'")
    problems = []
    if state.catalog_before is not None:
        with psycopg.connect(dsn) as conn:
            differences = diff_catalogs(state.catalog_before, read_catalog(conn))
        if differences:
            shown = "; ".join(str(d.describe()) for d in differences[:10])
            problems.append(
                f"the revert left the catalog different from before the release in "
                f"{len(differences)} place(s): {shown}. Make each down file undo its up"
            )
    manifest = load_manifest(state.options.store, state.snapshot_id)
    # The apps are stopped: nothing writes to the copy, so two sessions can sum it,
    # by the method the snapshot's checksums were taken with.
    state.start_checksums = parallel_table_checksums(
        dsn, exclude_schemas=("rollgate",), method=manifest.checksum_method
    )
    after = {c.table: c for c in state.start_checksums}
    declared = affected_data(classify_reverts(state.pending))
    for before in manifest.tables:
        if before.table.startswith("rollgate."):
            continue
        now = after.get(before.table)
        if now is not None and now.same_rows(before):
            continue
        if before.table in declared:
            state.declared_losses.append(before.table)
        elif now is None:
            problems.append(f"the revert dropped {before.table}, which existed before the release")
        else:
            problems.append(
                f"the revert changed the data of {before.table} ({before.rows} rows before the "
                f"release, {now.rows} after the revert): the down migrations destroy data they "
                "did not write"
            )
    return problems


@contextlib.contextmanager
def _writer_probe(dsn: str, budget: float) -> Iterator[list[str]]:
    """While the body runs, try a writer's lock on every user table with ``budget`` as timeout.

    A writer (INSERT/UPDATE/DELETE) takes ROW EXCLUSIVE on its table; the
    probe takes the same lock and rolls back, so it changes nothing. A table
    whose lock cannot be had within the budget is recorded: a real writer
    would have waited at least that long.
    """
    blocked: list[str] = []
    done = threading.Event()
    connected = threading.Event()

    def probe() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                tables = [
                    (str(schema), str(name))
                    for schema, name in conn.execute(
                        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND n.nspname "
                        "NOT IN ('pg_catalog', 'information_schema', 'rollgate') "
                        "AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2"
                    ).fetchall()
                ]
                connected.set()
                while not done.is_set():
                    for schema, name in tables:
                        if done.is_set() or f"{schema}.{name}" in blocked:
                            continue
                        try:
                            with conn.transaction(force_rollback=True):
                                conn.execute(
                                    "SELECT set_config('lock_timeout', %s, true)",
                                    (f"{int(budget * 1000)}ms",),
                                )
                                conn.execute(
                                    sql.SQL("LOCK TABLE {}.{} IN ROW EXCLUSIVE MODE").format(
                                        sql.Identifier(schema), sql.Identifier(name)
                                    )
                                )
                        except psycopg.errors.LockNotAvailable:
                            blocked.append(f"{schema}.{name}")
                        except psycopg.errors.UndefinedTable:
                            continue  # dropped by the migration meanwhile
                    done.wait(0.05)
        except psycopg.Error:
            connected.set()

    thread = threading.Thread(target=probe, name="gate-writer-probe", daemon=True)
    thread.start()
    connected.wait(10)  # the probe is watching before the migration starts
    try:
        yield blocked
    finally:
        done.set()
        thread.join(budget + 10)


def _app_runners(options: GateOptions) -> dict[str, apps.AppRunner]:
    """How each release's app runs: a given image must run as that image.

    Falling back to this checkout's processes would rehearse code other than
    the release's, and call it a pass: a given image that cannot run here
    (no Docker, image not pulled) makes the rehearsal inconclusive instead.
    """
    return {
        release: apps.choose_app_runner(apps.IMAGE if image else apps.AUTO, image)
        for release, image in (
            ("new", options.app_image),
            ("previous", options.previous_app_image),
        )
    }


def _rehearse_apps(state: _State, dsn: str, step: StepResult) -> dict[str, Any]:
    """The new app, then release N's app, on the new schema; then the revert.

    Each release runs from its image (``--app-image``, ``--previous-app-image``)
    when one is given, else as processes of this checkout; ``runs_as`` says which.
    """
    options = state.options
    runners = _app_runners(options)
    result: dict[str, Any] = {
        "runs_as": {release: runner.to_dict() for release, runner in runners.items()},
        "image": options.app_image,
    }
    logs = options.report_dir / "logs"
    workdir = options.report_dir / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    if importlib.util.find_spec("moto") is None:
        step.status = NOT_RUN
        step.findings.append("moto is not installed: the app sandbox (SQS) cannot run")
        return result
    with apps.local_moto() as endpoint:
        queues = apps.create_queues(endpoint, f"gate-{secrets.token_hex(3)}")
        extra = {k: v.replace("{sqs_endpoint}", endpoint) for k, v in options.new_app_env.items()}
        new_env = apps.app_env(dsn, queues, endpoint, workdir, "new", **extra)
        previous_env = apps.app_env(dsn, queues, endpoint, workdir, "previous")
        state.progress("starting the new app and release N's app on the new schema")
        new, previous = _app_checks(
            {"new": (runners["new"], new_env), "previous": (runners["previous"], previous_env)},
            logs,
        )
        result["new_app"] = new
        if not new["ok"]:
            step.findings.append(f"the new app release is not ready: {new['reason']}")
        result["previous_app"] = previous
        state.previous_app_ok = bool(previous["ok"])
        if not previous["ok"]:
            state.previous_app_problems.append(str(previous["reason"]))
            if not new["ok"]:
                # The step fails on the new app already; say N-1 fails too (the budget
                # step, which weighs --allow-incompatible, will not run).
                step.findings.append(
                    f"release N's app cannot run on the new schema either: {previous['reason']}"
                )
    state.progress("reverting the pending migrations and comparing the data")
    problems = _revert_and_compare(state, dsn)
    result["revert"] = problems or (
        "reverted; the catalog and the data from before the release are unchanged"
    )
    if state.declared_losses:
        result["declared_losses"] = state.declared_losses
    step.findings += problems
    return result


def _app_checks(
    releases: Mapping[str, tuple[apps.AppRunner, Mapping[str, str]]], logs: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start each release's web at once; ready within 20 s, basic requests answered?

    Both run against the same database (the new schema), as they would side by
    side during a rolling deploy; starting them together halves the wait.
    """
    started: dict[str, apps.AppProcess] = {}
    outcomes: dict[str, dict[str, Any]] = {}
    try:
        for release, (runner, env) in releases.items():
            started[release] = runner.start("web", env, logs, f"gate-{release}")
        for release, web in started.items():
            readiness = apps.wait_ready(web, timeout=20)
            outcome: dict[str, Any] = {"readiness": readiness.to_dict(), "log": str(web.log_path)}
            if not readiness.ready:
                outcome.update(ok=False, reason=readiness.reason)
            else:
                problems = _gate_requests(web.url)
                outcome.update(ok=not problems, reason="; ".join(problems) or "ready and serving")
            outcomes[release] = outcome
    finally:
        for web in started.values():
            web.stop()
    return outcomes["new"], outcomes["previous"]


def _gate_requests(base_url: str) -> list[str]:
    problems = []
    status, body = apps.post_task(base_url, {"gate_rehearsal": True})
    if status not in (200, 201):
        problems.append(f"POST /tasks answered {status}: {body.get('detail', body)}")
    event = "evt_gate" + secrets.token_hex(6)
    status, body = apps.post_webhook(base_url, event, 100)
    if status != 200:
        problems.append(f"POST /webhooks/stripe answered {status}: {body.get('detail', body)}")
    status, body = apps.http("GET", base_url + "/roi?from=2026-01-01&to=2026-01-31")
    if status != 200:
        problems.append(f"GET /roi answered {status}: {body.get('detail', body)}")
    return problems


def smoke_available() -> bool:
    return importlib.util.find_spec("smoke.run") is not None


def _run_smoke(state: _State, dsn: str, step: StepResult) -> dict[str, Any]:
    """The smoke suite on the snapshot (``smoke.run.run_smoke``), when installed."""
    if not smoke_available():
        return {"status": NOT_RUN, "reason": SMOKE_MISSING}
    # Imported by name: smoke.run is another module's API, absent until it is installed.
    smoke_run = importlib.import_module("smoke.run")
    write_checksums = importlib.import_module("smoke.prepare").write_checksums
    options = state.options
    output = options.report_dir / "smoke"
    assert state.server is not None and state.rehearsal_db is not None
    # The suite starts from the copy verify restored (and the rehearsal reverted to
    # release N, unchanged), on the same server: no second server, no second restore.
    smoke_options = smoke_run.SmokeOptions(
        database=state.rehearsal_db,
        server_handoff=handoff(state.server),
        # The gate's revert check has just proven the revert on this very copy, against
        # the snapshot: a second proof would clone and sum the whole copy again.
        reversibility_proven_by=REVERT_PROOF,
        # Summed by the revert check a moment ago, with nothing written since.
        start_checksums=(
            write_checksums(output / "start-checksums.json", state.start_checksums)
            if state.start_checksums
            else None
        ),
        aws_endpoint_url=options.aws_endpoint_url,
        migrations=options.migrations_dir,
        schema=options.schema_path,
        backend="auto",
        image=None,
        app_image=options.app_image,
        previous_app_image=options.previous_app_image,
        sample_size="25MB",
        from_version=state.live_version,
        lock_budget_seconds=options.lock_budget_seconds,
        output_dir=output,
        post_deploy=False,
        stack_outputs=None,
    )
    report = smoke_run.run_smoke(smoke_options)
    summary = dict(getattr(report, "summary", {}) or {})
    result = {
        "status": PASSED if report.exit_code == 0 else FAILED,
        "exit_code": report.exit_code,
        "junit_xml": str(report.junit_xml),
        "markdown_summary": str(report.markdown_summary),
        "summary": summary,
    }
    if report.exit_code == 2:
        result["status"] = NOT_RUN
    if report.exit_code == 1:
        step.findings.append(f"the smoke suite failed: see {report.markdown_summary}")
    return result


# --- 5. budget ----------------------------------------------------------------------------


def _budget(state: _State, step: StepResult) -> None:
    options = state.options
    findings: list[str] = []
    if not state.rehearsed:
        raise CannotRun("the budget needs the rehearsal's measurements, and it did not run")
    findings += state.blocked
    plan = _rollback_plan(state)
    expected = plan.expected_seconds if plan is not None else None
    step.details["rollback_plan"] = plan.to_dict() if plan is not None else None
    step.details["rto_seconds"] = options.rto_seconds
    step.details["expected_recovery_seconds"] = expected
    if expected is not None and expected > options.rto_seconds:
        findings.append(
            f"the rollback plan ({plan.path if plan else '?'}) is expected to take "
            f"{expected:.0f}s, more than the recovery-time window of {options.rto_seconds:.0f}s"
        )
    compatible = state.previous_app_ok
    step.details["n_minus_1_compatible"] = compatible
    step.details["allow_incompatible"] = options.allow_incompatible
    if compatible is False:
        reason = "; ".join(state.previous_app_problems)
        if options.allow_incompatible:
            step.details["incompatibility_accepted"] = reason
        else:
            findings.append(
                f"release N's app cannot run on the new schema ({reason}): rolling the app "
                "back alone would fail. Make the migration expand-only, or pass "
                "--allow-incompatible (recorded in the report)"
            )
    step.findings += findings
    if findings:
        step.summary = f"{len(findings)} budget finding(s)"
        raise _Stop
    step.summary = (
        f"rollback ~{expected:.0f}s within {options.rto_seconds:.0f}s; no writer blocked past "
        f"{options.lock_budget_seconds:g}s"
        + ("; N-1 incompatible, accepted" if compatible is False else "")
        if expected is not None
        else "no rollback plan needed"
    )


def _rollback_plan(state: _State) -> Any:
    """The plan that would take this release back to the live one, from measured times."""
    options = state.options
    recorded = _recorded_releases(options.store)
    now = recorded[-1] if recorded else _unrecorded_release(state.live_version)
    upcoming = replace(
        now,
        sequence=now.sequence + 1,
        commit=options.commit,
        app_image=options.app_image,
        schema_version=state.pending[-1].version if state.pending else state.live_version,
        services=Services(
            now.services.cluster,
            {
                role: ServiceState(s.name, s.task_definition + ":next", s.desired_count)
                for role, s in now.services.by_role.items()
            },
        ),
    )
    facts = RollbackFacts(
        current=upcoming,
        target=now,
        live_version=upcoming.schema_version,
        reverted=[m.label for m in reversed(state.pending)],
        reverts=classify_reverts(state.pending),
        snapshot=SnapshotChoice(state.snapshot_id or "", state.restore_seconds, state.slot),
        changes_since_snapshot={} if state.slot else None,
        down_seconds=state.up_seconds,
    )
    try:
        return plan_rollback(facts)
    except RollbackRefused as exc:
        raise CannotRun(f"no rollback plan for this release: {exc}") from exc


def _recorded_releases(store: SnapshotStore) -> list[Release]:
    """The releases log, or [] when none is recorded yet (a first rollout)."""
    if not store.log_entries("releases"):
        return []
    return list_releases(store)


def _unrecorded_release(version: int) -> Release:
    return Release(
        sequence=0,
        commit=None,
        app_image=None,
        schema_version=version,
        services=Services(
            "unrecorded",
            {
                "web": ServiceState("web", "web", 1),
                "worker": ServiceState("worker", "worker", 1),
            },
        ),
    )


# --- the report ---------------------------------------------------------------------------


def write_report(report: GateReport, report_dir: Path) -> None:
    """``gate-report.json`` and ``gate-summary.md`` in ``report_dir``."""
    report_dir.mkdir(parents=True, exist_ok=True)
    report.report_path = report_dir / "gate-report.json"
    report.summary_path = report_dir / "gate-summary.md"
    report.report_path.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    report.summary_path.write_text(markdown_summary(report))


_ICONS = {PASSED: "✅", FAILED: "❌", NOT_RUN: "⚠️", SKIPPED: "⏭️"}


def markdown_summary(report: GateReport) -> str:
    """The CI job summary: the verdict, each step with its time, and every finding."""
    lines = [
        f"## Rollgate gate: **{report.verdict.upper()}**",
        "",
        f"Target database `{report.target.get('database')}`, pending "
        f"{', '.join(report.target.get('pending') or []) or 'none'}; "
        f"snapshot `{report.snapshot_id or '-'}`.",
        "",
        "| step | status | time | summary |",
        "|---|---|---|---|",
    ]
    for step in report.steps:
        summary = step.summary.replace("|", "\\|")
        lines.append(
            f"| {step.name} | {_ICONS.get(step.status, '')} {step.status} | "
            f"{step.seconds:.1f}s | {summary} |"
        )
    findings = [(s.name, f) for s in report.steps for f in s.findings]
    if findings:
        lines += ["", "### Findings", ""]
        lines += [f"- **{name}**: {text}" for name, text in findings]
    if report.allow_incompatible:
        lines += ["", "`--allow-incompatible` was given: recorded in the gate log."]
    if report.ledger_error:
        lines += ["", f"**Not recorded**: {report.ledger_error}"]
    if report.entry_sha256:
        lines += [
            "",
            f"Gate log entry `{report.entry_sha256}` (record it with "
            f"`rollgate release record --gate-entry {report.entry_sha256}`).",
        ]
    return "\n".join(lines) + "\n"
