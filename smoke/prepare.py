"""The pre-deploy database: a throwaway Postgres at the starting version, filled,
then migrated with the production runner while its locks are measured.

Everything the checks need is captured here once per session (``Prepared``):
the starting catalog and data checksums (for reversibility), the lock
measurements (for the budget), and a clone of the freshly migrated database
taken before any check writes to it, on which the reversibility check reverts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import CannotRun, RollgateError
from core.postgres import connect
from core.progress import Progress
from core.sizes import parse_size
from db.catalog import Catalog, read_catalog
from db.checksums import TableChecksum, parallel_table_checksums
from db.migrations import Migration, load_migrations
from db.runner import MigrationRunner
from db.sample import generate_sample
from db.throwaway import ThrowawayPostgres, create_database, drop_database, start_throwaway
from db.throwaway.attached import HANDOFF_VARIABLE, attach
from smoke.locks import LockMeasurement, LockSampler

REPO_ROOT = Path(__file__).resolve().parents[1]
DATABASE = "smoke"
REVERT_DATABASE = "smoke_revert"


@dataclass
class Prepared:
    """The migrated throwaway database and what was measured getting it there."""

    server: ThrowawayPostgres
    backend: str
    docker_absent: bool
    dsn: str  # as the RDS-like owner role, like production's migrate task
    admin_dsn: str  # superuser: lock sampling and administration only
    revert_dsn: str | None
    migrations: list[Migration]
    start_version: int
    start_catalog: Catalog
    start_checksums: list[TableChecksum]
    applied: list[Migration] = field(default_factory=list)
    locks: list[LockMeasurement] = field(default_factory=list)
    migrate_error: str | None = None
    sample: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: The revert clone's name; set when the server is borrowed (its owner stops it).
    borrowed_clone: str | None = None
    #: How the caller proved the revert instead of this suite (no clone then).
    reversibility_proven_by: str | None = None

    def close(self) -> None:
        """Stop our server; on a borrowed one, drop only the clone this suite made."""
        if self.borrowed_clone is not None:
            drop_database(self.server, self.borrowed_clone)
        self.server.close()

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "docker_absent": self.docker_absent,
            "start_version": self.start_version,
            "applied": [m.label for m in self.applied],
            "migrate_error": self.migrate_error,
            "sample": self.sample,
            "notes": self.notes,
            "timings_seconds": {k: round(v, 3) for k, v in self.timings.items()},
        }


def docker_available() -> bool:
    """Is a Docker engine answering? (``docker info``)."""
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30)
    return result.returncode == 0


def _handoff_from_environment() -> str:
    described = os.environ.get(HANDOFF_VARIABLE)
    if not described:
        raise CannotRun(
            f"--smoke-database needs the server it lives on, described in ${HANDOFF_VARIABLE} "
            "(the gate sets it): without it, pass --smoke-snapshot or let the suite sample data"
        )
    return described


def choose_backend(requested: str) -> tuple[str, bool, list[str]]:
    """(backend, docker_absent, notes) for ``auto``, ``docker`` or ``embedded``."""
    if requested == "embedded":
        return "embedded", not docker_available(), []
    absent = not docker_available()
    if requested == "auto" and absent:
        return "embedded", True, ["Docker is absent: the embedded Postgres backend was used"]
    return "docker", absent, []


def default_from_version(migrations: list[Migration]) -> int:
    """Without ``--from-version``: the newest migration is the pending one."""
    return migrations[-2].version if len(migrations) >= 2 else 0


def restore_snapshot_via_cli(
    dsn: str, snapshot: str, store: str, aws_endpoint_url: str | None, progress: Progress
) -> None:
    """Restore ``snapshot`` as the database ``dsn`` names, with ``rollgate snapshot restore``.

    The production restore path (manifest and file checks, pg_restore, catalog
    and checksum verification, swap), run as a process: smoke sits beside
    rollback in the layers, so it composes the command rather than importing it.
    """
    args = [sys.executable, "-m", "rollgate", "--quiet", "--json", "--dsn", dsn]
    args += ["snapshot", "restore", snapshot, "--store", store, "--yes"]
    if aws_endpoint_url:
        args += ["--aws-endpoint-url", aws_endpoint_url]
    progress(f"restoring snapshot {snapshot} from {store} (rollgate snapshot restore)")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, check=False)
    if result.returncode != 0:
        try:
            message = json.loads(result.stdout)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = " ".join(result.stderr.decode("utf-8", "replace").split())[-1000:]
        raise CannotRun(f"could not restore snapshot {snapshot} from {store}: {message}")


def prepare(
    *,
    migrations_dir: Path,
    backend: str,
    image: str | None,
    sample_size: str,
    from_version: int | None,
    lock_budget: float,
    progress: Progress,
    snapshot: str | None = None,
    store: str | None = None,
    aws_endpoint_url: str | None = None,
    database: str | None = None,
    start_checksums_file: Path | None = None,
    reversibility_proven_by: str | None = None,
) -> Prepared:
    """Start the server, build the starting point, migrate with lock sampling, clone.

    ``database``: start from that database, on the server handed over in
    ``$ROLLGATE_THROWAWAY_HANDOFF`` (the gate's verified copy), instead; with
    ``start_checksums_file`` (``write_checksums``), the start's checksums are
    read from it rather than summed again (the gate has just summed them).
    ``reversibility_proven_by``: the caller proves the revert (and says how), so
    no clone is made and the reversibility check is skipped with that reason.
    """
    migrations = load_migrations(migrations_dir)
    started = time.monotonic()
    server, docker_absent, notes = _open_server(database, backend, image, progress)
    timings = {"server_start": time.monotonic() - started}
    try:
        mark = time.monotonic()
        sample: dict[str, Any] | None = None
        if database is not None:
            dsn = server.owner_dsn(database)
            with MigrationRunner(dsn, migrations) as runner:
                start = runner.status().current
            notes.append(
                f"started from the database handed over ({database}, schema version "
                f"{start:04d}): no second restore"
            )
        elif snapshot and store:
            dsn = create_database(server, DATABASE, owner=True)
            restore_snapshot_via_cli(dsn, snapshot, store, aws_endpoint_url, progress)
            with MigrationRunner(dsn, migrations) as runner:
                start = runner.status().current
            notes.append(f"started from snapshot {snapshot} (schema version {start:04d})")
            timings["restore_snapshot"] = time.monotonic() - mark
        else:
            dsn = create_database(server, DATABASE, owner=True)
            start = default_from_version(migrations) if from_version is None else from_version
            with MigrationRunner(dsn, migrations, progress=progress) as runner:
                runner.migrate(target=start)
            timings["build_start_version"] = time.monotonic() - mark
            mark = time.monotonic()
            sample = _fill(dsn, sample_size, notes, progress)
            timings["sample"] = time.monotonic() - mark
        with connect(dsn) as conn:
            conn.execute("ANALYZE")
            start_catalog = read_catalog(conn)
        mark = time.monotonic()
        start_checksums = _start_checksums(dsn, start_checksums_file, database, notes)
        timings["start_checksums"] = time.monotonic() - mark
        prepared = Prepared(
            server=server,
            backend=server.backend,
            docker_absent=docker_absent,
            dsn=dsn,
            admin_dsn=server.dsn(database or DATABASE),
            revert_dsn=None,
            migrations=migrations,
            start_version=start,
            start_catalog=start_catalog,
            start_checksums=start_checksums,
            sample=sample,
            notes=notes,
            timings=timings,
        )
        mark = time.monotonic()
        _migrate_measuring_locks(prepared, lock_budget, progress)
        timings["migrate"] = time.monotonic() - mark
        mark = time.monotonic()
        if reversibility_proven_by is None:
            _clone_for_revert(prepared, database)
            timings["clone"] = time.monotonic() - mark
        else:
            prepared.reversibility_proven_by = reversibility_proven_by
        with connect(dsn) as conn:
            conn.execute("ANALYZE")
        return prepared
    except BaseException:
        server.close()
        raise


def write_checksums(path: Path, checksums: Sequence[TableChecksum]) -> Path:
    """Write ``checksums`` where ``prepare(start_checksums_file=...)`` reads them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"tables": [c.to_dict() for c in checksums]}, indent=1))
    return path


def _clone_for_revert(prepared: Prepared, database: str | None) -> None:
    """Clone the migrated database before any check writes: reversibility reverts the clone.

    On a borrowed server the clone is named after the start database (unique
    there), and dropped when the suite ends.
    """
    clone = REVERT_DATABASE if database is None else f"{database}_revert"[:63]
    prepared.revert_dsn = create_database(
        prepared.server, clone, template=database or DATABASE, owner=True
    )
    prepared.borrowed_clone = clone if database is not None else None


def _start_checksums(
    dsn: str, given: Path | None, database: str | None, notes: list[str]
) -> list[TableChecksum]:
    if given is not None and database is None:
        raise CannotRun("start checksums are given only with the database they describe")
    if given is not None:
        notes.append(
            f"start checksums from {given.name}, which the gate summed on this database just before"
        )
        return _read_checksums(given)
    # Only this suite uses the database yet: sum its tables on two sessions at once.
    return parallel_table_checksums(dsn, exclude_schemas=("rollgate",))


def _read_checksums(path: Path) -> list[TableChecksum]:
    try:
        document = json.loads(path.read_text())
        return [TableChecksum.from_dict(item) for item in document["tables"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CannotRun(
            f"cannot read start checksums from {path} ({type(exc).__name__}): it is written "
            "by the gate (smoke.prepare.write_checksums)"
        ) from None


def _open_server(
    database: str | None, backend: str, image: str | None, progress: Progress
) -> tuple[ThrowawayPostgres, bool, list[str]]:
    """(server, docker_absent, notes): the one handed over for ``database``, or a new one."""
    server: ThrowawayPostgres
    if database is not None:
        server = attach(_handoff_from_environment())
        docker_absent, notes = not docker_available(), list[str]()
        progress(f"using database {database} on the {server.backend} server handed over")
    else:
        chosen, docker_absent, notes = choose_backend(backend)
        progress(f"starting a throwaway Postgres ({chosen})")
        server = start_throwaway(chosen, image=image, progress=progress)
    return server, docker_absent, notes + server.warnings


def _fill(
    dsn: str, sample_size: str, notes: list[str], progress: Progress
) -> dict[str, Any] | None:
    target = parse_size(sample_size)
    progress(f"filling the starting point with {sample_size} of sample data")
    with connect(dsn) as conn:
        try:
            report = generate_sample(conn, target)
        except RollgateError as exc:
            # An early starting version has no sample tables yet: say so, carry on empty.
            notes.append(f"no sample data: {exc.message}")
            return None
    return report.to_dict()


def _migrate_measuring_locks(prepared: Prepared, budget: float, progress: Progress) -> None:
    pending = [m for m in prepared.migrations if m.version > prepared.start_version]
    with MigrationRunner(prepared.dsn, prepared.migrations, progress=progress) as runner:
        for migration in pending:
            progress(f"applying {migration.label} (sampling pg_locks every 50ms)")
            began = time.monotonic()
            with LockSampler(prepared.admin_dsn) as sampler:
                try:
                    runner.migrate(target=migration.version)
                except RollgateError as exc:
                    prepared.migrate_error = f"{migration.label}: {exc.message}"
            prepared.locks.append(
                sampler.measurement(migration.label, time.monotonic() - began, budget)
            )
            if prepared.migrate_error is not None:
                return
            prepared.applied.append(migration)
