"""Table-level restore: fill back exactly the tables and columns a down migration destroyed.

When the only data a rollback would lose sits in a few tables or columns (a
down file that truncates a table, or re-creates a column its up had dropped),
restoring the whole database would throw away every other write since the
snapshot. Instead, after the down migrations have run:

* the table's rows are read from the snapshot's dump (``pg_restore
  --data-only --table``: no restore of anything else) into a temporary
  staging table, through ``COPY``;
* **columns** are filled back by primary key (``UPDATE ... FROM staging``):
  other columns, and rows written since, are left as they are;
* a **whole table** gets back the rows it lost (``INSERT ... ON CONFLICT DO
  NOTHING``): rows that are still there are not touched.

All of it is one transaction on the live database: it lands whole or not at
all, and running it again changes nothing more.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any

from psycopg import sql

from core.errors import CannotRun, ToolUnavailable
from core.pgtools import client_tools_for
from core.postgres import connect
from core.progress import Progress, silent
from rollback.manifest import Manifest
from rollback.snapshot import DUMP_DIRECTORY
from rollback.store import SnapshotStore
from rollback.verify import checked_artifacts


def restore_table_data(
    store: SnapshotStore,
    manifest: Manifest,
    dsn: str,
    *,
    table: str,
    columns: Sequence[str] | None,
    progress: Progress = silent,
) -> int:
    """Fill ``table`` (or only its ``columns``) back from the snapshot; returns rows touched."""
    schema, name = table.split(".", 1)
    with checked_artifacts(store, manifest) as files:
        copy_header, data = _table_data(files / DUMP_DIRECTORY, schema, name, manifest.server_major)
    what = f"{table}({', '.join(columns)})" if columns else table
    progress(f"filling {what} back from snapshot {manifest.id}")
    with connect(dsn, application_name="rollgate-table-restore") as conn, conn.transaction():
        key = _primary_key(conn, schema, name)
        target = sql.Identifier(schema, name)
        stage = sql.Identifier("rollgate_stage")
        conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(stage, target))
        with conn.cursor().copy(
            sql.SQL("COPY {} ({}) FROM STDIN").format(
                stage, sql.SQL(", ").join(sql.Identifier(c) for c in copy_header)
            )
        ) as copy:
            copy.write(data)
        if columns:
            if not key:
                raise CannotRun(
                    f"{table} has no primary key: its columns cannot be matched to the "
                    "snapshot's rows; a full restore is needed"
                )
            assignments = sql.SQL(", ").join(
                sql.SQL("{} = s.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in columns
            )
            match = sql.SQL(" AND ").join(
                sql.SQL("t.{} = s.{}").format(sql.Identifier(k), sql.Identifier(k)) for k in key
            )
            cursor = conn.execute(
                sql.SQL("UPDATE {} AS t SET {} FROM {} AS s WHERE {}").format(
                    target, assignments, stage, match
                )
            )
        else:
            names = sql.SQL(", ").join(sql.Identifier(c) for c in copy_header)
            overriding = (
                sql.SQL(" OVERRIDING SYSTEM VALUE")
                if _has_identity_always(conn, schema, name)
                else sql.SQL("")
            )
            cursor = conn.execute(
                sql.SQL("INSERT INTO {} ({}){} SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
                    target, names, overriding, names, stage
                )
            )
        return max(cursor.rowcount, 0)


def _table_data(dump: Any, schema: str, name: str, server_major: int) -> tuple[list[str], bytes]:
    """(columns, COPY text) of one table in a directory dump, via pg_restore."""
    bin_dir = client_tools_for(server_major)
    result = subprocess.run(
        [
            str(bin_dir / "pg_restore"),
            "--data-only",
            f"--schema={schema}",
            f"--table={name}",
            "--file=-",
            str(dump),
        ],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        reason = " ".join(result.stderr.decode("utf-8", "replace").split())[-1000:]
        raise ToolUnavailable(f"pg_restore could not read {schema}.{name}: {reason}")
    lines = result.stdout.split(b"\n")
    for index, line in enumerate(lines):
        if line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;"):
            columns = _copy_columns(line.decode("utf-8"))
            end = lines.index(b"\\.", index + 1)
            body = b"\n".join(lines[index + 1 : end])
            return columns, (body + b"\n") if body else b""
    raise CannotRun(f"snapshot has no data for {schema}.{name} (was the table in it?)")


def _copy_columns(header: str) -> list[str]:
    """Column names of ``COPY schema.t (a, "b, c", "D") FROM stdin;``, unquoted."""
    inside = header[header.index("(") + 1 : header.rindex(")")]
    columns, current, quoted, index = [], [], False, 0
    while index < len(inside):
        char = inside[index]
        if char == '"':
            if quoted and inside[index + 1 : index + 2] == '"':
                current.append('"')
                index += 1
            else:
                quoted = not quoted
        elif char == "," and not quoted:
            columns.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        index += 1
    columns.append("".join(current).strip())
    return columns


def _primary_key(conn: Any, schema: str, name: str) -> list[str]:
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = format('%%I.%%I', %s::text, %s::text)::regclass AND i.indisprimary",
        (schema, name),
    ).fetchall()
    return [row[0] for row in rows]


def _has_identity_always(conn: Any, schema: str, name: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = "
        "format('%%I.%%I', %s::text, %s::text)::regclass AND attidentity = 'a')",
        (schema, name),
    ).fetchone()
    return bool(row and row[0])
