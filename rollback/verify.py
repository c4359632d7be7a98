"""Proving a snapshot works: restore it somewhere disposable and compare with its manifest.

Only a verified snapshot is warm. ``verify_snapshot``:

1. reads the manifest (refusing an edited one) and checks every artifact
   file's size and sha256 *before* anything is restored, naming the file that
   is missing, truncated or altered;
2. restores it with ``pg_restore -j`` into a fresh database on a throwaway
   Postgres (either backend), as the dump's owner-less, privilege-less form,
   so roles that exist only in production do not matter;
3. compares the restored catalog fingerprint, and every table's row count and
   content checksum, with the manifest;
4. runs the verify scripts of the snapshot's schema version, when the
   migrations given are the ones the snapshot's history recorded;
5. records the verification (when, where, how long the restore took, the
   verdict) beside the snapshot in the store.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from core.errors import ToolUnavailable
from core.pgtools import client_tools_for
from core.postgres import connect
from core.progress import Progress, silent
from db.catalog import read_catalog
from db.checksums import compare_checksums, parallel_table_checksums
from db.errors import MigrationFailed
from db.migrations import Migration
from db.sqlfile import execute_script
from db.throwaway import ThrowawayPostgres, create_database, drop_database
from rollback.manifest import CorruptSnapshot, Manifest, check_files
from rollback.snapshot import DUMP_DIRECTORY
from rollback.store import DirectoryStore, SnapshotStore

VERIFICATION_PREFIX = "verification-"


@dataclass(frozen=True)
class VerifyReport:
    snapshot_id: str
    backend: str
    restore_seconds: float
    total_seconds: float
    problems: tuple[str, ...] = ()
    verify_scripts: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    verified_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot_id,
            "ok": self.ok,
            "backend": self.backend,
            "verified_at": self.verified_at,
            "restore_seconds": round(self.restore_seconds, 3),
            "total_seconds": round(self.total_seconds, 3),
            "problems": list(self.problems),
            "verify_scripts": list(self.verify_scripts),
            "notes": list(self.notes),
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def load_manifest(store: SnapshotStore, snapshot_id: str) -> Manifest:
    """The snapshot's manifest, checked for edits; errors name the store and id."""
    raw = store.read_manifest(snapshot_id)
    source = f"{store.uri}/snapshots/{snapshot_id}/manifest.json"
    manifest = Manifest.from_json(raw, source=source)
    if manifest.id != snapshot_id:
        # A manifest copied or forged from another snapshot would point every
        # later step (restore, records, prune) at the wrong id's files.
        raise CorruptSnapshot(
            f"{source}: records id {manifest.id!r}, not {snapshot_id!r}: the manifest was moved "
            "or copied from another snapshot",
            details={"file": source},
        )
    return manifest


@contextmanager
def checked_artifacts(store: SnapshotStore, manifest: Manifest) -> Iterator[Path]:
    """A local directory holding the snapshot's files, each checked against the manifest."""
    if isinstance(store, DirectoryStore):
        directory = store.local_path(manifest.id, "x").parent
        check_files(manifest.files, directory, snapshot_id=manifest.id)
        yield directory
        return
    directory = Path(tempfile.mkdtemp(prefix=f"rollgate-fetch-{manifest.id}-"))
    try:
        for item in manifest.files:
            store.fetch(manifest.id, item.name, directory / item.name)
        check_files(manifest.files, directory, snapshot_id=manifest.id)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def verify_snapshot(
    store: SnapshotStore,
    snapshot_id: str,
    server: ThrowawayPostgres,
    *,
    migrations: Sequence[Migration] = (),
    jobs: int = 2,
    record: bool = True,
    keep_as: str | None = None,
    as_owner: bool = False,
    progress: Progress = silent,
) -> VerifyReport:
    """Restore-test ``snapshot_id`` on ``server``; the report lists every problem found.

    ``keep_as``: when the snapshot verifies, keep the restored database under
    this name instead of dropping it (the gate rehearses on it: no second restore).
    ``as_owner``: restore as the server's RDS-like ``rollgate_owner`` rather than
    its superuser, so the copy belongs to the role migrations run as in production
    (and a snapshot that only a superuser could restore fails here, not later).
    """
    started = time.monotonic()
    manifest = load_manifest(store, snapshot_id)
    problems: list[str] = []
    notes: list[str] = []
    ran: list[str] = []
    progress(f"checking the {len(manifest.files)} artifact files of {snapshot_id}")
    with checked_artifacts(store, manifest) as files:
        name = f"verify_{secrets.token_hex(4)}"
        dsn = create_database(server, name, owner=as_owner)
        try:
            progress(f"restoring into a throwaway database ({server.backend}, -j{jobs})")
            restore_started = time.monotonic()
            # With its privileges: verify scripts may check grants (0005 does).
            restore_dump(
                files / DUMP_DIRECTORY,
                dsn,
                server_major=server.major_version,
                jobs=jobs,
                keep_privileges=True,
            )
            restore_seconds = time.monotonic() - restore_started
            progress("comparing catalog and checksums with the manifest")
            with connect(dsn) as conn:
                problems += _compare(manifest, conn, dsn, jobs)
                ran, script_problems, script_notes = _run_verify_scripts(conn, manifest, migrations)
                problems += script_problems
                notes += script_notes
            if keep_as is not None and not problems:
                _rename_database(server, name, keep_as)
        finally:
            drop_database(server, name)
    if server.major_version != manifest.server_major:
        notes.append(
            f"restored on PostgreSQL {server.major_version}; the snapshot is from "
            f"{manifest.server_major}: catalog text can differ between majors"
        )
    report = VerifyReport(
        snapshot_id=snapshot_id,
        backend=server.backend,
        restore_seconds=restore_seconds,
        total_seconds=time.monotonic() - started,
        problems=tuple(problems),
        verify_scripts=tuple(ran),
        notes=tuple(notes),
    )
    if record:
        record_verification(store, report)
    return report


def record_verification(store: SnapshotStore, report: VerifyReport) -> None:
    """Keep ``report`` beside its snapshot: the newest one says whether it is warm."""
    stamp = report.verified_at.replace(":", "").replace("+0000", "Z").replace("+00:00", "Z")
    store.put_record(
        report.snapshot_id,
        f"{VERIFICATION_PREFIX}{stamp}.json",
        json.dumps(report.to_dict(), indent=2, sort_keys=True).encode(),
    )


def _rename_database(server: ThrowawayPostgres, name: str, new_name: str) -> None:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(name), sql.Identifier(new_name)
            )
        )


def latest_verification(store: SnapshotStore, snapshot_id: str) -> dict[str, Any] | None:
    """The newest recorded verification of a snapshot, or None if it was never verified."""
    records = store.records(snapshot_id)
    names = sorted(name for name in records if name.startswith(VERIFICATION_PREFIX))
    if not names:
        return None
    try:
        data = json.loads(records[names[-1]])
    except (ValueError, UnicodeDecodeError):
        return None  # an unreadable record proves nothing: treated as never verified
    # Neither does a record of the wrong shape, or one copied from another
    # snapshot: "verified" decides what prune keeps and what restore trusts.
    if not _is_verification_of(data, snapshot_id):
        return None
    verification: dict[str, Any] = data
    return verification


def _is_verification_of(data: object, snapshot_id: str) -> bool:
    """Whether ``data`` has the shape ``VerifyReport.to_dict`` writes, for this snapshot."""
    if not isinstance(data, dict):
        return False
    seconds = data.get("restore_seconds")
    return (
        data.get("snapshot") == snapshot_id
        and isinstance(data.get("ok"), bool)
        and all(isinstance(data.get(key, ""), str) for key in ("verified_at", "backend"))
        and (
            seconds is None or (isinstance(seconds, int | float) and not isinstance(seconds, bool))
        )
    )


_ROLE_AFTER = re.compile(
    r"\b(?:TO|FROM|FOR ROLE)\s+((?:(?:\"(?:[^\"]|\"\")+\"|[A-Za-z_][A-Za-z0-9_$]*)\s*,?\s*)+)",
    re.IGNORECASE,
)
_IDENTIFIER = re.compile(r'"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_$]*)')


def create_grantees(dump: Path, admin_dsn: str, server_major: int) -> list[str]:
    """Create, NOLOGIN, every role the dump's GRANTs and default privileges name; returns them.

    A snapshot restored elsewhere than its own server (a throwaway, to prove
    it) meets none of production's roles. Restoring its privileges needs
    them; they get no login and no password, and exist only to be granted to.
    """
    bin_dir = client_tools_for(server_major)
    listing = subprocess.run(
        [str(bin_dir / "pg_restore"), "--list", str(dump)], capture_output=True, check=False
    )
    if listing.returncode != 0:
        return []
    acl_lines = [
        line
        for line in listing.stdout.decode("utf-8", "replace").splitlines()
        if " ACL " in line or " DEFAULT ACL " in line
    ]
    if not acl_lines:
        return []
    with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as handle:
        handle.write("\n".join(acl_lines) + "\n")
        list_file = handle.name
    try:
        statements = subprocess.run(
            [str(bin_dir / "pg_restore"), "--use-list", list_file, "--file=-", str(dump)],
            capture_output=True,
            check=False,
        ).stdout.decode("utf-8", "replace")
    finally:
        Path(list_file).unlink(missing_ok=True)
    roles: set[str] = set()
    for match in _ROLE_AFTER.finditer(statements):
        for quoted, bare in _IDENTIFIER.findall(match[1]):
            name = quoted.replace('""', '"') if quoted else bare
            if name.upper() not in {"PUBLIC", "GRANT", "IN", "SCHEMA", "ON", "WITH"}:
                roles.add(name if quoted else name.lower())
    created = []
    with connect(admin_dsn, application_name="rollgate-verify-roles") as admin:
        for role in sorted(roles):
            exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if exists is None:
                admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
                created.append(role)
    return created


def restore_dump(
    dump: Path, dsn: str, *, server_major: int, jobs: int = 2, keep_privileges: bool = False
) -> None:
    """``pg_restore`` a directory dump into the empty database at ``dsn``; errors are fatal.

    Objects are owned by the restoring role (production's owners may not exist
    where a snapshot is verified). ``keep_privileges`` restores GRANTs and
    default privileges, creating any grantee that does not exist as NOLOGIN.
    """
    bin_dir = client_tools_for(server_major)
    default_acl: list[str] = []
    use_list: list[str] = []
    if keep_privileges:
        # The roles the GRANTs name must exist; where they do not (a throwaway,
        # another server), they are created NOLOGIN, to be granted to and no more.
        create_grantees(dump, dsn, server_major)
        # Default privileges name the owner they belong to (FOR ROLE x). With
        # --no-owner the restoring role owns everything, so they become its own:
        # restored afterwards without FOR ROLE (a role may only set its own).
        entries = _toc(bin_dir, dump)
        default_acl = _default_acl_statements(bin_dir, dump, entries)
        if default_acl:
            use_list = [line for line in entries if " DEFAULT ACL " not in line]
    with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as handle:
        handle.write("\n".join(use_list) + "\n")
        list_file = handle.name
    args = [
        str(bin_dir / "pg_restore"),
        "--exit-on-error",
        "--no-owner",
        *(() if keep_privileges else ("--no-privileges",)),
        *((f"--use-list={list_file}",) if use_list else ()),
        f"--jobs={jobs}",
        f"--dbname={dsn}",
        str(dump),
    ]
    try:
        result = subprocess.run(args, capture_output=True, check=False)
    finally:
        Path(list_file).unlink(missing_ok=True)
    if result.returncode != 0:
        reason = " ".join(result.stderr.decode("utf-8", "replace").split())[-2000:]
        raise ToolUnavailable(f"pg_restore failed (exit {result.returncode}): {reason}")
    if default_acl:
        with connect(dsn, application_name="rollgate-restore-acl") as conn, conn.transaction():
            for statement in default_acl:
                conn.execute(statement.encode())


def _toc(bin_dir: Path, dump: Path) -> list[str]:
    listing = subprocess.run(
        [str(bin_dir / "pg_restore"), "--list", str(dump)], capture_output=True, check=False
    )
    if listing.returncode != 0:
        reason = " ".join(listing.stderr.decode("utf-8", "replace").split())[-1000:]
        raise ToolUnavailable(f"pg_restore --list failed: {reason}")
    return [line for line in listing.stdout.decode("utf-8", "replace").splitlines() if line]


_FOR_ROLE = re.compile(
    r"^(ALTER DEFAULT PRIVILEGES)\s+FOR ROLE\s+(?:\"(?:[^\"]|\"\")+\"|\S+)\s+", re.IGNORECASE
)


def _default_acl_statements(bin_dir: Path, dump: Path, entries: list[str]) -> list[str]:
    """The dump's ALTER DEFAULT PRIVILEGES statements, made the restoring role's own."""
    wanted = [line for line in entries if " DEFAULT ACL " in line]
    if not wanted:
        return []
    with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as handle:
        handle.write("\n".join(wanted) + "\n")
        list_file = handle.name
    try:
        text = subprocess.run(
            [str(bin_dir / "pg_restore"), f"--use-list={list_file}", "--file=-", str(dump)],
            capture_output=True,
            check=False,
        ).stdout.decode("utf-8", "replace")
    finally:
        Path(list_file).unlink(missing_ok=True)
    statements = []
    for line in text.splitlines():
        if line.upper().startswith("ALTER DEFAULT PRIVILEGES"):
            statements.append(_FOR_ROLE.sub(r"\1 ", line))
    return statements


def _compare(manifest: Manifest, conn: Any, dsn: str, jobs: int) -> list[str]:
    problems = []
    fingerprint = read_catalog(conn).fingerprint()
    if fingerprint != manifest.catalog_fingerprint:
        problems.append(
            f"restored catalog fingerprint {fingerprint[:12]} differs from the manifest's "
            f"{manifest.catalog_fingerprint[:12]}"
        )
    # Nobody writes to the restored copy: its tables can be summed on ``jobs``
    # sessions at once, which is most of what verify adds to a bare restore.
    actual = parallel_table_checksums(dsn, jobs=jobs, method=manifest.checksum_method)
    for difference in compare_checksums(manifest.tables, actual):
        problems.append(difference.describe())
    return problems


def _run_verify_scripts(
    conn: Any, manifest: Manifest, migrations: Sequence[Migration]
) -> tuple[list[str], list[str], list[str]]:
    """(ran, problems, notes): verify scripts of the snapshot's migrations, read-only."""
    recorded = manifest.release.migrations
    if manifest.release.schema_version is None:
        return [], [], ["no Rollgate history in the snapshot: no verify scripts to run"]
    by_label = {m.label: m for m in migrations}
    mismatched = [
        label
        for label, sums in recorded.items()
        if label not in by_label or dict(by_label[label].checksums) != dict(sums)
    ]
    if mismatched:
        # Fail closed: a check that could not run is not a pass.
        return (
            [],
            [
                "verify scripts could not run: the migrations given differ from those the "
                f"snapshot recorded ({', '.join(mismatched)}); pass the release's --migrations"
            ],
            [],
        )
    ran, problems = [], []
    for label in recorded:
        try:
            with conn.transaction(force_rollback=True):
                execute_script(conn, by_label[label].verify)
        except MigrationFailed as exc:
            problems.append(f"verify script of {label} failed on the restored copy: {exc.message}")
            continue
        ran.append(label)
    return ran, problems, []
