"""Executing a confirmed rollback plan: app and database as one unit, resumable, recorded.

``gather_facts`` reads the world (the releases log, the live history, the
snapshots, the slot's pending changes, ECS); ``rollback.plan`` decides, purely;
``run_rollback`` acts:

* it holds the **rollback lock** (a server-wide advisory lock on the
  maintenance database, so two rollbacks never overlap) and the **migration
  lock** on the live database (so no migration starts under it);
* it refuses a plan whose fingerprint differs from the confirmed one;
* it **journals** every finished step in the store (``logs/rollback-<fp>``),
  so a run killed at any step is resumed by running it again, with exactly
  the confirmed steps, the finished ones skipped (each step is idempotent);
* it **stops writers first** (the worker scaled to zero) and resumes them
  last, and verifies the result before resuming them;
* it appends the outcome to the hash-chained ``rollbacks`` log: who, when,
  the plan, every step with its duration, and what was replayed or lost.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import conninfo, sql

from core.errors import CheckFailed
from core.postgres import connect
from core.progress import Progress, silent
from db.catalog import read_catalog
from db.destructive import classify_reverts
from db.migrations import Migration
from db.runner import MigrationRunner
from rollback import ledger
from rollback.decoding import decode, flush_wal
from rollback.ecs import read_services, update_service
from rollback.plan import RollbackFacts, RollbackPlan, SnapshotChoice
from rollback.releases import list_releases, resolve_target
from rollback.replay import ReplayReport, replay_changes
from rollback.restore import WARM_MARK, restore_snapshot, staging_name, swap_in
from rollback.retention import list_snapshots
from rollback.store import SnapshotStore
from rollback.tables import restore_table_data
from rollback.verify import load_manifest

ROLLBACKS_LOG = "rollbacks"
STARTS_LOG = "rollback-starts"
# "RoBk": a different key from the migration lock, taken on the maintenance
# database so that it spans every database of the server (renames included).
ROLLBACK_LOCK_KEY = 0x526F426B


class PlanChangedSinceConfirmed(CheckFailed):
    """The plan computed now is not the one that was confirmed; nothing was done."""


@dataclass
class RollbackOutcome:
    plan: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int = 0
    replay: dict[str, Any] | None = None
    seconds: float = 0.0
    record: str | None = None  # entry_sha256 in the rollbacks log

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "steps": self.steps,
            "resumed_from_step": self.resumed_from,
            "replay": self.replay,
            "seconds": round(self.seconds, 3),
            "record": self.record,
        }


def gather_facts(
    store: SnapshotStore,
    dsn: str,
    migrations: Sequence[Migration],
    *,
    to: str | None = None,
    accept_data_loss: bool = False,
) -> RollbackFacts:
    """Read everything the planner needs; changes nothing."""
    current, target = resolve_target(list_releases(store), to)
    with MigrationRunner(dsn, migrations) as runner:
        status = runner.status()
        history = {row.version: row for row in runner.read_history()}
        xids = runner.applied_xids()
    live_version = status.current
    reverted = [
        m for m in reversed(migrations) if target.schema_version < m.version <= live_version
    ]
    down_seconds = sum(
        (history[m.version].duration_ms or 0) for m in reverted if m.version in history
    )
    snapshot = _choose_snapshot(store, dsn, target.schema_version, target.commit)
    changes = None
    if snapshot is not None and snapshot.slot:
        skip = {xid for version, xid in xids.items() if version > target.schema_version}
        changes = count_changes(dsn, snapshot.slot, skip_xids=skip)
    return RollbackFacts(
        current=current,
        target=target,
        live_version=live_version,
        reverted=[m.label for m in reverted],
        reverts=classify_reverts(reverted),
        snapshot=snapshot,
        changes_since_snapshot=changes,
        down_seconds=down_seconds / 1000,
        accept_data_loss=accept_data_loss,
    )


def count_changes(dsn: str, slot: str, *, skip_xids: set[int]) -> dict[str, int] | None:
    """Row changes per table that ``slot`` retains (None if the slot is gone)."""
    with connect(dsn, application_name="rollgate-rollback-plan") as conn:
        row = conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,))
        if row.fetchone() is None:
            return None
        flush_wal(conn)
        conn.autocommit = False
        counts: dict[str, int] = {}
        for transaction in decode(conn, slot):
            if transaction.xid in skip_xids:
                continue
            for change in transaction.changes:
                if change.schema != "rollgate":
                    counts[change.qualified] = counts.get(change.qualified, 0) + 1
        conn.rollback()
    return counts


def run_rollback(
    store: SnapshotStore,
    dsn: str,
    migrations: Sequence[Migration],
    plan: RollbackPlan,
    *,
    confirmed: str,
    ecs: Any,
    actor: str | None = None,
    progress: Progress = silent,
) -> RollbackOutcome:
    """Execute ``plan`` if it is the one confirmed (``confirmed``: its fingerprint)."""
    if plan.fingerprint() != confirmed:
        raise PlanChangedSinceConfirmed(
            "the rollback plan changed since it was confirmed (a release, a migration, a "
            "snapshot or the live database moved on); nothing was done. Run `rollgate "
            "rollback plan` again and confirm the new plan",
            details={"confirmed": confirmed, "now": plan.fingerprint()},
        )
    return _execute(store, dsn, migrations, plan.to_dict(), ecs=ecs, actor=actor, progress=progress)


def resume_unfinished(
    store: SnapshotStore,
    dsn: str,
    migrations: Sequence[Migration],
    *,
    ecs: Any,
    actor: str | None = None,
    progress: Progress = silent,
) -> RollbackOutcome | None:
    """Finish a rollback that was interrupted (its confirmed plan is in its journal), if any."""
    journal = _unfinished_journal(store)
    if journal is None:
        return None
    plan = journal[0].body["plan"]
    progress(f"resuming the interrupted rollback {plan['fingerprint'][:12]}")
    return _execute(store, dsn, migrations, plan, ecs=ecs, actor=actor, progress=progress)


# --- the executor --------------------------------------------------------------


def _execute(
    store: SnapshotStore,
    dsn: str,
    migrations: Sequence[Migration],
    plan: dict[str, Any],
    *,
    ecs: Any,
    actor: str | None,
    progress: Progress,
) -> RollbackOutcome:
    started = time.monotonic()
    journal_log = _journal_name(plan["fingerprint"])
    outcome = RollbackOutcome(plan)
    with _rollback_lock(dsn, progress), _Guard(dsn, migrations, progress) as guard:
        journal = ledger.read(store, journal_log)
        done = {entry.body["step"] for entry in journal if "step" in entry.body}
        if not journal:
            ledger.append(store, journal_log, {"plan": plan, "started_by": _actor(actor)})
            ledger.append(store, STARTS_LOG, {"fingerprint": plan["fingerprint"]})
        outcome.resumed_from = len(done)
        context = _Context(store, dsn, migrations, plan, ecs, progress, guard)
        steps = plan["steps"]
        for index, step in enumerate(steps):
            if index in done:
                progress(f"[{index + 1}/{len(steps)}] {step['description']}: done before")
                continue
            progress(f"[{index + 1}/{len(steps)}] {step['description']}")
            step_started = time.monotonic()
            _STEPS[step["kind"]](context, step["details"])
            seconds = round(time.monotonic() - step_started, 3)
            ledger.append(
                store, journal_log, {"step": index, "kind": step["kind"], "seconds": seconds}
            )
            outcome.steps.append({"kind": step["kind"], "seconds": seconds})
        outcome.replay = context.replay.to_dict() if context.replay else None
        outcome.seconds = time.monotonic() - started
        entry = ledger.append(
            store,
            ROLLBACKS_LOG,
            {
                "by": _actor(actor),
                "plan": plan,
                "steps": outcome.steps,
                "resumed_from_step": outcome.resumed_from,
                "replay": outcome.replay,
                "seconds": round(outcome.seconds, 3),
                "outcome": "done",
            },
        )
        ledger.append(store, journal_log, {"finished": True, "record": entry.entry_sha256})
        outcome.record = entry.entry_sha256
    return outcome


@dataclass
class _Context:
    store: SnapshotStore
    dsn: str
    migrations: Sequence[Migration]
    plan: dict[str, Any]
    ecs: Any
    progress: Progress
    guard: _Guard
    replay: ReplayReport | None = None


def _stop_writers(context: _Context, details: Mapping[str, Any]) -> None:
    update_service(context.ecs, details["cluster"], details["service"], desired_count=0)


def _resume_writers(context: _Context, details: Mapping[str, Any]) -> None:
    update_service(
        context.ecs, details["cluster"], details["service"], desired_count=details["count"]
    )


def _app(context: _Context, details: Mapping[str, Any]) -> None:
    update_service(
        context.ecs,
        details["cluster"],
        details["service"],
        task_definition=details["task_definition"],
    )


def _down(context: _Context, details: Mapping[str, Any]) -> None:
    # Through the guard's runner: its session already holds the migration lock
    # (advisory locks nest within a session), so nothing can slip in between.
    context.guard.runner.revert(int(details["to"]))


def _table_restore(context: _Context, details: Mapping[str, Any]) -> None:
    manifest = load_manifest(context.store, details["snapshot"])
    for target in details["targets"]:
        restore_table_data(
            context.store,
            manifest,
            context.dsn,
            table=target["table"],
            columns=target["columns"],
            progress=context.progress,
        )


def _restore(context: _Context, details: Mapping[str, Any]) -> None:
    manifest = load_manifest(context.store, details["snapshot"])
    replay = _replayer(context, manifest.slot.name if manifest.slot else None)
    staged: dict[str, str] = {}

    def before_swap(new_dsn: str, _manifest: Any) -> None:
        staged["dsn"] = new_dsn
        replay(new_dsn)
        context.guard.release()  # its session is on the live database, about to be renamed

    restore_snapshot(
        context.store,
        details["snapshot"],
        context.dsn,
        before_swap=before_swap,
        catch_up=lambda live: replay(staged["dsn"], live),
        progress=context.progress,
    )
    context.guard.take()


def _warm_swap(context: _Context, details: Mapping[str, Any]) -> None:
    manifest = load_manifest(context.store, details["snapshot"])
    replay = _replayer(context, manifest.slot.name if manifest.slot else None)
    live = conninfo.conninfo_to_dict(context.dsn)["dbname"]
    warm = str(details["database"])
    with _maintenance(context.dsn) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(warm))
        )
    warm_dsn = conninfo.make_conninfo(context.dsn, dbname=warm)
    replay(warm_dsn)
    context.guard.release()
    swap_in(context.dsn, str(live), warm, catch_up=lambda conn: replay(warm_dsn, conn))
    context.guard.take()


def _verify(context: _Context, details: Mapping[str, Any]) -> None:
    target = context.plan["target"]
    with MigrationRunner(context.dsn, context.migrations) as runner:
        version = runner.status().current
    problems = []
    if version != details["schema_version"]:
        problems.append(f"the schema is at {version:04d}, not {details['schema_version']:04d}")
    snapshot_id = context.plan.get("snapshot")
    if snapshot_id:
        manifest = load_manifest(context.store, snapshot_id)
        with connect(context.dsn) as conn:
            if read_catalog(conn).fingerprint() != manifest.catalog_fingerprint:
                problems.append(f"the catalog is not the target release's (snapshot {snapshot_id})")
    services = target["services"]
    names = {role: state["name"] for role, state in services["services"].items()}
    running = read_services(context.ecs, services["cluster"], names)
    for role, state in services["services"].items():
        if running.by_role[role].task_definition != state["task_definition"]:
            problems.append(
                f"the {role} service runs {running.by_role[role].task_definition}, "
                f"not {state['task_definition']}"
            )
    if problems:
        raise CheckFailed(
            "the rollback did not reach the target release: " + "; ".join(problems),
            details={"problems": problems},
        )


_STEPS: dict[str, Callable[[_Context, Mapping[str, Any]], None]] = {
    "stop-writers": _stop_writers,
    "app": _app,
    "down": _down,
    "table-restore": _table_restore,
    "restore": _restore,
    "warm-swap": _warm_swap,
    "verify": _verify,
    "resume-writers": _resume_writers,
}


def _replayer(context: _Context, slot: str | None) -> Callable[..., None]:
    """Replays the slot's changes onto a database; a no-op for a snapshot without a slot."""
    target_version = int(context.plan["target"]["schema_version"])
    with MigrationRunner(context.dsn, context.migrations) as runner:
        skip = {xid for version, xid in runner.applied_xids().items() if version > target_version}

    def replay(onto: str, live_conn: psycopg.Connection[Any] | None = None) -> None:
        if slot is None:
            return
        report = replay_changes(context.dsn, slot, onto, skip_xids=skip, live_conn=live_conn)
        context.replay = _merge(context.replay, report)

    return replay


def _merge(before: ReplayReport | None, report: ReplayReport) -> ReplayReport:
    if before is None:
        return report
    before.transactions += report.transactions
    before.skipped_transactions += report.skipped_transactions
    for name, outcome in report.tables.items():
        merged = before.tables[name]
        merged.replayed += outcome.replayed
        merged.refused.update(outcome.refused)
        merged.dropped_columns.update(outcome.dropped_columns)
    before.missing_tables.update(report.missing_tables)
    before.seconds += report.seconds
    return before


# --- locks, journal, facts -----------------------------------------------------


class _Guard:
    """The migration lock on the live database, held for the whole rollback.

    Released only around a swap (its session lives in the database being
    renamed away) and taken again on the database swapped in.
    """

    def __init__(self, dsn: str, migrations: Sequence[Migration], progress: Progress) -> None:
        self.dsn = dsn
        self.migrations = migrations
        self.progress = progress
        self.runner = MigrationRunner(dsn, migrations, progress=progress, lock_wait=30)
        self._held: Any = None

    def take(self) -> None:
        self.runner = MigrationRunner(
            self.dsn, self.migrations, progress=self.progress, lock_wait=30
        )
        self._held = self.runner.migration_lock()
        self._held.__enter__()

    def release(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            held.__exit__(None, None, None)
        self.runner.close()

    def __enter__(self) -> _Guard:
        self.take()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@contextmanager
def _rollback_lock(dsn: str, progress: Progress) -> Iterator[None]:
    with _maintenance(dsn) as admin:
        if not admin.execute("SELECT pg_try_advisory_lock(%s)", (ROLLBACK_LOCK_KEY,)).fetchone()[0]:  # type: ignore[index]
            raise CheckFailed(
                "another rollback is running on this server (it holds the rollback lock); "
                "nothing was done. Wait for it, then run `rollgate rollback run` again"
            )
        progress("holding the rollback lock")
        yield


@contextmanager
def _maintenance(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with connect(
        conninfo.make_conninfo(dsn, dbname="postgres"), application_name="rollgate-rollback"
    ) as admin:
        yield admin


def _fingerprint(body: dict[str, Any]) -> str:
    """A plan fingerprint as a log body holds it (``ValueError`` for anything else)."""
    fingerprint = body["fingerprint"]
    if not (isinstance(fingerprint, str) and fingerprint.isalnum()):
        raise ValueError(f"fingerprint {fingerprint!r} is not a plan fingerprint")
    return fingerprint


def _journal_name(fingerprint: str) -> str:
    return f"rollback-{fingerprint[:16]}"


def _unfinished_journal(store: SnapshotStore) -> list[ledger.LogEntry] | None:
    """The journal of a rollback that started and never finished, if there is one."""
    finished = set(
        ledger.read_as(store, ROLLBACKS_LOG, lambda entry: _fingerprint(entry.body["plan"]))
    )
    for fingerprint in reversed(ledger.read_as(store, STARTS_LOG, lambda e: _fingerprint(e.body))):
        if fingerprint in finished:
            continue
        journal = ledger.read(store, _journal_name(fingerprint))
        if journal and not any(entry.body.get("finished") for entry in journal):
            return journal
    return None


def _choose_snapshot(
    store: SnapshotStore, dsn: str, schema_version: int, commit: str | None
) -> SnapshotChoice | None:
    """The newest verified snapshot of the target release, and its warm standby if ready."""
    candidates = [
        s
        for s in list_snapshots(store)
        if s.manifest is not None
        and s.verified
        # Never a masked copy (its personal data is gone) nor an RDS snapshot
        # (no files to restore here): neither is a rollback's data.
        and not s.manifest.masked_columns
        and s.manifest.rds is None
        and s.manifest.release.schema_version == schema_version
        and (commit is None or s.manifest.release.bundle_commit in (None, commit))
    ]
    if not candidates:
        return None
    chosen = candidates[-1]
    assert chosen.manifest is not None
    live = str(conninfo.conninfo_to_dict(dsn)["dbname"])
    warm = staging_name(live, chosen.id, WARM_MARK)
    with _maintenance(dsn) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (warm,)).fetchone()
    return SnapshotChoice(
        id=chosen.id,
        restore_seconds=(chosen.verification or {}).get("restore_seconds"),
        slot=chosen.manifest.slot.name if chosen.manifest.slot else None,
        warm_database=warm if exists else None,
    )


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    if os.environ.get("ROLLGATE_ACTOR"):
        return os.environ["ROLLGATE_ACTOR"]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
