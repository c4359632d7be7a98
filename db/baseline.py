"""``rollgate db baseline --version N``: adopt Rollgate on a live database.

A team with a production database and years of history cannot replay its
migrations there; the schema is already built. Baselining records versions
1..N as applied *without running them*, as Flyway's ``baseline`` does, but
only after proving that it tells the truth:

1. migrations 1..N are applied by the real runner to a scratch database on a
   throwaway server, and that catalog is read;
2. under the migration lock, the live database's history must be empty and
   its catalog must equal the scratch one (``diff_catalogs``); the verify
   scripts of 1..N must pass against it, in a read-only transaction that is
   rolled back;
3. only then are the history rows written, with each migration's checksums,
   in one transaction (``MigrationRunner.record_baseline``).

Any difference refuses (the report lists them; nothing is recorded). History
with rows refuses (``CheckFailed``); an unknown N cannot run (``CannotRun``).
After a baseline, ``rollgate db migrate`` applies only N+1 onwards.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from core.errors import CannotRun, CheckFailed, RollgateError
from core.progress import Progress
from db.catalog import EVERY_SCHEMA, Catalog, Difference, diff_catalogs, read_catalog
from db.config import CatalogScope
from db.migrations import Migration
from db.runner import MigrationRunner
from db.sqlfile import execute_script
from db.throwaway import ThrowawayPostgres, create_database, drop_database


@dataclass(frozen=True)
class BaselineReport:
    """What ``db baseline`` proved, and whether it recorded anything."""

    version: int
    migrations: tuple[str, ...]
    dry_run: bool
    recorded: bool
    differences: tuple[Difference, ...] = ()
    verify_failures: tuple[str, ...] = ()
    live_fingerprint: str = ""
    expected_fingerprint: str = ""
    live_server: str = ""
    scratch_server: str = ""
    notes: tuple[str, ...] = ()

    @property
    def matches(self) -> bool:
        """The live database is what migrations 1..N build."""
        return not self.differences and not self.verify_failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "migrations": list(self.migrations),
            "dry_run": self.dry_run,
            "recorded": self.recorded,
            "matches": self.matches,
            "differences": [d.to_dict() for d in self.differences],
            "verify_failures": list(self.verify_failures),
            "live_fingerprint": self.live_fingerprint,
            "expected_fingerprint": self.expected_fingerprint,
            "live_server": self.live_server,
            "scratch_server": self.scratch_server,
            "notes": list(self.notes),
        }


def baseline(
    dsn: str,
    server: ThrowawayPostgres,
    migrations: Sequence[Migration],
    version: int,
    *,
    dry_run: bool = False,
    scope: CatalogScope | None = None,
    lock_wait: float = 60.0,
    progress: Progress | None = None,
) -> BaselineReport:
    """Prove the database at ``dsn`` equals migrations 1..``version``, then record them.

    Returns a report with ``recorded`` False and the differences when the
    proof fails; raises ``CannotRun`` for an unknown version and
    ``CheckFailed`` when the database already has migration history.
    """
    say = progress or (lambda message: None)
    included = baseline_migrations(migrations, version)
    labels = tuple(m.label for m in included)

    say(f"applying {labels[0]}..{labels[-1]} to a scratch database on the throwaway server")
    expected = _catalog_of_migrations(server, included, scope)

    runner = MigrationRunner(dsn, migrations, lock_wait=lock_wait, progress=say)
    with runner, runner.migration_lock():
        _refuse_history(runner)
        say("reading the live catalog")
        live = _read(runner.conn, scope)
        differences = tuple(diff_catalogs(expected, live))
        verify_failures = () if differences else _verify_read_only(runner.conn, included)
        live_server = str(runner.conn.info.parameter_status("server_version") or "")
        matches = not differences and not verify_failures
        recorded = False
        if matches and not dry_run:
            runner.record_baseline(included)
            recorded = True
            say(f"recorded {len(included)} migration(s) as applied; nothing was run")
    notes = []
    if live_server.split(".", maxsplit=1)[0] != str(server.major_version):
        notes.append(
            f"live server is PostgreSQL {live_server}, the scratch server is "
            f"{server.major_version}: catalog text (defaults, definitions) can differ by version"
        )
    return BaselineReport(
        version=version,
        migrations=labels,
        dry_run=dry_run,
        recorded=recorded,
        differences=differences,
        verify_failures=verify_failures,
        live_fingerprint=live.fingerprint(),
        expected_fingerprint=expected.fingerprint(),
        live_server=live_server,
        scratch_server=str(server.major_version),
        notes=tuple(notes),
    )


def baseline_migrations(migrations: Sequence[Migration], version: int) -> list[Migration]:
    """Migrations 1..``version``; ``CannotRun`` unless ``version`` is one of them."""
    known = [m.version for m in migrations]
    if version not in known:
        listed = ", ".join(f"{v:04d}" for v in known) or "none"
        raise CannotRun(
            f"cannot baseline at {version:04d}: no migration has that version "
            f"(known: {listed}). Pass --version of the last migration the live database has.",
            details={"version": version, "known": known},
        )
    return [m for m in migrations if m.version <= version]


def _refuse_history(runner: MigrationRunner) -> None:
    history = runner.read_history()
    if history:
        latest = max(row.version for row in history)
        raise CheckFailed(
            f"refusing to baseline: the database already has Rollgate history "
            f"({len(history)} row(s), up to {latest:04d}). Baseline is for a database "
            "Rollgate has never migrated; see `rollgate db status`.",
            details={"history_rows": len(history), "latest": latest},
        )


def _catalog_of_migrations(
    server: ThrowawayPostgres, migrations: Sequence[Migration], scope: CatalogScope | None
) -> Catalog:
    name = f"baseline_{secrets.token_hex(4)}"
    scratch = create_database(server, name)
    try:
        with MigrationRunner(scratch, migrations, lock_wait=5, lock_retries=0) as runner:
            runner.migrate(migrations[-1].version)
            return _read(runner.conn, scope)
    finally:
        drop_database(server, name)


def _read(conn: psycopg.Connection[Any], scope: CatalogScope | None) -> Catalog:
    # The project's scope when rollgate.toml gives one (a Rails app excludes
    # its own public.schema_migrations and ar_internal_metadata). Rollgate's
    # history lives in its own schema, which the reader never compares.
    return read_catalog(conn, scope=scope or EVERY_SCHEMA)


def _verify_read_only(
    conn: psycopg.Connection[Any], migrations: Sequence[Migration]
) -> tuple[str, ...]:
    """Run each verify script in a read-only transaction that is rolled back."""
    failures = []
    for migration in migrations:
        try:
            with conn.transaction(force_rollback=True):
                conn.execute("SET TRANSACTION READ ONLY")
                execute_script(conn, migration.verify)
        except RollgateError as exc:
            failures.append(f"{migration.label}: verify failed on the live database: {exc.message}")
    return tuple(failures)
