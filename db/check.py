"""``rollgate db check``: everything that must hold before a migration ships.

On a throwaway Postgres (nothing else is touched):

1. the canonical contract (``db.contract``): migrations == schema.sql, and
   up -> down -> up is an identity at every step;
2. every migration's verify script (run by the runner on every up);
3. squawk lint over every migration file (``db.lint``).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import RollgateError
from core.progress import Progress
from db.contract import ContractReport, check_contract
from db.lint import LintReport, lint_migrations, lintable_files
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
            "warnings": list(self.warnings),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
        }


def run_check(
    migrations_dir: Path,
    schema_path: Path,
    *,
    backend: str = "embedded",
    image: str | None = None,
    progress: Progress | None = None,
    schema_statement_timeout: str | None = None,
) -> CheckReport:
    """Run every check; the report says what passed and what did not.

    The extensions that the migrations and the schema create decide the
    backend: when ``embedded`` cannot create one, the check moves to docker
    (a warning says so) or stops with ``CannotRun`` naming it, never a finding.
    """
    say = progress or (lambda message: None)
    started = time.monotonic()
    require_schema_file(schema_path)
    migrations = load_migrations(migrations_dir)  # refuses malformed files up front

    say(f"linting the files of {len(migrations)} migration(s) with squawk")
    files = lintable_files(migrations_dir)
    lint = lint_migrations(files, pg_version=TARGET_POSTGRES_MAJOR)

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
        )
