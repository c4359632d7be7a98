"""Reading a catalog: pg_catalog queries and the records built from their rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from core.errors import CannotRun
from db.catalog.records import (
    Catalog,
    Column,
    Constraint,
    Extension,
    Function,
    Index,
    Policy,
    Schema,
    SequenceDef,
    SequenceOptions,
    Table,
    Trigger,
    TypeDef,
    View,
)
from db.config import CatalogScope
from db.history import HISTORY_SCHEMA

# Oldest server whose pg_catalog has every column the queries below read
# (pg_get_function_sqlbody and attcompression arrived in 14). Catalogs read
# from different majors are readable but not comparable text for text.
MIN_SERVER_VERSION = 140000

# The default scope: every user schema, no table excluded.
EVERY_SCHEMA = CatalogScope()

# --- reading -----------------------------------------------------------------

# Deparsed text depends on session settings: with search_path = pg_catalog every
# user object comes out schema-qualified, and the rest pin how constants in
# defaults and checks print. Without this, the same database read from two
# sessions (or from embedded vs docker servers) could give two fingerprints.
_PINNED_SETTINGS = {
    "search_path": "pg_catalog",
    "quote_all_identifiers": "off",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "extra_float_digits": "1",
    "bytea_output": "hex",
}

# Relations in scope: in a requested schema, not excluded by name (bare or
# qualified), and not created by an extension (the extension row covers it).
_RELATION_IN_SCOPE = """
    n.nspname = ANY(%(schemas)s::text[])
    AND NOT (c.relname = ANY(%(excluded)s::text[])
             OR n.nspname || '.' || c.relname = ANY(%(excluded)s::text[]))
    AND NOT EXISTS (SELECT 1 FROM pg_depend e
                    WHERE e.classid = 'pg_class'::regclass AND e.objid = c.oid
                      AND e.deptype = 'e')
    -- Legacy location of Rollgate's own history (public.schema_migrations,
    -- before it moved to the rollgate schema), recognised by its checksum
    -- columns so that another tool's schema_migrations (Rails,
    -- golang-migrate) is still compared like any project table.
    AND NOT (n.nspname = 'public' AND c.relname = 'schema_migrations'
             AND (SELECT count(*) FROM pg_attribute h
                  WHERE h.attrelid = c.oid AND NOT h.attisdropped
                    AND h.attname IN ('up_sha256', 'down_sha256', 'verify_sha256')) = 3)
"""

# The schemas read: every user schema, or the ones the scope names, but never
# a system schema, Rollgate's own bookkeeping schema, or a schema an extension
# created (the extension row covers it).
_SCHEMAS_READ = """
SELECT n.nspname AS name
FROM pg_namespace n
WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
  AND n.nspname <> %(own_schema)s
  AND (cardinality(%(wanted)s::text[]) = 0 OR n.nspname = ANY(%(wanted)s::text[]))
  AND NOT EXISTS (SELECT 1 FROM pg_depend e
                  WHERE e.classid = 'pg_namespace'::regclass AND e.objid = n.oid
                    AND e.deptype = 'e')
ORDER BY n.nspname
"""

_EXTENSIONS = """
SELECT x.extname AS name, x.extversion AS version, n.nspname AS schema,
       obj_description(x.oid, 'pg_extension') AS comment
FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
"""

_SCHEMAS = """
SELECT n.nspname AS name, obj_description(n.oid, 'pg_namespace') AS comment
FROM pg_namespace n
WHERE n.nspname = ANY(%(schemas)s::text[])
"""

_TYPES = """
SELECT n.nspname || '.' || t.typname AS name,
       CASE t.typtype WHEN 'e' THEN 'enum' WHEN 'd' THEN 'domain' WHEN 'c' THEN 'composite'
                      WHEN 'r' THEN 'range' ELSE 'base' END AS kind,
       CASE WHEN t.typtype = 'e' THEN ARRAY(
           SELECT en.enumlabel FROM pg_enum en WHERE en.enumtypid = t.oid
           ORDER BY en.enumsortorder) END AS labels,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS base_type,
       CASE WHEN t.typtype = 'd' THEN t.typnotnull END AS not_null,
       pg_get_expr(t.typdefaultbin, 0) AS default_expr,
       CASE WHEN t.typtype = 'd' AND t.typcollation <> bt.typcollation
            THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END AS collation,
       -- "name definition", NOT VALID included: domains are rare enough that
       -- one readable string per constraint beats a record of its own
       CASE WHEN t.typtype = 'd' THEN ARRAY(
           SELECT con.conname || ' ' || pg_get_constraintdef(con.oid)
           FROM pg_constraint con WHERE con.contypid = t.oid AND con.contype = 'c'
           ORDER BY con.conname) END AS constraints,
       CASE WHEN t.typtype = 'c' THEN ARRAY(
           SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           FROM pg_attribute a
           WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum) END AS attributes,
       (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid)
           AS subtype,
       obj_description(t.oid, 'pg_type') AS comment
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
LEFT JOIN pg_class rc ON rc.oid = t.typrelid
LEFT JOIN pg_collation co ON co.oid = t.typcollation
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
WHERE n.nspname = ANY(%(schemas)s::text[])
  -- multiranges come with their range; pseudo-types are not user schema
  AND t.typtype IN ('b', 'c', 'd', 'e', 'r')
  -- a table's row type is the table; only free-standing composites count
  AND (t.typrelid = 0 OR rc.relkind = 'c')
  -- array types are implied by their element type
  AND NOT EXISTS (SELECT 1 FROM pg_type el WHERE el.typarray = t.oid)
  AND NOT EXISTS (SELECT 1 FROM pg_depend e
                  WHERE e.classid = 'pg_type'::regclass AND e.objid = t.oid
                    AND e.deptype = 'e')
"""

_TABLES = f"""
SELECT n.nspname || '.' || c.relname AS name,
       CASE c.relkind WHEN 'p' THEN 'partitioned table' ELSE 'table' END AS kind,
       CASE c.relpersistence WHEN 'u' THEN 'unlogged' WHEN 't' THEN 'temporary'
                             ELSE 'permanent' END AS persistence,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partition_key,
       CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END
           AS partition_bound,
       ARRAY(SELECT pn.nspname || '.' || pc.relname
             FROM pg_inherits i
             JOIN pg_class pc ON pc.oid = i.inhparent
             JOIN pg_namespace pn ON pn.oid = pc.relnamespace
             WHERE i.inhrelid = c.oid ORDER BY i.inhseqno) AS parents,
       c.relrowsecurity AS row_security,
       c.relforcerowsecurity AS force_row_security,
       CASE c.relreplident WHEN 'd' THEN 'default' WHEN 'n' THEN 'nothing'
                           WHEN 'f' THEN 'full' ELSE 'index' END AS replica_identity,
       am.amname AS access_method,
       ARRAY(SELECT o FROM unnest(c.reloptions) o ORDER BY o) AS options,
       obj_description(c.oid, 'pg_class') AS comment
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r', 'p') AND {_RELATION_IN_SCOPE}
"""

# position: the ordinal among live columns, so the gap a dropped column leaves
# in attnum does not change the catalog of an otherwise identical table.
_COLUMNS = f"""
SELECT n.nspname || '.' || c.relname AS table_name,
       a.attname AS name,
       row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum) AS position,
       format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null,
       nn.conname AS not_null_constraint,
       nn.convalidated AS not_null_validated,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END AS default_expr,
       CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END AS identity,
       CASE a.attgenerated WHEN 's' THEN 'stored' WHEN 'v' THEN 'virtual' END AS generated,
       CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END AS expression,
       CASE WHEN a.attcollation <> t.typcollation
            THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END AS collation,
       CASE WHEN a.attstorage <> t.typstorage THEN
            CASE a.attstorage WHEN 'p' THEN 'plain' WHEN 'e' THEN 'external'
                              WHEN 'm' THEN 'main' ELSE 'extended' END END AS storage,
       CASE a.attcompression WHEN 'p' THEN 'pglz' WHEN 'l' THEN 'lz4' END AS compression,
       -- -1 meant "default" before PG17, NULL since
       nullif(a.attstattarget, -1)::integer AS statistics,
       (SELECT jsonb_build_object(
                   'type', format_type(s.seqtypid, NULL), 'start', s.seqstart,
                   'increment', s.seqincrement, 'minimum', s.seqmin, 'maximum', s.seqmax,
                   'cache', s.seqcache, 'cycle', s.seqcycle)
        FROM pg_depend dep
        JOIN pg_sequence s ON s.seqrelid = dep.objid
        JOIN pg_class sc ON sc.oid = dep.objid
        WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass
          AND dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum
          AND dep.deptype IN ('a', 'i')
        -- a column owns at most one sequence in practice; if several, the
        -- identity one wins, then the first by name, so the choice is stable
        ORDER BY dep.deptype DESC, sc.relname
        LIMIT 1) AS sequence,
       col_description(a.attrelid, a.attnum) AS comment
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
LEFT JOIN pg_constraint nn
       ON nn.conrelid = a.attrelid AND nn.contype = 'n' AND nn.conkey[1] = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'p') AND {_RELATION_IN_SCOPE}
ORDER BY a.attrelid, a.attnum
"""

_CONSTRAINTS = f"""
SELECT n.nspname || '.' || c.relname AS table_name,
       con.conname AS name,
       CASE con.contype WHEN 'p' THEN 'primary key' WHEN 'u' THEN 'unique'
                        WHEN 'f' THEN 'foreign key' WHEN 'c' THEN 'check'
                        ELSE 'exclusion' END AS type,
       pg_get_constraintdef(con.oid) AS definition,
       con.condeferrable AS deferrable,
       con.condeferred AS initially_deferred,
       con.convalidated AS validated,
       -- conenforced is new in PG18; before it every constraint was enforced
       coalesce((to_jsonb(con) ->> 'conenforced')::boolean, true) AS enforced,
       obj_description(con.oid, 'pg_constraint') AS comment
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
-- NOT NULL ('n') lives on Column; constraint triggers ('t') are triggers
WHERE con.contype IN ('p', 'u', 'f', 'c', 'x')
  AND c.relkind IN ('r', 'p') AND {_RELATION_IN_SCOPE}
"""

_INDEXES = f"""
SELECT n.nspname || '.' || ic.relname AS name,
       n.nspname || '.' || c.relname AS table_name,
       pg_get_indexdef(i.indexrelid) AS definition,
       i.indisvalid AS valid,
       i.indisready AS ready,
       i.indisclustered AS clustered,
       obj_description(ic.oid, 'pg_class') AS comment
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm') AND {_RELATION_IN_SCOPE}
"""

_TRIGGERS = f"""
SELECT n.nspname || '.' || c.relname AS table_name,
       tg.tgname AS name,
       pg_get_triggerdef(tg.oid) AS definition,
       CASE tg.tgenabled WHEN 'O' THEN 'enabled' WHEN 'D' THEN 'disabled'
                         WHEN 'R' THEN 'replica' ELSE 'always' END AS enabled,
       obj_description(tg.oid, 'pg_trigger') AS comment
FROM pg_trigger tg
JOIN pg_class c ON c.oid = tg.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT tg.tgisinternal AND {_RELATION_IN_SCOPE}
"""

# The body, not pg_get_functiondef: language, volatility and the rest are
# fields of their own, so each change is reported once, by name.
_FUNCTIONS = """
SELECT n.nspname || '.' || p.proname
           || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS name,
       CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate'
                      WHEN 'w' THEN 'window' ELSE 'function' END AS kind,
       pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result,
       l.lanname AS language,
       CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' THEN 'stable'
                          ELSE 'volatile' END AS volatility,
       p.proisstrict AS strict,
       p.prosecdef AS security_definer,
       p.proleakproof AS leakproof,
       CASE p.proparallel WHEN 's' THEN 'safe' WHEN 'r' THEN 'restricted'
                          ELSE 'unsafe' END AS parallel,
       p.procost::float8 AS cost,
       p.prorows::float8 AS rows,
       ARRAY(SELECT s FROM unnest(p.proconfig) s ORDER BY s) AS config,
       CASE WHEN p.prokind = 'a' THEN NULL
            WHEN p.prosqlbody IS NOT NULL THEN pg_get_function_sqlbody(p.oid)
            ELSE p.prosrc END AS definition,
       obj_description(p.oid, 'pg_proc') AS comment
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang
WHERE n.nspname = ANY(%(schemas)s::text[])
  -- 'e': made by an extension; 'i': part of another object (the
  -- constructors of a range type), which is recorded in its own right
  AND NOT EXISTS (SELECT 1 FROM pg_depend e
                  WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid
                    AND e.deptype IN ('e', 'i'))
"""

_SEQUENCES = f"""
SELECT n.nspname || '.' || c.relname AS name,
       format_type(s.seqtypid, NULL) AS type,
       s.seqstart AS start, s.seqincrement AS increment,
       s.seqmin AS minimum, s.seqmax AS maximum,
       s.seqcache AS cache, s.seqcycle AS cycle,
       CASE c.relpersistence WHEN 'u' THEN 'unlogged' WHEN 't' THEN 'temporary'
                             ELSE 'permanent' END AS persistence,
       obj_description(c.oid, 'pg_class') AS comment
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_RELATION_IN_SCOPE}
  -- identity and serial sequences are recorded on the column that owns them
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.refclassid = 'pg_class'::regclass
                    AND d.deptype IN ('a', 'i'))
"""

_VIEWS = f"""
SELECT n.nspname || '.' || c.relname AS name,
       CASE c.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END AS kind,
       pg_get_viewdef(c.oid) AS definition,
       ARRAY(SELECT o FROM unnest(c.reloptions) o ORDER BY o) AS options,
       obj_description(c.oid, 'pg_class') AS comment
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm') AND {_RELATION_IN_SCOPE}
"""

_POLICIES = f"""
SELECT n.nspname || '.' || c.relname AS table_name,
       pol.polname AS name,
       CASE pol.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                       WHEN 'd' THEN 'DELETE' ELSE 'ALL' END AS command,
       pol.polpermissive AS permissive,
       ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END
             FROM unnest(pol.polroles) r ORDER BY 1) AS roles,
       pg_get_expr(pol.polqual, pol.polrelid) AS using_expr,
       pg_get_expr(pol.polwithcheck, pol.polrelid) AS with_check,
       obj_description(pol.oid, 'pg_policy') AS comment
FROM pg_policy pol
JOIN pg_class c ON c.oid = pol.polrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_RELATION_IN_SCOPE}
"""

_QUERIES: dict[str, str] = {
    "extensions": _EXTENSIONS,
    "schemas": _SCHEMAS,
    "types": _TYPES,
    "tables": _TABLES,
    "columns": _COLUMNS,
    "constraints": _CONSTRAINTS,
    "indexes": _INDEXES,
    "triggers": _TRIGGERS,
    "functions": _FUNCTIONS,
    "sequences": _SEQUENCES,
    "views": _VIEWS,
    "policies": _POLICIES,
}

Row = dict[str, Any]


def read_catalog(conn: psycopg.Connection[Any], *, scope: CatalogScope = EVERY_SCHEMA) -> Catalog:
    """Read the catalog of the objects in ``scope`` through ``conn``.

    By default every user schema is read: all but ``pg_*``,
    ``information_schema`` and Rollgate's own ``rollgate`` schema.
    ``scope.schemas`` narrows that to the schemas named; ``scope.exclude``
    names tables (bare, or schema-qualified) left out with everything on them.
    Objects an extension created are left out wherever they live; the
    extensions themselves, with their versions, are always recorded.

    Works in autocommit mode or inside the caller's transaction. All queries
    see one snapshot and leave no trace: settings pinned for deparsing are
    undone by rolling back (a savepoint, inside the caller's transaction).
    """
    if conn.info.server_version < MIN_SERVER_VERSION:
        raise CannotRun(
            f"catalog comparison needs PostgreSQL {MIN_SERVER_VERSION // 10000} or newer; "
            f"the server is version {conn.info.server_version}"
        )
    _refuse_unreadable_schemas(scope.schemas)
    top_level = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.transaction(force_rollback=True):
        if top_level:
            # One snapshot for every query, so concurrent DDL on a live
            # database cannot give a table whose columns are from later.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute(
            "SELECT " + ", ".join("set_config(%s, %s, true)" for _ in _PINNED_SETTINGS),
            [item for pair in _PINNED_SETTINGS.items() for item in pair],
        )
        schemas = [
            name
            for (name,) in conn.execute(
                _SCHEMAS_READ, {"own_schema": HISTORY_SCHEMA, "wanted": list(scope.schemas)}
            )
        ]
        rows = _fetch_all(conn, {"schemas": schemas, "excluded": list(scope.exclude)})
    return _build_catalog(rows)


def _refuse_unreadable_schemas(wanted: Sequence[str]) -> None:
    system = [s for s in wanted if s.startswith("pg_") or s == "information_schema"]
    if system:
        raise CannotRun(f"system schemas are never compared: {', '.join(system)}")
    if HISTORY_SCHEMA in wanted:
        raise CannotRun(
            f"schema {HISTORY_SCHEMA!r} holds Rollgate's own history and is never compared; "
            "remove it from [catalog] schemas"
        )


def _fetch_all(conn: psycopg.Connection[Any], params: Mapping[str, Any]) -> dict[str, list[Row]]:
    # Pipeline mode sends every query before reading any result: one network
    # round trip for the whole catalog instead of one per section.
    cursors = {}
    with conn.pipeline():
        for section, query in _QUERIES.items():
            cursors[section] = conn.cursor(row_factory=dict_row)
            cursors[section].execute(query, params)
    rows = {}
    for section, cursor in cursors.items():
        with cursor:
            rows[section] = cursor.fetchall()
    return rows


def _build_catalog(rows: Mapping[str, list[Row]]) -> Catalog:
    columns: dict[str, list[Column]] = {}
    for row in rows["columns"]:
        columns.setdefault(row["table_name"], []).append(_column(row))
    return Catalog(
        extensions=tuple(Extension(**row) for row in rows["extensions"]),
        schemas=tuple(Schema(**row) for row in rows["schemas"]),
        types=tuple(_type_def(row) for row in rows["types"]),
        tables=tuple(_table(row, columns.get(row["name"], [])) for row in rows["tables"]),
        constraints=tuple(_constraint(row) for row in rows["constraints"]),
        indexes=tuple(_index(row) for row in rows["indexes"]),
        triggers=tuple(_trigger(row) for row in rows["triggers"]),
        functions=tuple(_function(row) for row in rows["functions"]),
        sequences=tuple(SequenceDef(**row) for row in rows["sequences"]),
        views=tuple(_view(row) for row in rows["views"]),
        policies=tuple(_policy(row) for row in rows["policies"]),
    )


def _on_table(row: Row) -> str:
    # Constraint, trigger and policy names are unique per table, not per schema.
    return f"{row['table_name']}.{row['name']}"


def _column(row: Row) -> Column:
    return Column(
        name=row["name"],
        position=int(row["position"]),
        type=row["type"],
        not_null=row["not_null"],
        not_null_constraint=row["not_null_constraint"],
        not_null_validated=row["not_null_validated"],
        default=row["default_expr"],
        identity=row["identity"],
        generated=row["generated"],
        expression=row["expression"],
        collation=row["collation"],
        storage=row["storage"],
        compression=row["compression"],
        statistics=row["statistics"],
        sequence=SequenceOptions(**row["sequence"]) if row["sequence"] else None,
        comment=row["comment"],
    )


def _table(row: Row, columns: list[Column]) -> Table:
    return Table(
        name=row["name"],
        kind=row["kind"],
        persistence=row["persistence"],
        partition_key=row["partition_key"],
        partition_bound=row["partition_bound"],
        parents=tuple(row["parents"]),
        row_security=row["row_security"],
        force_row_security=row["force_row_security"],
        replica_identity=row["replica_identity"],
        access_method=row["access_method"],
        options=tuple(row["options"]),
        columns=tuple(columns),
        comment=row["comment"],
    )


def _index(row: Row) -> Index:
    return Index(
        name=row["name"],
        table=row["table_name"],
        definition=row["definition"],
        valid=row["valid"],
        ready=row["ready"],
        clustered=row["clustered"],
        comment=row["comment"],
    )


def _trigger(row: Row) -> Trigger:
    return Trigger(
        name=_on_table(row),
        table=row["table_name"],
        definition=row["definition"],
        enabled=row["enabled"],
        comment=row["comment"],
    )


def _function(row: Row) -> Function:
    return Function(**{**row, "config": tuple(row["config"])})


def _view(row: Row) -> View:
    return View(**{**row, "options": tuple(row["options"])})


def _policy(row: Row) -> Policy:
    return Policy(
        name=_on_table(row),
        table=row["table_name"],
        command=row["command"],
        permissive=row["permissive"],
        roles=tuple(row["roles"]),
        using=row["using_expr"],
        with_check=row["with_check"],
        comment=row["comment"],
    )


def _constraint(row: Row) -> Constraint:
    # A NOT ENFORCED constraint is never validated, and Postgres prints NOT
    # ENFORCED in its definition; "not validated" would only repeat that.
    validated = bool(row["validated"] or not row["enforced"])
    definition = _strip_suffixes(
        row["definition"],
        (" NOT VALID", not row["validated"] and row["enforced"]),
        (" INITIALLY DEFERRED", row["initially_deferred"]),
        (" DEFERRABLE", row["deferrable"]),
    )
    return Constraint(
        name=_on_table(row),
        table=row["table_name"],
        type=row["type"],
        definition=definition,
        deferrable=row["deferrable"],
        initially_deferred=row["initially_deferred"],
        validated=validated,
        comment=row["comment"],
    )


def _strip_suffixes(definition: str, *suffixes: tuple[str, bool]) -> str:
    # pg_get_constraintdef appends these in this order (ruleutils.c), and only
    # when the flag is set, so peeling them off from the end is exact.
    for suffix, present in suffixes:
        if present and definition.endswith(suffix):
            definition = definition[: -len(suffix)]
    return definition


def _type_def(row: Row) -> TypeDef:
    def optional_tuple(value: list[str] | None) -> tuple[str, ...] | None:
        return None if value is None else tuple(value)

    return TypeDef(
        name=row["name"],
        kind=row["kind"],
        labels=optional_tuple(row["labels"]),
        base_type=row["base_type"],
        not_null=row["not_null"],
        default=row["default_expr"],
        collation=row["collation"],
        constraints=optional_tuple(row["constraints"]),
        attributes=optional_tuple(row["attributes"]),
        subtype=row["subtype"],
        comment=row["comment"],
    )
