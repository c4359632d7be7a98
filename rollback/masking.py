"""Masking personal data in snapshots that leave production (``snapshot create --mask``).

The columns to mask are declared in ``db/masking.toml`` (``[columns]``,
``"schema.table.column" = "kind"``). A masked snapshot is made by restoring
the fresh dump into a throwaway Postgres, masking there with one UPDATE per
table, and dumping again; the checksums in the manifest are the masked
data's, so ``verify`` proves the masked artifact, and nothing unmasked is
ever written into the store. The unmasked dump exists only in a temporary
directory, removed when the snapshot is done.

Masking keeps every constraint valid:

* ``email``: ``'u' || 16 hex of md5(salt || lower(email)) || '@example.invalid'``.
  Equal emails (ignoring case) map to equal masks and different ones to
  different masks (a 64-bit collision is the only exception), so a unique
  index on ``lower(email)`` holds; the result has the shape an email check
  expects.
* ``name``: ``'Customer ' || 10 hex of md5(salt || name)``: 1 to 100
  characters, never blank.
* ``text``: ``'masked ' || 12 hex of md5(salt || value)``.
* NULL stays NULL; user triggers are off while masking
  (``session_replication_role = replica``), so ``updated_at`` and audit rows
  are not rewritten; unique indexes and CHECK constraints stay enforced, and
  pg_restore re-checks every constraint when the snapshot is restored.

The masks are deterministic for a given salt. The salt is random per
snapshot (and kept nowhere) unless ``ROLLGATE_MASK_SALT`` is set, so a
masked email cannot be matched against a list of known addresses by
hashing them; set the variable to get the same masks in every snapshot.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tomllib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from core.errors import CannotRun
from core.pgtools import client_tools_for
from core.postgres import connect
from db.checksums import DEFAULT_CHECKSUM_METHOD, TableChecksum, parallel_table_checksums
from db.throwaway import ThrowawayPostgres, create_database, drop_database

MASKING_FILE = Path(__file__).resolve().parent.parent / "db" / "masking.toml"
SALT_VARIABLE = "ROLLGATE_MASK_SALT"

_EXPRESSIONS = {
    "email": "'u' || substr(md5({salt} || lower({col})), 1, 16) || '@example.invalid'",
    "name": "'Customer ' || substr(md5({salt} || {col}), 1, 10)",
    "text": "'masked ' || substr(md5({salt} || {col}), 1, 12)",
}


@dataclass(frozen=True)
class MaskingRules:
    """Columns to mask (``schema.table.column`` -> kind) and the salt of the masks."""

    columns: Mapping[str, str]
    salt: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)

    @property
    def masked_columns(self) -> tuple[str, ...]:
        return tuple(sorted(self.columns))


def load_masking(path: Path = MASKING_FILE) -> MaskingRules:
    """The rules in ``path``; ``CannotRun`` naming the file and entry when one is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CannotRun(f"{path}: no masking rules (declare [columns] to mask)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CannotRun(f"{path}: not valid TOML: {exc}") from exc
    columns = data.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise CannotRun(f"{path}: a [columns] table with at least one column is needed")
    for name, kind in columns.items():
        if len(name.split(".")) != 3:
            raise CannotRun(f"{path}: {name!r} is not schema.table.column")
        if kind not in _EXPRESSIONS:
            raise CannotRun(
                f"{path}: {name} has kind {kind!r}; known kinds: {', '.join(sorted(_EXPRESSIONS))}"
            )
    salt = os.environ.get(SALT_VARIABLE)
    return MaskingRules(dict(columns), salt) if salt else MaskingRules(dict(columns))


def mask_dump(
    dump: Path,
    target: Path,
    rules: MaskingRules,
    server: ThrowawayPostgres,
    *,
    jobs: int = 2,
    method: str = DEFAULT_CHECKSUM_METHOD,
) -> list[TableChecksum]:
    """Restore ``dump`` on ``server``, mask it, dump it to ``target``; the masked checksums."""
    from rollback.verify import restore_dump

    name = f"mask_{secrets.token_hex(4)}"
    dsn = create_database(server, name)
    try:
        # Privileges travel with the masked copy: it must restore like any snapshot.
        restore_dump(dump, dsn, server_major=server.major_version, jobs=jobs, keep_privileges=True)
        with connect(dsn, application_name="rollgate-mask") as conn:
            apply_masking(conn, rules)
        args = [
            str(client_tools_for(server.major_version) / "pg_dump"),
            "--format=directory",
            f"--jobs={jobs}",
            "--compress=0",
            "--no-owner",
            # Privileges stay: a masked snapshot restores like any other, and
            # verify scripts check grants. Role names are not personal data.
            "--no-sync",
            f"--file={target}",
            f"--dbname={dsn}",
        ]
        result = subprocess.run(args, capture_output=True, check=False)
        if result.returncode != 0:
            reason = " ".join(result.stderr.decode("utf-8", "replace").split())[-2000:]
            raise CannotRun(f"pg_dump of the masked copy failed: {reason}")
        return parallel_table_checksums(dsn, jobs=jobs, method=method)
    finally:
        drop_database(server, name)


def apply_masking(conn: psycopg.Connection[Any], rules: MaskingRules) -> None:
    """Mask the declared columns in the database behind ``conn``, in one transaction."""
    by_table: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for qualified, kind in rules.columns.items():
        schema, table, column = qualified.split(".")
        by_table[(schema, table)].append((column, kind))
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        for (schema, table), columns in sorted(by_table.items()):
            present = {
                row[0]
                for row in conn.execute(
                    "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
                    "AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped",
                    (schema, table),
                )
            }
            missing = [c for c, _ in columns if c not in present]
            if missing:
                raise CannotRun(
                    f"masking rules name {', '.join(f'{schema}.{table}.{c}' for c in missing)}, "
                    "which the database does not have: fix db/masking.toml"
                )
            assignments = sql.SQL(", ").join(
                sql.SQL("{} = {}").format(
                    sql.Identifier(column),
                    sql.SQL(_EXPRESSIONS[kind]).format(
                        salt=sql.Literal(rules.salt), col=sql.Identifier(column)
                    ),
                )
                for column, kind in columns
            )
            conn.execute(
                sql.SQL("UPDATE {} SET {}").format(sql.Identifier(schema, table), assignments)
            )
