"""Row counts and order-independent content checksums, per table.

A snapshot records them at creation; ``verify`` and ``restore`` recompute them
on the restored copy, and the smoke suite, the gate and the rehearsal compare
them around a migration's round trip. Equal checksums mean equal rows,
whatever order a restore or a parallel load wrote them in.

What every method shares:

* Each row is hashed to 64 bits and the hashes are summed. A sum does not
  depend on order, and ``sum(bigint)`` cannot overflow: it accumulates in
  128 bits and returns ``numeric``. With ``count(*)`` it is one sequential
  scan per table, run by the server: no rows cross the network.
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

Two methods exist, and a checksum is only ever compared with one computed
by the same method (``compare_checksums`` raises ``ChecksumMethodMismatch``,
a bug, rather than report every table as changed). Whoever stores checksums
(a snapshot's manifest) records the method; whoever recomputes them later
asks for that method.

``row-text-v1`` hashes each row's text form (``hashtextextended(t::text, 0)``,
the composite's output). Exact, but the text conversion is most of the
checksum's cost. Snapshots written before v2 carry no method and are v1;
they still verify with v1, which is therefore kept exactly as it was, flaw
included: in a table with a column named ``t``, ``t::text`` is that column,
not the row, so v1 sees nothing else of such a table.

``row-hash-v2`` (new snapshots) hashes the row as a record of columns,
``hash_record_extended(ROW(t.c1, t.c2, ...), 0)``, which skips the text form
for the columns whose type allows it (3.5x cheaper than v1 on a table of
bigints, text and timestamps; a jsonb column still costs its text form, and
jsonb's own hash would cost as much). A type's own hash function is only
"exact" when it depends on nothing but the value's content, and many do not:

* enums hash their OID, which a restore into another database changes;
  ``reg*`` types are OIDs too;
* ``numeric`` hashes by value, so 1.0 and 1.00 collide, while a restore
  must keep the scale; ``interval`` hashes '1 day' and '24 hours' the same;
  ``jsonb`` folds numeric scale too, and does not hash where a container
  ends (``[[1],2]`` and ``[[1,2]]`` collide, so do ``{"a":{"b":1}}`` and
  ``{"a":{},"b":1}``); unbounded ``bpchar`` ignores trailing blanks;
  ``citext`` and nondeterministic collations hash case-insensitively;
* ``json``, ``xml``, ``point``, ``tsvector`` have no hash at all;
  composite and user-defined types hash field by field with the same
  problems, or not at all;
* arrays hash their elements but not their dimensions (``{{1},{2}}`` and
  ``{1,2}`` collide); floats hash -0 like 0.

So a column is hashed natively only when its type (a domain resolved to its
base type, an array judged by its element type) is on ``_NATIVE``, an
explicit allowlist of built-in types whose hash is a function of the exact
stored bytes, with these patches: text-like values are hashed under
``COLLATE "C"`` (bytes, whatever the column's collation), an array adds its
``array_dims``, a float adds whether it is -0, and ``bpchar`` is native only
with a declared length (every value is then padded to it). Every other
column is hashed through its text form (its output function, as v1 did), so
v2 is never blinder than v1. The record hash is order-sensitive
(``h = 31 h + h_i``), so swapped column values change it, and a NULL column
hashes to 0 while any value, the empty string included, hashes otherwise.
A table wider than a ``ROW()`` can hold is hashed in chunks of columns, and
then the chunks' hashes in order.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

ROW_TEXT_V1 = "row-text-v1"
ROW_HASH_V2 = "row-hash-v2"
CHECKSUM_METHODS = (ROW_TEXT_V1, ROW_HASH_V2)
# What new checksums are computed with; stored checksums name their own.
DEFAULT_CHECKSUM_METHOD = ROW_HASH_V2
# What a stored checksum without a recorded method was computed with.
LEGACY_CHECKSUM_METHOD = ROW_TEXT_V1

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
SELECT n.nspname, c.relname, c.oid
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

# Every live column of the given tables, in order, with its type resolved
# through any chain of domains to the base type, and that base type's
# element type when it is a true array (name and point have a typelem too,
# but are not arrays).
_COLUMNS = """
WITH RECURSIVE chain(attrelid, attnum, typid) AS (
    SELECT a.attrelid, a.attnum, a.atttypid
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = ANY(%(relids)s::pg_catalog.oid[]) AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT c.attrelid, c.attnum, t.typbasetype
    FROM chain c JOIN pg_catalog.pg_type t ON t.oid = c.typid
    WHERE t.typtype = 'd'
)
SELECT a.attrelid, a.attname, a.atttypmod, a.atttypid <> base.oid, base.oid,
       CASE WHEN base.typsubscript = 'pg_catalog.array_subscript_handler'::pg_catalog.regproc
            THEN base.typelem END
FROM chain c
JOIN pg_catalog.pg_type base ON base.oid = c.typid AND base.typtype <> 'd'
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.attrelid AND a.attnum = c.attnum
ORDER BY a.attrelid, a.attnum
"""

# row-hash-v2's allowlist: built-in types (fixed OIDs) whose extended hash
# function depends only on the value's exact content, by the SQL name a
# domain over them is cast to. Deliberately absent: numeric, interval, jsonb,
# json, enums, reg*, money, geometric, text search, range and every user type
# (see the module docstring).
_NATIVE = {
    16: "bool",
    17: "bytea",
    18: '"char"',
    19: "name",
    20: "int8",
    21: "int2",
    23: "int4",
    25: "text",
    26: "oid",
    650: "cidr",
    700: "float4",
    701: "float8",
    829: "macaddr",
    869: "inet",
    1042: "bpchar",
    1043: "varchar",
    1082: "date",
    1083: "time",
    1114: "timestamp",
    1184: "timestamptz",
    2950: "uuid",
}
_COLLATABLE = {19, 25, 1042, 1043}
_FLOATS = {700, 701}
_BPCHAR = 1042
# Array elements need no patch of their own: floats (-0) and bpchar
# (trailing blanks) would need one per element, so their arrays go as text.
_NATIVE_ELEMENTS = _NATIVE.keys() - _FLOATS - {_BPCHAR}


class ChecksumMethodMismatch(RuntimeError):
    """Checksums computed by two different methods were compared: a bug, never a verdict.

    Deliberately not a ``RollgateError``: every caller must recompute with the
    stored side's method, so this exits 3 instead of reporting every table
    as changed.
    """


@dataclass(frozen=True)
class TableChecksum:
    """One table's row count and content checksum, and the method that computed it."""

    table: str  # schema.name, unquoted
    rows: int
    checksum: str  # the decimal sum of 64-bit row hashes
    method: str = DEFAULT_CHECKSUM_METHOD

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "rows": self.rows,
            "checksum": self.checksum,
            "method": self.method,
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, method: str = LEGACY_CHECKSUM_METHOD
    ) -> TableChecksum:
        """Parse ``to_dict``'s output; ``method`` applies when the data names none."""
        return cls(
            table=str(data["table"]),
            rows=int(data["rows"]),
            checksum=str(data["checksum"]),
            method=str(data.get("method", method)),
        )

    def same_rows(self, other: TableChecksum) -> bool:
        """Same row count and content; ``ChecksumMethodMismatch`` across methods."""
        require_one_method((self, other))
        return (self.rows, self.checksum) == (other.rows, other.checksum)


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


def checksum_method_of(
    checksums: Iterable[TableChecksum], *, default: str = DEFAULT_CHECKSUM_METHOD
) -> str:
    """The one method ``checksums`` were computed with (``default`` when there are none)."""
    return require_one_method(checksums) or default


def require_one_method(checksums: Iterable[TableChecksum]) -> str | None:
    """The method shared by all of ``checksums``; ``ChecksumMethodMismatch`` if they mix."""
    methods = sorted({item.method for item in checksums})
    if len(methods) > 1:
        raise ChecksumMethodMismatch(
            f"checksums computed by different methods ({', '.join(methods)}) were compared; "
            "recompute the new side with the stored side's method"
        )
    return methods[0] if methods else None


def table_checksums(
    conn: psycopg.Connection[Any],
    *,
    schemas: Sequence[str] = (),
    exclude_schemas: Collection[str] = (),
    exclude_tables: Collection[str] = (),
    method: str = DEFAULT_CHECKSUM_METHOD,
) -> list[TableChecksum]:
    """Checksums of every table in ``schemas`` (default: every user schema), by ``method``.

    Runs inside the caller's transaction when there is one (so a caller that
    imported an exported snapshot gets checksums of exactly that snapshot),
    otherwise in its own read-only REPEATABLE READ transaction, so every
    table is read at one moment. Leaves no trace: pinned settings are local
    to a transaction or savepoint that is rolled back.
    """
    _check_method(method)
    top_level = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.transaction(force_rollback=True):
        if top_level:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        _pin_settings(conn)
        tables = conn.execute(
            _TABLES, {"schemas": list(schemas), "excluded_schemas": list(exclude_schemas)}
        ).fetchall()
        wanted = [t for t in tables if f"{t[0]}.{t[1]}" not in exclude_tables]
        return [_checksum_one(conn, plan) for plan in _plan(conn, wanted, method)]


def _check_method(method: str) -> None:
    if method not in CHECKSUM_METHODS:
        raise ValueError(f"unknown checksum method {method!r}; known: {CHECKSUM_METHODS}")


def _pin_settings(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "SELECT " + ", ".join("set_config(%s, %s, true)" for _ in _PINNED_SETTINGS),
        [item for pair in _PINNED_SETTINGS.items() for item in pair],
    )


@dataclass(frozen=True)
class _Column:
    name: str
    typmod: int
    is_domain: bool
    base: int  # the type's OID, domains resolved
    element: int | None  # the base type's element type, when it is an array


@dataclass(frozen=True)
class _Plan:
    schema: str
    name: str
    method: str
    row_hash: sql.Composable  # a bigint expression over the row alias ``t``


def _plan(
    conn: psycopg.Connection[Any], tables: Sequence[tuple[str, str, int]], method: str
) -> list[_Plan]:
    """Each table's row-hash expression; reads the columns' types once for all of them."""
    if method == ROW_TEXT_V1:
        return [_Plan(s, n, method, sql.SQL("hashtextextended(t::text, 0)")) for s, n, _ in tables]
    columns: dict[int, list[_Column]] = {oid: [] for _, _, oid in tables}
    for relid, *fields in conn.execute(_COLUMNS, {"relids": list(columns)}):
        columns[relid].append(_Column(*fields))
    return [_Plan(s, n, method, _record_hash(columns[oid])) for s, n, oid in tables]


# A ROW() holds at most 1664 entries, and a record inside a record has no
# hash; a wider table's terms are hashed in chunks, then the chunks' hashes.
_ROW_TERMS = 1000


def _record_hash(columns: Sequence[_Column]) -> sql.Composable:
    terms: list[sql.Composable] = [term for column in columns for term in _terms(column)]
    while len(terms) > _ROW_TERMS:
        terms = [_hash_row(terms[i : i + _ROW_TERMS]) for i in range(0, len(terms), _ROW_TERMS)]
    return _hash_row(terms)


def _hash_row(terms: Sequence[sql.Composable]) -> sql.Composable:
    return sql.SQL("pg_catalog.hash_record_extended(ROW({}), 0)").format(sql.SQL(", ").join(terms))


def _terms(column: _Column) -> list[sql.Composable]:
    """What one column contributes to row-hash-v2's record: itself, or its text form."""
    value: sql.Composable = sql.SQL("t.{}").format(sql.Identifier(column.name))
    if column.element is not None and column.element in _NATIVE_ELEMENTS:
        if column.is_domain:
            value = sql.SQL("({})::pg_catalog.{}[]").format(value, sql.SQL(_NATIVE[column.element]))
        if column.element in _COLLATABLE:
            value = sql.SQL('({}) COLLATE "C"').format(value)
        # The array hash covers the elements, not the shape.
        return [value, sql.SQL("pg_catalog.array_dims({})").format(value)]
    native = column.base in _NATIVE and column.element is None
    if native and column.base == _BPCHAR and (column.is_domain or column.typmod < 0):
        native = False  # unpadded values: hashbpchar would ignore their trailing blanks
    if not native:
        if column.base == _BPCHAR:
            # bpchar's cast to text strips trailing blanks; its output does not.
            value = sql.SQL("pg_catalog.textin(pg_catalog.bpcharout({}))").format(value)
        else:
            value = sql.SQL("({})::pg_catalog.text").format(value)
        return [sql.SQL('{} COLLATE "C"').format(value)]
    if column.is_domain:
        value = sql.SQL("({})::pg_catalog.{}").format(value, sql.SQL(_NATIVE[column.base]))
    if column.base in _COLLATABLE:
        value = sql.SQL('({}) COLLATE "C"').format(value)
    if column.base in _FLOATS:
        # float hashing folds -0 into 0; the sign bit of a zero goes in separately.
        as_float8 = sql.SQL("({})::pg_catalog.float8").format(value)
        return [
            value,
            sql.SQL("CASE WHEN {0} = 0 THEN pg_catalog.float8send({0}) END").format(as_float8),
        ]
    return [value]


def _checksum_one(conn: psycopg.Connection[Any], plan: _Plan) -> TableChecksum:
    row = conn.execute(
        sql.SQL("SELECT count(*), coalesce(sum({}), 0)::numeric FROM ONLY {}.{} AS t").format(
            plan.row_hash, sql.Identifier(plan.schema), sql.Identifier(plan.name)
        )
    ).fetchone()
    assert row is not None
    return TableChecksum(f"{plan.schema}.{plan.name}", int(row[0]), str(row[1]), plan.method)


def parallel_table_checksums(
    dsn: str,
    *,
    jobs: int = 2,
    snapshot: str | None = None,
    exclude_schemas: Collection[str] = (),
    method: str = DEFAULT_CHECKSUM_METHOD,
) -> list[TableChecksum]:
    """``table_checksums`` of the database at ``dsn`` on ``jobs`` sessions at once.

    For a database nobody writes to (a freshly restored copy), or one read in
    the exported ``snapshot`` (every session imports it, so all of them see
    the same moment). The tables are dealt largest first to whichever session
    is free, so the wall time is about the total over ``jobs`` on as many
    cores: checksumming is the server's CPU, not I/O. Results are in the
    same order as ``table_checksums``.
    """
    from concurrent.futures import ThreadPoolExecutor
    from queue import Empty, SimpleQueue

    _check_method(method)

    def session() -> psycopg.Connection[Any]:
        conn = psycopg.connect(dsn, application_name="rollgate-checksums")
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        if snapshot is not None:
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        return conn

    with session() as first:
        tables = first.execute(
            "SELECT t.nspname, t.relname, t.oid FROM (" + _TABLES + ") t "
            "ORDER BY pg_relation_size(t.oid) DESC, 1, 2",
            {"schemas": [], "excluded_schemas": list(exclude_schemas)},
        ).fetchall()
        plans = _plan(first, tables, method)
        first.rollback()
    work: SimpleQueue[_Plan] = SimpleQueue()
    for plan in plans:
        work.put(plan)

    def worker() -> list[TableChecksum]:
        done: list[TableChecksum] = []
        with session() as conn:
            _pin_settings(conn)
            while True:
                try:
                    plan = work.get_nowait()
                except Empty:
                    break
                done.append(_checksum_one(conn, plan))
            conn.rollback()
        return done

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(worker) for _ in range(max(1, min(jobs, len(plans))))]
        found = [item for future in futures for item in future.result()]
    return sorted(found, key=lambda item: tuple(item.table.split(".", 1)))


def compare_checksums(
    expected: Sequence[TableChecksum], actual: Sequence[TableChecksum]
) -> list[ChecksumDifference]:
    """Tables whose row count or content differs, sorted by table name.

    ``ChecksumMethodMismatch`` when the two sides were not computed by one
    method: they could only ever "differ".
    """
    require_one_method([*expected, *actual])
    wanted = {item.table: item for item in expected}
    found = {item.table: item for item in actual}
    differences = []
    for table in sorted(wanted.keys() | found.keys()):
        a, b = wanted.get(table), found.get(table)
        if a != b:
            differences.append(ChecksumDifference(table, a, b))
    return differences
