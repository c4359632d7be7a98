"""``rollgate db check``: everything that must hold before a migration ships.

On a throwaway Postgres (nothing else is touched):

1. the canonical contract (``db.contract``): migrations == schema.sql, and
   up -> down -> up is an identity at every step;
2. every migration's verify script (run by the runner on every up);
3. squawk lint over every migration file above the lint baseline
   (``db.lint``), with the drops a down file makes of what its own up created
   set aside as destructive reverts (``db.destructive``), which are reported
   per migration with the tables and columns whose data they lose.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.errors import RollgateError
from core.progress import Progress
from db.catalog import EVERY_SCHEMA
from db.config import CatalogScope
from db.contract import ContractReport, check_contract
from db.destructive import DestructiveRevert, affected_data, classify_reverts
from db.lint import (
    LintReport,
    lint_migrations,
    lintable_files,
    set_aside_expected_drops,
    split_at_baseline,
)
from db.migrations import load_migrations, require_schema_file
from db.schemafile import read_schema_file
from db.throwaway import TARGET_POSTGRES_MAJOR
from db.throwaway.extensions import required_extensions, start_for_extensions


@dataclass(frozen=True)
class CheckReport:
    backend: str
    server_major: int
    migrations: tuple[str, ...]
    contract: ContractReport
    lint: LintReport
    warnings: tuple[str, ...]
    elapsed_seconds: float
    destructive_reverts: tuple[DestructiveRevert, ...] = ()

    @property
    def ok(self) -> bool:
        return self.contract.ok and self.lint.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "backend": self.backend,
            "server_major": self.server_major,
            "migrations": list(self.migrations),
            "contract": self.contract.to_dict(),
            "lint": self.lint.to_dict(),
            "destructive_reverts": _reverts_by_migration(self.destructive_reverts),
            "warnings": list(self.warnings),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
        }


def run_check(
    migrations_dir: Path,
    schema_path: Path,
    *,
    backend: str = "embedded",
    image: str | None = None,
    scope: CatalogScope = EVERY_SCHEMA,
    lint_since: int = 0,
    progress: Progress | None = None,
    schema_statement_timeout: str | None = None,
) -> CheckReport:
    """Run every check; the report says what passed and what did not.

    Files of migrations at or below ``lint_since`` are not linted (they are
    in production already); the contract still replays every migration.
    The extensions that the migrations and the schema create decide the
    backend: when ``embedded`` cannot create one, the check moves to docker
    (a warning says so) or stops with ``CannotRun`` naming it, never a finding.
    """
    say = progress or (lambda message: None)
    started = time.monotonic()
    require_schema_file(schema_path)
    migrations = load_migrations(migrations_dir)  # refuses malformed files up front

    files, skipped = split_at_baseline(lintable_files(migrations_dir), lint_since)
    if skipped:
        say(f"not linting {len(skipped)} file(s) at or below the lint baseline {lint_since:04d}")
    say(f"linting {len(files)} migration file(s) with squawk")
    reverts = classify_reverts(migrations)
    lint = lint_migrations(files, pg_version=TARGET_POSTGRES_MAJOR)
    lint = set_aside_expected_drops(lint, reverts)
    lint = replace(lint, since=lint_since, skipped_files=tuple(skipped))

    scripts = [script for m in migrations for script in (m.up, m.down)]
    # A broken schema file is the contract's finding (with file:line), not an error here.
    with contextlib.suppress(RollgateError):
        scripts.append(read_schema_file(schema_path).script)
    needed = required_extensions(scripts)
    say(f"starting a throwaway Postgres ({backend})")
    with start_for_extensions(backend, needed, image=image, progress=say) as server:
        for warning in server.warnings:
            say(f"warning: {warning}")
        contract = check_contract(
            server,
            migrations,
            schema_path,
            scope=scope,
            progress=say,
            schema_statement_timeout=schema_statement_timeout,
        )
        return CheckReport(
            backend=server.backend,
            server_major=server.major_version,
            migrations=tuple(m.label for m in migrations),
            contract=contract,
            lint=lint,
            warnings=tuple(server.warnings),
            elapsed_seconds=time.monotonic() - started,
            destructive_reverts=tuple(reverts),
        )


def _reverts_by_migration(reverts: tuple[DestructiveRevert, ...]) -> list[dict[str, Any]]:
    """One entry per migration whose down destroys something, in migration order."""
    grouped: dict[str, list[DestructiveRevert]] = {}
    for revert in reverts:
        grouped.setdefault(revert.migration, []).append(revert)
    return [
        {
            "migration": label,
            "loses_data": any(r.loses_data for r in entries),
            "affected": [
                {"table": table, "columns": None if columns is None else list(columns)}
                for table, columns in affected_data(entries).items()
            ],
            "reverts": [r.to_dict() for r in entries],
        }
        for label, entries in grouped.items()
    ]
