"""Drift: how a live database's catalog differs from the canonical schema.

The live side is read in a read-only session; the canonical side is
``schema.sql`` loaded into a throwaway Postgres. Both are compared as
catalogs, so formatting, comments and statement order never count as drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.progress import Progress
from db.catalog import EVERY_SCHEMA, Difference, diff_catalogs, read_catalog
from db.config import CatalogScope
from db.contract import canonical_catalog
from db.migrations import Migration, require_schema_file
from db.runner import MigrationRunner
from db.throwaway import ThrowawayPostgres


@dataclass(frozen=True)
class DriftReport:
    differences: tuple[Difference, ...]
    live_fingerprint: str
    canonical_fingerprint: str
    live_version: int
    latest_version: int
    live_server: str
    canonical_server: str
    notes: tuple[str, ...] = field(default=())

    @property
    def drifted(self) -> bool:
        return bool(self.differences)

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "differences": [{**d.to_dict(), "description": d.describe()} for d in self.differences],
            "live_fingerprint": self.live_fingerprint,
            "canonical_fingerprint": self.canonical_fingerprint,
            "live_version": self.live_version,
            "latest_version": self.latest_version,
            "live_server": self.live_server,
            "canonical_server": self.canonical_server,
            "notes": list(self.notes),
        }


def detect_drift(
    dsn: str,
    server: ThrowawayPostgres,
    schema_path: Path,
    migrations: Sequence[Migration],
    *,
    scope: CatalogScope = EVERY_SCHEMA,
    progress: Progress | None = None,
) -> DriftReport:
    """Compare the database at ``dsn`` with ``schema_path`` (loaded on ``server``).

    Both sides are read with ``scope`` (the project's ``[catalog]`` config).
    """
    say = progress or (lambda message: None)
    require_schema_file(schema_path)
    say("reading the live catalog (read-only)")
    with MigrationRunner(dsn, migrations) as runner:
        runner.conn.execute("SET default_transaction_read_only = on")
        live = read_catalog(runner.conn, scope=scope)
        status = runner.status()
    say("loading the canonical schema into a throwaway Postgres")
    canonical = canonical_catalog(server, schema_path, scope=scope)
    notes = []
    if status.current < status.latest:
        pending = ", ".join(m.label for m in status.pending)
        notes.append(
            f"the database is at {status.current:04d} and {pending} is pending: "
            "`rollgate db migrate` accounts for the differences it introduces"
        )
    live_major = status.server_version.split(".")[0]
    if live_major != str(server.major_version):
        notes.append(
            f"live server is PostgreSQL {status.server_version}, the comparison server is "
            f"{server.major_version}: catalog text (defaults, definitions) can differ by version"
        )
    return DriftReport(
        differences=tuple(diff_catalogs(canonical, live)),
        live_fingerprint=live.fingerprint(),
        canonical_fingerprint=canonical.fingerprint(),
        live_version=status.current,
        latest_version=status.latest,
        live_server=status.server_version,
        canonical_server=str(server.major_version),
        notes=tuple(notes),
    )
