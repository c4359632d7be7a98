"""Creating a rollback snapshot: one consistent view, dumped, measured and published.

``create_snapshot`` reads like what it does::

    with store.begin(snapshot_id) as draft:
        with exported_snapshot(dsn) as view:        # a replication slot, or a plain export
            dump = start_pg_dump(view, draft.directory / "dump")
            facts = read_facts(view)                 # catalog, checksums, history
            dump.wait()
        draft.commit(manifest.to_json())

Decisions, and why:

* **One consistent view.** The dump, the catalog fingerprint, the per-table
  checksums and the schema version are all read in one exported snapshot:
  pg_dump imports it with ``--snapshot`` (its parallel workers too), and a
  second connection imports it with ``SET TRANSACTION SNAPSHOT``. Nothing in
  the manifest can describe a moment other than the dump's.
* **Replay from the snapshot's moment.** By default the view comes from
  ``CREATE_REPLICATION_SLOT ... LOGICAL test_decoding (SNAPSHOT 'export')`` on
  a replication connection: the slot's consistent point *is* the dump's
  moment, so every change after the dump is retained for replay at rollback
  time, and none before it. test_decoding, not pgoutput: pgoutput needs a
  publication, and a ``FOR ALL TABLES`` publication makes every UPDATE and
  DELETE on a table without a replica identity fail on the source. A
  snapshot must never break production writes. (``slot=False`` exports a
  plain snapshot instead, for roles without the REPLICATION attribute.)
* **Never block writers.** pg_dump and the checksum reader take only ACCESS
  SHARE locks, which INSERT, UPDATE and DELETE never wait for. Both give up
  after ``lock_wait`` seconds rather than queue behind a pending DDL lock
  (a queued lock request would make writers queue behind it in turn).
* **Tools at least as new as the server.** ``core.pgtools.client_tools_for``
  refuses older ones: pg_dump refuses a newer server anyway, and an old
  pg_restore cannot read a newer archive.
* **Parallel and uncompressed by default.** ``pg_dump -Fd -j2 -Z0``: the
  directory format is the only one that dumps and restores in parallel, and
  on 2 cores gzip would cost more than the disk it saves; the sha256 of every
  file is the integrity check. ``compress`` takes pg_dump's ``-Z`` values.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo, sql

from core.errors import CannotRun
from core.pgtools import client_tools_for
from core.postgres import connect, redact_dsn
from core.progress import Progress, silent
from db.catalog import read_catalog
from db.checksums import DEFAULT_CHECKSUM_METHOD, table_checksums
from db.history import HISTORY_QUALIFIED, HISTORY_SCHEMA
from db.throwaway import ThrowawayPostgres
from rollback.manifest import Manifest, ReplicationSlot, describe_files
from rollback.masking import MaskingRules, mask_dump
from rollback.store import SnapshotStore

DUMP_DIRECTORY = "dump"
SLOT_PLUGIN = "test_decoding"
SLOT_PREFIX = "rollgate_"
_SLOT_NAME = re.compile(r"[^a-z0-9_]")


class SnapshotFailed(CannotRun):
    """The snapshot could not be taken (pg_dump failed, permission, lock wait)."""


@dataclass(frozen=True)
class ReleaseInfo:
    """What the caller knows about the release being protected."""

    bundle_commit: str | None = None
    app_image: str | None = None


@dataclass(frozen=True)
class ExportedView:
    """An exported snapshot other sessions can import, and the slot it came with."""

    dsn: str
    snapshot_name: str
    slot: ReplicationSlot | None


def new_snapshot_id(now: datetime | None = None) -> str:
    """``20261130T031500Z-1a2b3c``: sorts by time, unique without coordination."""
    moment = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{moment}-{secrets.token_hex(3)}"


def slot_name_for(snapshot_id: str) -> str:
    """The replication slot name for a snapshot (lowercase, at most 63 bytes)."""
    return (SLOT_PREFIX + _SLOT_NAME.sub("_", snapshot_id.lower()))[:63]


def create_snapshot(
    dsn: str,
    store: SnapshotStore,
    *,
    release: ReleaseInfo = ReleaseInfo(),
    slot: bool = True,
    jobs: int = 2,
    compress: str = "0",
    lock_wait: float = 30.0,
    mask: MaskingRules | None = None,
    mask_server: ThrowawayPostgres | None = None,
    progress: Progress = silent,
) -> Manifest:
    """Take a snapshot of the database at ``dsn`` into ``store``; return its manifest.

    ``mask``: a masked snapshot, for use outside production (see
    ``rollback.masking``), made on ``mask_server``. It has no replication
    slot: nothing is ever replayed onto a masked copy.
    """
    if mask is not None:
        if mask_server is None:
            raise CannotRun("a masked snapshot needs a throwaway server to mask on")
        slot = False
    started = time.monotonic()
    with connect(dsn, application_name="rollgate-snapshot") as probe:
        server_major = probe.info.server_version // 10000
        server_version = str(probe.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        database = str(probe.info.dbname)
    bin_dir = client_tools_for(server_major)
    snapshot_id = new_snapshot_id()
    timings: dict[str, float] = {}
    progress(f"snapshot {snapshot_id}: opening a consistent view of {database}")
    with (
        store.begin(snapshot_id) as draft,
        exported_view(dsn, snapshot_id, slot=slot, progress=progress) as view,
    ):
        try:
            dump_started = time.monotonic()
            unmasked = Path(tempfile.mkdtemp(prefix="rollgate-unmasked-")) if mask else None
            dump = _start_pg_dump(
                bin_dir,
                view,
                (unmasked or draft.directory) / DUMP_DIRECTORY,
                jobs=jobs,
                compress=compress,
                lock_wait=lock_wait,
            )
            try:
                progress("reading the catalog, row counts and checksums in the same view")
                facts_started = time.monotonic()
                facts = _read_facts(view, lock_wait, checksums=mask is None)
                timings["checksum_seconds"] = round(time.monotonic() - facts_started, 3)
                progress(f"waiting for pg_dump (-j{jobs}) to finish")
                _wait_for_dump(dump, lock_wait)
            finally:
                if dump.poll() is None:
                    dump.kill()
                    dump.wait()
            timings["dump_seconds"] = round(time.monotonic() - dump_started, 3)
            if unmasked is not None:
                assert mask is not None and mask_server is not None
                progress(f"masking {', '.join(mask.masked_columns)} on a throwaway copy")
                facts.checksums[:] = _masked(
                    unmasked, draft.directory, mask, mask_server, jobs=jobs, timings=timings
                )
            progress("hashing the artifact files")
            hash_started = time.monotonic()
            files = describe_files(draft.directory)
            timings["hash_seconds"] = round(time.monotonic() - hash_started, 3)
            timings["total_seconds"] = round(time.monotonic() - started, 3)
            manifest = Manifest(
                id=snapshot_id,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                database=database,
                server_version=server_version,
                server_major=server_major,
                catalog_fingerprint=facts.catalog_fingerprint,
                release=_release(release, facts.history),
                tables=tuple(facts.checksums),
                files=files,
                slot=view.slot,
                masked_columns=mask.masked_columns if mask else (),
                timings=timings,
                checksum_method=DEFAULT_CHECKSUM_METHOD,
            )
            draft.commit(manifest.to_json())
        except BaseException:
            if view.slot is not None:
                drop_slot(dsn, view.slot.name)
            raise
    progress(
        f"snapshot {snapshot_id}: {manifest.total_rows} rows in {len(manifest.tables)} tables, "
        f"{manifest.total_bytes} bytes, {timings['total_seconds']:.1f}s"
    )
    return manifest


def _masked(
    unmasked: Path,
    directory: Path,
    mask: MaskingRules,
    server: ThrowawayPostgres,
    *,
    jobs: int,
    timings: dict[str, float],
) -> list[Any]:
    """Mask the dump in ``unmasked`` into ``directory``; remove ``unmasked`` whatever happens."""
    started = time.monotonic()
    try:
        return mask_dump(
            unmasked / DUMP_DIRECTORY,
            directory / DUMP_DIRECTORY,
            mask,
            server,
            jobs=jobs,
            method=DEFAULT_CHECKSUM_METHOD,
        )
    finally:
        shutil.rmtree(unmasked, ignore_errors=True)
        timings["mask_seconds"] = round(time.monotonic() - started, 3)


@contextmanager
def exported_view(
    dsn: str, snapshot_id: str, *, slot: bool, progress: Progress = silent
) -> Iterator[ExportedView]:
    """An exported snapshot, valid while the block runs (its session stays open and idle)."""
    if not slot:
        with connect(dsn, application_name="rollgate-snapshot-export") as conn:
            conn.autocommit = False
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            name = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
            try:
                yield ExportedView(dsn, name, None)
            finally:
                conn.rollback()
        return
    slot_name = slot_name_for(snapshot_id)
    replication_dsn = conninfo.make_conninfo(dsn, replication="database")
    try:
        conn = psycopg.connect(
            replication_dsn, autocommit=True, application_name="rollgate-snapshot-slot"
        )
    except psycopg.Error as exc:
        raise SnapshotFailed(_replication_hint(dsn, exc)) from exc
    try:
        try:
            row = conn.execute(
                sql.SQL("CREATE_REPLICATION_SLOT {} LOGICAL {} (SNAPSHOT 'export')").format(
                    sql.Identifier(slot_name), sql.Identifier(SLOT_PLUGIN)
                )
            ).fetchone()
        except psycopg.Error as exc:
            raise SnapshotFailed(_replication_hint(dsn, exc)) from exc
        assert row is not None
        progress(f"opened replication slot {slot_name} at {row[1]}")
        yield ExportedView(dsn, str(row[2]), ReplicationSlot(slot_name, SLOT_PLUGIN, str(row[1])))
    finally:
        conn.close()


def drop_slot(dsn: str, slot_name: str) -> bool:
    """Drop a replication slot if it exists; True when one was dropped."""
    with connect(dsn, application_name="rollgate-slot-cleanup") as conn:
        row = conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s AND NOT active",
            (slot_name,),
        ).fetchall()
    return bool(row)


@dataclass(frozen=True)
class _Facts:
    catalog_fingerprint: str
    checksums: list[Any]
    history: list[tuple[int, str, str, str, str]]


def _read_facts(view: ExportedView, lock_wait: float, *, checksums: bool = True) -> _Facts:
    with connect(view.dsn, application_name="rollgate-snapshot-facts") as conn:
        conn.autocommit = False
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(view.snapshot_name)))
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(lock_wait * 1000)}",))
        catalog = read_catalog(conn)
        sums = table_checksums(conn, method=DEFAULT_CHECKSUM_METHOD) if checksums else []
        history = _applied_history(conn)
        conn.rollback()
    return _Facts(catalog.fingerprint(), sums, history)


def _applied_history(conn: psycopg.Connection[Any]) -> list[tuple[int, str, str, str, str]]:
    # Rollgate's history, where this release keeps it; a database without it
    # (any PostgreSQL database can be snapshotted) has no schema version.
    row = conn.execute("SELECT to_regclass(%s)", (HISTORY_QUALIFIED,)).fetchone()
    if row is None or row[0] is None:
        return []
    rows = conn.execute(
        sql.SQL(
            "SELECT version, name, up_sha256, down_sha256, verify_sha256 FROM {}.{} "
            "WHERE state = 'applied' ORDER BY version"
        ).format(sql.Identifier(HISTORY_SCHEMA), sql.Identifier("schema_migrations"))
    ).fetchall()
    return [tuple(r) for r in rows]


def _release(release: ReleaseInfo, history: list[tuple[int, str, str, str, str]]) -> Any:
    from rollback.manifest import Release

    return Release(
        bundle_commit=release.bundle_commit,
        app_image=release.app_image,
        schema_version=max((row[0] for row in history), default=None),
        migrations={
            f"{version:04d}_{name}": {"up": up, "down": down, "verify": verify}
            for version, name, up, down, verify in history
        },
    )


def _start_pg_dump(
    bin_dir: Path,
    view: ExportedView,
    target: Path,
    *,
    jobs: int,
    compress: str,
    lock_wait: float,
) -> subprocess.Popen[bytes]:
    args = [
        str(bin_dir / "pg_dump"),
        "--format=directory",
        f"--jobs={jobs}",
        f"--compress={compress}",
        f"--snapshot={view.snapshot_name}",
        f"--lock-wait-timeout={int(lock_wait * 1000)}",
        f"--file={target}",
        "--no-sync",  # the store fsyncs every file once, at commit
        f"--dbname={view.dsn}",
    ]
    # The DSN travels as an argument (pg_dump has no other way to take one),
    # but it never reaches a message: errors quote pg_dump's stderr only.
    return subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_tool_env()
    )


def _wait_for_dump(dump: subprocess.Popen[bytes], lock_wait: float) -> None:
    _, stderr = dump.communicate()
    if dump.returncode != 0:
        reason = " ".join(stderr.decode("utf-8", "replace").split())[-2000:]
        if "lock" in reason and "timeout" in reason:
            raise SnapshotFailed(
                f"pg_dump waited {lock_wait:g}s for a table lock held by other work "
                f"(a migration?) and gave up, so writers were never blocked: {reason}"
            )
        raise SnapshotFailed(f"pg_dump failed (exit {dump.returncode}): {reason}")


def _tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PGOPTIONS", None)  # a stray default_transaction_read_only=off etc. is not ours
    return env


def _replication_hint(dsn: str, exc: psycopg.Error) -> str:
    reason = " ".join(str(exc).split())
    return (
        f"cannot open a replication slot on {redact_dsn(dsn)}: {reason}. Snapshots keep a "
        "logical slot so that writes made after them can be replayed at rollback. The server "
        "needs wal_level = logical (RDS: rds.logical_replication = 1) and the role needs the "
        "REPLICATION attribute (RDS: GRANT rds_replication). To snapshot without replay, "
        "pass --no-slot"
    )
