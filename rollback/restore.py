"""Restoring a snapshot onto a real server: never in place, always verified, swapped by rename.

``restore_snapshot`` never touches the live database until the very end:

1. check every artifact file against the manifest (nothing is created if one
   is missing, truncated or altered);
2. restore into a *new* database beside the live one, ``<live>__rg_<suffix>``;
3. verify the new database: catalog fingerprint and every table's checksums
   equal the manifest's;
4. (hook) let the caller bring the new database forward, e.g. replay writes
   made since the snapshot, before anyone can see it;
5. swap by rename, in one transaction: ``<live>`` becomes
   ``<live>__replaced_<stamp>`` and the new database becomes ``<live>``.
   The replaced database is kept until someone drops it explicitly, closed
   to connections so that nothing keeps writing to it by mistake (an
   investigator opens it with ``ALTER DATABASE ... ALLOW_CONNECTIONS true``).

A crash before step 5 leaves the live database untouched and a staging
database that the next run drops and rebuilds; the swap itself is one
transaction, so it happened or it did not.

``warm_standby`` runs steps 1-3 ahead of time and keeps the result, closed to
connections, as ``<live>__warm_<suffix>``; a rollback to it later is only
step 5, whose cost does not depend on the size of the data.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo, sql

from core.errors import CannotRun, CheckFailed
from core.postgres import connect
from core.progress import Progress, silent
from db.catalog import read_catalog
from db.checksums import compare_checksums, parallel_table_checksums
from rollback.manifest import Manifest
from rollback.snapshot import DUMP_DIRECTORY
from rollback.store import SnapshotStore
from rollback.verify import checked_artifacts, load_manifest, restore_dump

STAGING_MARK = "__rg_"
WARM_MARK = "__warm_"
REPLACED_MARK = "__replaced_"
_MAX_NAME = 63
_SUFFIX = re.compile(r"[^a-z0-9]")

BeforeSwap = Callable[[str, Manifest], None]
CatchUp = Callable[[psycopg.Connection[Any]], None]


class RestoreRefused(CheckFailed):
    """The restored copy does not match its manifest; the live database was not touched."""


@dataclass(frozen=True)
class RestoreReport:
    snapshot_id: str
    database: str
    replaced_by_rename: str | None
    restore_seconds: float
    verify_seconds: float
    swap_seconds: float
    kept_database: str | None = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot_id,
            "database": self.database,
            "replaced_database_kept_as": self.replaced_by_rename,
            "warm_database": self.kept_database,
            "restore_seconds": round(self.restore_seconds, 3),
            "verify_seconds": round(self.verify_seconds, 3),
            "swap_seconds": round(self.swap_seconds, 3),
            "notes": list(self.notes),
        }


def staging_name(live: str, snapshot_id: str, mark: str = STAGING_MARK) -> str:
    """``<live><mark><suffix>``, cut to PostgreSQL's 63-byte limit without losing the suffix."""
    suffix = _SUFFIX.sub("", snapshot_id.lower())[-12:]
    tail = f"{mark}{suffix}"
    head = live.encode()[: _MAX_NAME - len(tail)].decode("utf-8", "ignore")
    return head + tail


def restore_snapshot(
    store: SnapshotStore,
    snapshot_id: str,
    target_dsn: str,
    *,
    before_swap: BeforeSwap | None = None,
    catch_up: CatchUp | None = None,
    jobs: int = 2,
    progress: Progress = silent,
) -> RestoreReport:
    """Restore ``snapshot_id`` as the database ``target_dsn`` names (see module docstring)."""
    manifest = load_manifest(store, snapshot_id)
    live = _database_name(target_dsn)
    new = staging_name(live, snapshot_id)
    with checked_artifacts(store, manifest) as files:
        restore_seconds, verify_seconds = _restore_verified(
            manifest, files / DUMP_DIRECTORY, target_dsn, new, jobs=jobs, progress=progress
        )
    if before_swap is not None:
        before_swap(_with_database(target_dsn, new), manifest)
    progress(f"swapping {new} in as {live}")
    swap_started = time.monotonic()
    replaced = swap_in(target_dsn, live, new, catch_up=catch_up)
    report = RestoreReport(
        snapshot_id=snapshot_id,
        database=live,
        replaced_by_rename=replaced,
        restore_seconds=restore_seconds,
        verify_seconds=verify_seconds,
        swap_seconds=time.monotonic() - swap_started,
    )
    progress(f"restored {snapshot_id} as {live}; the previous database is kept as {replaced}")
    return report


def warm_standby(
    store: SnapshotStore,
    snapshot_id: str,
    target_dsn: str,
    *,
    jobs: int = 2,
    progress: Progress = silent,
) -> RestoreReport:
    """Restore and verify ``snapshot_id`` beside the live database, ready for a swap."""
    manifest = load_manifest(store, snapshot_id)
    live = _database_name(target_dsn)
    warm = staging_name(live, snapshot_id, WARM_MARK)
    with checked_artifacts(store, manifest) as files:
        restore_seconds, verify_seconds = _restore_verified(
            manifest, files / DUMP_DIRECTORY, target_dsn, warm, jobs=jobs, progress=progress
        )
    with _maintenance(target_dsn) as admin:
        # Closed to connections: nobody writes to a standby by mistake, and
        # the swap never waits for a stray session.
        _allow_connections(admin, warm, allow=False)
        admin.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(warm),
                sql.Literal(f"rollgate warm standby of {live}, snapshot {snapshot_id}"),
            )
        )
    return RestoreReport(
        snapshot_id=snapshot_id,
        database=live,
        replaced_by_rename=None,
        restore_seconds=restore_seconds,
        verify_seconds=verify_seconds,
        swap_seconds=0.0,
        kept_database=warm,
    )


def swap_in(target_dsn: str, live: str, new: str, *, catch_up: CatchUp | None = None) -> str:
    """Rename ``live`` away and ``new`` into its place, in one transaction; returns the old name.

    ``catch_up`` runs once the live database is closed to new sessions and
    every other session is gone, right before the rename: the moment after
    which nothing more can be written to it. It gets a session on the live
    database opened beforehand (a closed database admits no new one), for a
    last replay of its writes.
    """
    replaced = staging_name(live, datetime.now(UTC).strftime("%Y%m%d%H%M%S"), REPLACED_MARK)
    with _maintenance(target_dsn) as admin:
        if not _exists(admin, new):
            raise CannotRun(f"database {new} does not exist: nothing to swap in")
        holder = connect(target_dsn, application_name="rollgate-catch-up") if catch_up else None
        keep = holder.info.backend_pid if holder else 0
        # New sessions would make the rename fail ("being accessed by other
        # users"): close the door first, then ask the stragglers to leave.
        _allow_connections(admin, live, allow=False)
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid() AND pid <> %s",
                (live, keep),
            )
            _wait_until_empty(admin, live, keep=keep)
            if holder is not None and catch_up is not None:
                catch_up(holder)
                holder.close()
            _wait_until_empty(admin, live)
            with admin.transaction():
                admin.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(live), sql.Identifier(replaced)
                    )
                )
                admin.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(new), sql.Identifier(live)
                    )
                )
        except BaseException:
            # Not swapped: the live database must take connections again.
            if holder is not None:
                holder.close()
            _allow_connections(admin, live, allow=True)
            raise
        # The new live database; a warm standby arrives closed to connections.
        _allow_connections(admin, live, allow=True)
    return replaced


def _allow_connections(admin: psycopg.Connection[Any], name: str, *, allow: bool) -> None:
    admin.execute(
        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), sql.SQL("true" if allow else "false")
        )
    )


def _restore_verified(
    manifest: Manifest,
    dump: Path,
    target_dsn: str,
    name: str,
    *,
    jobs: int,
    progress: Progress,
) -> tuple[float, float]:
    """Restore into a new database ``name`` and verify it; on any failure, drop it."""
    with _maintenance(target_dsn) as admin:
        if _exists(admin, name):
            progress(f"dropping {name}, left by an interrupted restore")
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        server_major = admin.info.server_version // 10000
    new_dsn = _with_database(target_dsn, name)
    try:
        progress(f"restoring snapshot {manifest.id} into {name} (-j{jobs})")
        started = time.monotonic()
        restore_dump(dump, new_dsn, server_major=server_major, jobs=jobs, keep_privileges=True)
        restore_seconds = time.monotonic() - started
        progress(f"verifying {name} against the manifest")
        started = time.monotonic()
        with connect(new_dsn) as conn:
            problems = []
            if read_catalog(conn).fingerprint() != manifest.catalog_fingerprint:
                problems.append("the catalog fingerprint differs from the manifest's")
            problems += [
                d.describe()
                for d in compare_checksums(
                    manifest.tables,
                    parallel_table_checksums(new_dsn, jobs=jobs, method=manifest.checksum_method),
                )
            ]
        if problems:
            raise RestoreRefused(
                f"the restored copy of {manifest.id} does not match its manifest; the live "
                f"database was not touched: {'; '.join(problems)}",
                details={"problems": problems},
            )
        return restore_seconds, time.monotonic() - started
    except BaseException:
        with _maintenance(target_dsn) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        raise


def _database_name(dsn: str) -> str:
    with connect(dsn, application_name="rollgate-restore") as conn:
        return str(conn.info.dbname)


def _with_database(dsn: str, name: str) -> str:
    return conninfo.make_conninfo(dsn, dbname=name)


@contextmanager
def _maintenance(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit session on the server's maintenance database (``postgres``)."""
    with connect(_with_database(dsn, "postgres"), application_name="rollgate-restore") as admin:
        yield admin


def _exists(admin: psycopg.Connection[Any], name: str) -> bool:
    row = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def _wait_until_empty(
    admin: psycopg.Connection[Any], name: str, *, keep: int = 0, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
            "AND pid <> pg_backend_pid() AND pid <> %s",
            (name, keep),
        ).fetchone()
        if row is None or row[0] == 0:
            return
        if time.monotonic() > deadline:
            raise CannotRun(f"sessions on {name} did not end within {timeout:g}s; swap not done")
        time.sleep(0.1)
