"""Row counts and order-independent content checksums, per table.

A snapshot records them at creation; ``verify`` and ``restore`` recompute them
on the restored copy, and the smoke suite compares them around a migration's
round trip. Equal checksums mean equal rows, whatever order a restore or a
parallel load wrote them in.

How a table is checksummed, and why:

* Each row's text form (``t::text``, the composite's output) is hashed with
  ``hashtextextended`` to 64 bits, and the hashes are summed. A sum does not
  depend on order, and ``sum(bigint)`` cannot overflow: it accumulates in
  128 bits and returns ``numeric``, the same exact value as summing
  ``::numeric`` casts, ~10 % faster. (The text form is most of the cost;
  ``hash_record_extended`` would skip it but hashes enums by OID, which a
  restore changes.) It is one sequential scan per table, run by the server:
  no rows cross the network.
* It is an integrity check, not a cryptographic one: it catches a lost,
  added or changed row (a flipped bit, a bad restore, a down migration that
  deleted data). The artifact files themselves carry sha256s.
* Text output depends on session settings, so they are pinned (as the
  catalog reader pins them): the same rows give the same checksum from any
  session, server or client.
* Only tables that hold rows are summed: plain tables and partitions (leaf
  partitions, so a partitioned parent does not count its children twice).
  Views, materialized views and foreign tables hold no data of their own
  that a restore must reproduce.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

# The same pins as db.catalog's reader: text output of dates, intervals,
# floats and bytea must not depend on who asks.
_PINNED_SETTINGS = {
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "extra_float_digits": "1",
    "bytea_output": "hex",
    "search_path": "pg_catalog",
}

_TABLES = """
SELECT n.nspname, c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
  AND (cardinality(%(schemas)s::text[]) = 0 OR n.nspname = ANY(%(schemas)s::text[]))
  AND NOT (n.nspname = ANY(%(excluded_schemas)s::text[]))
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                    AND d.deptype = 'e')
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class TableChecksum:
    """One table's row count and content checksum."""

    table: str  # schema.name, unquoted
    rows: int
    checksum: str  # the decimal sum of 64-bit row hashes

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "rows": self.rows, "checksum": self.checksum}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableChecksum:
        return cls(table=str(data["table"]), rows=int(data["rows"]), checksum=str(data["checksum"]))


@dataclass(frozen=True)
class ChecksumDifference:
    """A table whose rows differ between two checksum sets."""

    table: str
    expected: TableChecksum | None
    actual: TableChecksum | None

    def describe(self) -> str:
        if self.expected is None:
            return f"table {self.table}: not expected, found with {self.actual_rows} row(s)"
        if self.actual is None:
            return f"table {self.table}: missing (expected {self.expected.rows} row(s))"
        if self.expected.rows != self.actual.rows:
            return f"table {self.table}: {self.actual.rows} row(s), expected {self.expected.rows}"
        return f"table {self.table}: same row count ({self.actual.rows}), different content"

    @property
    def actual_rows(self) -> int:
        return self.actual.rows if self.actual else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "expected": self.expected.to_dict() if self.expected else None,
            "actual": self.actual.to_dict() if self.actual else None,
            "description": self.describe(),
        }


def table_checksums(
    conn: psycopg.Connection[Any],
    *,
    schemas: Sequence[str] = (),
    exclude_schemas: Collection[str] = (),
    exclude_tables: Collection[str] = (),
) -> list[TableChecksum]:
    """Checksums of every table in ``schemas`` (default: every user schema).

    Runs inside the caller's transaction when there is one (so a caller that
    imported an exported snapshot gets checksums of exactly that snapshot),
    otherwise in its own read-only REPEATABLE READ transaction, so every
    table is read at one moment. Leaves no trace: pinned settings are local
    to a transaction or savepoint that is rolled back.
    """
    top_level = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    results = []
    with conn.transaction(force_rollback=True):
        if top_level:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        _pin_settings(conn)
        tables = conn.execute(
            _TABLES, {"schemas": list(schemas), "excluded_schemas": list(exclude_schemas)}
        ).fetchall()
        for schema, name in tables:
            qualified = f"{schema}.{name}"
            if qualified in exclude_tables:
                continue
            results.append(_checksum_one(conn, schema, name))
    return results


def _pin_settings(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "SELECT " + ", ".join("set_config(%s, %s, true)" for _ in _PINNED_SETTINGS),
        [item for pair in _PINNED_SETTINGS.items() for item in pair],
    )


def _checksum_one(conn: psycopg.Connection[Any], schema: str, name: str) -> TableChecksum:
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::numeric "
            "FROM ONLY {}.{} AS t"
        ).format(sql.Identifier(schema), sql.Identifier(name))
    ).fetchone()
    assert row is not None
    return TableChecksum(f"{schema}.{name}", int(row[0]), str(row[1]))


def parallel_table_checksums(
    dsn: str,
    *,
    jobs: int = 2,
    snapshot: str | None = None,
    exclude_schemas: Collection[str] = (),
) -> list[TableChecksum]:
    """``table_checksums`` of the database at ``dsn`` on ``jobs`` sessions at once.

    For a database nobody writes to (a freshly restored copy), or one read in
    the exported ``snapshot`` (every session imports it, so all of them see
    the same moment). The tables are dealt largest first to whichever session
    is free, so the wall time is about the total over ``jobs`` on as many
    cores: checksumming is the server's CPU (each row's text form), not I/O.
    Results are in the same order as ``table_checksums``.
    """
    from concurrent.futures import ThreadPoolExecutor
    from queue import Empty, SimpleQueue

    def session() -> psycopg.Connection[Any]:
        conn = psycopg.connect(dsn, application_name="rollgate-checksums")
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        if snapshot is not None:
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        return conn

    with session() as first:
        tables = first.execute(
            "SELECT t.nspname, t.relname FROM (" + _TABLES + ") t "
            "ORDER BY pg_relation_size(format('%%I.%%I', t.nspname, t.relname)::regclass) DESC, "
            "1, 2",
            {"schemas": [], "excluded_schemas": list(exclude_schemas)},
        ).fetchall()
        first.rollback()
    work: SimpleQueue[tuple[str, str]] = SimpleQueue()
    for item in tables:
        work.put(item)

    def worker() -> list[TableChecksum]:
        done: list[TableChecksum] = []
        with session() as conn:
            _pin_settings(conn)
            while True:
                try:
                    schema, name = work.get_nowait()
                except Empty:
                    break
                done.append(_checksum_one(conn, schema, name))
            conn.rollback()
        return done

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(worker) for _ in range(max(1, min(jobs, len(tables))))]
        found = [item for future in futures for item in future.result()]
    return sorted(found, key=lambda item: tuple(item.table.split(".", 1)))


def compare_checksums(
    expected: Sequence[TableChecksum], actual: Sequence[TableChecksum]
) -> list[ChecksumDifference]:
    """Tables whose row count or content differs, sorted by table name."""
    wanted = {item.table: item for item in expected}
    found = {item.table: item for item in actual}
    differences = []
    for table in sorted(wanted.keys() | found.keys()):
        a, b = wanted.get(table), found.get(table)
        if a != b:
            differences.append(ChecksumDifference(table, a, b))
    return differences
