"""The schema range this release runs on, and how readiness checks it.

Rollgate records applied migrations in ``rollgate.schema_migrations``; before
it moved there it used ``public.schema_migrations``. Readiness reads the new
table and falls back to the legacy one only when it has Rollgate's columns
(``up_sha256``): Rails and others own tables of that name too. The names are
repeated here because the app must not import ``db``; a seam test holds them
equal to ``db.history``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import psycopg

HISTORY_SCHEMA: Final = "rollgate"
HISTORY_TABLE: Final = "schema_migrations"
LEGACY_HISTORY_SCHEMA: Final = "public"
#: A column only Rollgate's history table has.
ROLLGATE_HISTORY_MARKER_COLUMN: Final = "up_sha256"

#: Every migration this release needs, oldest first (version, name).
REQUIRED_MIGRATIONS: Final[tuple[tuple[int, str], ...]] = (
    (1, "0001_create_base_tables"),
    (2, "0002_add_ai_model"),
    (3, "0003_add_task_outbox"),
    (4, "0004_create_roi_views"),
    (5, "0005_grant_service_roles"),
)
MIN_SCHEMA_VERSION: Final = REQUIRED_MIGRATIONS[-1][0]
#: Expand/contract: the next release's migrations are additive, so this release
#: still runs on them (that is what makes rolling the app back safe). Further is unknown.
MAX_SCHEMA_VERSION: Final = MIN_SCHEMA_VERSION + 1


@dataclass(frozen=True)
class SchemaState:
    """What readiness found in the history table."""

    ok: bool
    version: int | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "version": self.version, "message": self.message}


def history_table(conn: psycopg.Connection[Any]) -> str | None:
    """Qualified name of Rollgate's history table in this database, or None."""
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL, EXISTS ("
        "  SELECT 1 FROM information_schema.columns"
        "  WHERE table_schema = %s AND table_name = %s AND column_name = %s)",
        (
            f"{HISTORY_SCHEMA}.{HISTORY_TABLE}",
            LEGACY_HISTORY_SCHEMA,
            HISTORY_TABLE,
            ROLLGATE_HISTORY_MARKER_COLUMN,
        ),
    ).fetchone()
    assert row is not None
    current, legacy = row
    if current:
        return f"{HISTORY_SCHEMA}.{HISTORY_TABLE}"
    if legacy:
        return f"{LEGACY_HISTORY_SCHEMA}.{HISTORY_TABLE}"
    return None


def check_schema(conn: psycopg.Connection[Any]) -> SchemaState:
    """Is the schema within [MIN_SCHEMA_VERSION, MAX_SCHEMA_VERSION], every needed step applied?"""
    table = history_table(conn)
    if table is None:
        return SchemaState(
            False,
            None,
            "no Rollgate migration history (rollgate.schema_migrations): "
            f"run `rollgate db migrate`; this release needs {_names(REQUIRED_MIGRATIONS)}",
        )
    # The table name comes from the two constants above, never from input.
    rows = conn.execute(f"SELECT version, state FROM {table} ORDER BY version").fetchall()
    applied = {int(version) for version, state in rows if state == "applied"}
    unfinished = sorted(int(version) for version, state in rows if state != "applied")
    version = max(applied) if applied else None
    missing = [(v, name) for v, name in REQUIRED_MIGRATIONS if v not in applied]
    if unfinished:
        return SchemaState(
            False, version, f"migration(s) {unfinished} are half-applied: finish or revert them"
        )
    if missing:
        return SchemaState(
            False,
            version,
            f"schema is older than this release needs: missing {_names(missing)} "
            "(run `rollgate db migrate`)",
        )
    assert version is not None
    if version > MAX_SCHEMA_VERSION:
        return SchemaState(
            False,
            version,
            f"schema version {version} is newer than this release supports "
            f"(up to {MAX_SCHEMA_VERSION}): deploy a newer app release",
        )
    return SchemaState(True, version, f"schema version {version} is supported")


def _names(migrations: Any) -> str:
    return ", ".join(name for _version, name in migrations)
