"""The canonical contract between ``db/schema.sql`` and ``db/migrations/``.

Two promises, checked on a throwaway Postgres by comparing catalogs (what the
server actually built), never SQL text:

1. Applying every migration to an empty database yields exactly the catalog
   of ``schema.sql``.
2. At every step, up -> down -> up returns identical catalog fingerprints:
   each down undoes its up exactly, and each up can be re-applied after it.

Every migration's verify script runs on every up, through the same runner
production uses.

Catalogs are read with the project's ``CatalogScope`` (every user schema by
default). An up that leaves the catalog fingerprint unchanged is a finding of
its own: up -> down -> up over an unchanged catalog proves nothing, so a
data-only migration never counts as a pass.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import RollgateError
from core.progress import Progress
from db.catalog import EVERY_SCHEMA, Catalog, diff_catalogs, read_catalog
from db.config import CatalogScope
from db.migrations import Migration
from db.runner import MigrationRunner
from db.schemafile import canonical_catalog_of
from db.throwaway import ThrowawayPostgres, create_database, drop_database


@dataclass(frozen=True)
class ContractFinding:
    """One broken promise, with where it broke."""

    stage: str  # "schema" | "up" | "down" | "reup" | "final"
    migration: str | None
    message: str

    def describe(self) -> str:
        where = f"{self.migration}: " if self.migration else ""
        return f"[{self.stage}] {where}{self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "migration": self.migration, "message": self.message}


@dataclass(frozen=True)
class StepFingerprints:
    """Catalog fingerprints around one migration's up -> down -> up."""

    migration: str
    before: str
    after_up: str
    after_down: str
    after_reup: str

    @property
    def reversible(self) -> bool:
        return self.after_down == self.before and self.after_reup == self.after_up

    def to_dict(self) -> dict[str, Any]:
        return {
            "migration": self.migration,
            "before": self.before,
            "after_up": self.after_up,
            "after_down": self.after_down,
            "after_reup": self.after_reup,
            "reversible": self.reversible,
        }


@dataclass
class ContractReport:
    schema_fingerprint: str = ""
    migrations_fingerprint: str = ""
    steps: list[StepFingerprints] = field(default_factory=list)
    findings: list[ContractFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "schema_fingerprint": self.schema_fingerprint,
            "migrations_fingerprint": self.migrations_fingerprint,
            "steps": [step.to_dict() for step in self.steps],
            "findings": [finding.to_dict() for finding in self.findings],
        }


def canonical_catalog(
    server: ThrowawayPostgres,
    schema_path: Path,
    *,
    statement_timeout: str | None = None,
    scope: CatalogScope = EVERY_SCHEMA,
) -> Catalog:
    """Load ``schema_path`` into a scratch database on ``server`` and read its catalog.

    The file runs as the RDS-like owner role with bounded waits, and may be
    ``pg_dump --schema-only`` output (see ``db.schemafile``). ``scope`` says
    which schemas and tables are read (by default every user schema).
    """
    return canonical_catalog_of(
        server, schema_path, statement_timeout=statement_timeout, scope=scope
    )


def check_contract(
    server: ThrowawayPostgres,
    migrations: Sequence[Migration],
    schema_path: Path,
    *,
    scope: CatalogScope = EVERY_SCHEMA,
    progress: Progress | None = None,
    schema_statement_timeout: str | None = None,
) -> ContractReport:
    """Check both promises on ``server``; findings describe every break.

    ``scope`` says which schemas and tables are compared (the project's
    ``[catalog]`` config); by default every user schema.
    Migrations run as the RDS-like owner role, never as a superuser: what RDS
    would refuse them is a finding here too. ``schema_statement_timeout``
    bounds each statement of the schema file (default: its directive, or 15min).
    """
    say = progress or (lambda message: None)
    report = ContractReport()

    say(f"loading the canonical schema {schema_path}")
    try:
        expected = canonical_catalog(
            server, schema_path, statement_timeout=schema_statement_timeout, scope=scope
        )
    except RollgateError as exc:
        report.findings.append(ContractFinding("schema", None, exc.message))
        return report
    report.schema_fingerprint = expected.fingerprint()

    name = f"contract_{secrets.token_hex(4)}"
    dsn = create_database(server, name, owner=True)
    try:
        with MigrationRunner(dsn, migrations, lock_wait=5, lock_retries=0) as runner:
            if not _walk_steps(runner, migrations, report, say, scope):
                return report
            actual = read_catalog(runner.conn, scope=scope)
        report.migrations_fingerprint = actual.fingerprint()
        for difference in diff_catalogs(expected, actual):
            report.findings.append(
                ContractFinding("final", None, f"schema.sql vs migrations: {difference.describe()}")
            )
    finally:
        drop_database(server, name)
    return report


def _walk_steps(
    runner: MigrationRunner,
    migrations: Sequence[Migration],
    report: ContractReport,
    say: Progress,
    scope: CatalogScope,
) -> bool:
    """Up, down, up for every migration; False when a step broke the walk.

    A vacuous step (an up that changes nothing in the catalog) is a finding
    but does not stop the walk: the steps after it are still judged.
    """
    vacuous: list[ContractFinding] = []
    try:
        return _walk(runner, migrations, report, say, scope, vacuous=vacuous)
    finally:
        report.findings.extend(vacuous)


def _walk(
    runner: MigrationRunner,
    migrations: Sequence[Migration],
    report: ContractReport,
    say: Progress,
    scope: CatalogScope,
    *,
    vacuous: list[ContractFinding],
) -> bool:
    previous_version = 0
    before = read_catalog(runner.conn, scope=scope)
    for number, migration in enumerate(migrations, start=1):
        say(f"[{number}/{len(migrations)}] {migration.label}: up, down, up")
        stage = "up"
        try:
            runner.migrate(migration.version)
            after_up = read_catalog(runner.conn, scope=scope)
            declared_unchanged = migration.up.directives.get("catalog") == "unchanged"
            if after_up.fingerprint() == before.fingerprint() and not declared_unchanged:
                # Up -> down -> up over an unchanged catalog proves nothing:
                # never let it count as a pass (unless the up says it changes only
                # privileges, which its verify script then checks).
                vacuous.append(_vacuity_finding(migration.label, after_up, scope))
            if declared_unchanged:
                for difference in diff_catalogs(before, after_up):
                    report.findings.append(
                        ContractFinding(
                            "up",
                            migration.label,
                            "declares catalog=unchanged but changed the catalog: "
                            f"{difference.describe()}",
                        )
                    )
            stage = "down"
            runner.revert(previous_version)
            after_down = read_catalog(runner.conn, scope=scope)
            # Judge the down before re-applying: a leftover object usually makes
            # the second up fail too, and the down is the cause worth naming.
            for difference in diff_catalogs(before, after_down):
                report.findings.append(
                    ContractFinding(
                        "down", migration.label, f"down does not undo up: {difference.describe()}"
                    )
                )
            if report.findings:
                return False
            stage = "reup"
            runner.migrate(migration.version)
            after_reup = read_catalog(runner.conn, scope=scope)
        except RollgateError as exc:
            report.findings.append(ContractFinding(stage, migration.label, exc.message))
            return False
        report.steps.append(
            StepFingerprints(
                migration.label,
                before.fingerprint(),
                after_up.fingerprint(),
                after_down.fingerprint(),
                after_reup.fingerprint(),
            )
        )
        for difference in diff_catalogs(after_up, after_reup):
            report.findings.append(
                ContractFinding(
                    "reup", migration.label, f"up after down differs: {difference.describe()}"
                )
            )
        if report.findings:
            return False
        before = after_reup
        previous_version = migration.version
    return True


def _vacuity_finding(label: str, catalog: Catalog, scope: CatalogScope) -> ContractFinding:
    read = scope.schemas or tuple(schema.name for schema in catalog.schemas)
    excluded = f"; tables excluded: {', '.join(scope.exclude)}" if scope.exclude else ""
    return ContractFinding(
        "up",
        label,
        "this migration changed nothing Rollgate can see in the catalog "
        f"(schemas read: {', '.join(read) or 'none'}{excluded}); a data-only change is not "
        "covered by the contract. Make the up change the schema, or widen [catalog] in "
        "rollgate.toml if it works in a schema Rollgate does not read",
    )
