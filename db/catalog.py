"""Compare databases by their catalog, never by SQL text.

Two databases have the same schema when Postgres itself describes them the
same way. ``read_catalog`` asks pg_catalog (and Postgres' own deparsers:
``format_type``, ``pg_get_expr``, ``pg_get_constraintdef``, ``pg_get_indexdef``,
``pg_get_triggerdef``, ``pg_get_viewdef``) for every object in scope and
returns a ``Catalog``: plain frozen records with a canonical JSON form, so a
catalog can be stored as an artifact, fingerprinted, and compared later.
``diff_catalogs`` lists what differs, one ``Difference`` per fact, in a
deterministic order; ``Difference.describe()`` says it in one line.

What a catalog records, and what it leaves out on purpose:

* Recorded: user schemas, extensions, types (enum, domain, composite, range),
  tables (kind, persistence, partitioning, inheritance, RLS flags, storage
  options), columns in order, constraints, indexes (including whether they are
  valid and ready), triggers (including whether they are enabled), functions
  and procedures, free-standing sequences, views and materialized views, row
  security policies, and comments.
* Left out, because it differs between two healthy copies of one schema: owners,
  privileges, OIDs, tablespaces, relfilenodes, statistics and sequence
  positions, the server's minor version, whether a materialized view has been
  refreshed.
* Not covered yet (none is used by Rollgate's schema): rules other than views,
  extended statistics objects, publications, event triggers, collations,
  operators and casts, foreign tables, aggregate internals (an aggregate is
  recorded by its signature only).

Comments are recorded as a ``comment`` attribute on each object rather than in
a separate section: ``schema.sql`` is the single source of truth, so a COMMENT
that a migration adds but the canonical schema lacks is drift like any other,
and reporting it on the object keeps messages in one vocabulary
("table public.orders: comment changed ...").

The reader targets PostgreSQL 18 (``db.throwaway.TARGET_POSTGRES_MAJOR``) and
also reads 14 to 17, but compare catalogs of one major only: deparsed text and
PG18's named NOT NULL constraints differ between majors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import psycopg
from psycopg.rows import dict_row

from core.errors import CannotRun

# Bumped whenever the shape of Catalog.to_dict() changes, so an old stored
# artifact is refused rather than compared field-by-field with a new one.
CATALOG_FORMAT = 1

# Oldest server whose pg_catalog has every column the queries below read
# (pg_get_function_sqlbody and attcompression arrived in 14). Catalogs read
# from different majors are readable but not comparable text for text.
MIN_SERVER_VERSION = 140000

Change = Literal["missing", "unexpected", "changed"]

# --- the records -------------------------------------------------------------
#
# Every object has a ``name`` that is unique within its kind and qualified
# enough to find it: "public.orders" for tables, indexes, sequences, types,
# views; "public.orders.orders_pkey" for what lives on a table (constraints,
# triggers, policies; Postgres scopes those names by table); and
# "public.f(integer, text)" for functions, whose identity includes arguments.
# Names are unquoted: they are keys and labels, not SQL to execute.


@dataclass(frozen=True)
class SequenceOptions:
    """The parameters of a sequence (its current value is data, not schema)."""

    type: str
    start: int
    increment: int
    minimum: int
    maximum: int
    cache: int
    cycle: bool


@dataclass(frozen=True)
class Column:
    """One live column. ``position`` counts live columns only, from 1."""

    name: str
    position: int
    type: str
    not_null: bool
    # PG18 keeps NOT NULL as a named constraint that can be NOT VALID while
    # attnotnull is already true; its name matters to a later DROP CONSTRAINT.
    not_null_constraint: str | None
    not_null_validated: bool | None
    default: str | None
    identity: str | None  # "always" | "by default"
    generated: str | None  # "stored" | "virtual"
    expression: str | None  # the generation expression of a generated column
    collation: str | None  # only when it differs from the type's; SQL-quoted
    storage: str | None  # only when it differs from the type's storage
    compression: str | None
    statistics: int | None
    # The identity or serial (OWNED BY) sequence: its name is an implementation
    # detail, its parameters are schema.
    sequence: SequenceOptions | None
    comment: str | None


@dataclass(frozen=True)
class Table:
    """An ordinary or partitioned table and its columns in physical order."""

    name: str
    kind: str  # "table" | "partitioned table"
    persistence: str  # "permanent" | "unlogged"
    partition_key: str | None
    partition_bound: str | None
    parents: tuple[str, ...]  # inheritance or partition parent, in inhseqno order
    row_security: bool
    force_row_security: bool
    replica_identity: str
    access_method: str | None
    options: tuple[str, ...]  # reloptions, sorted
    columns: tuple[Column, ...]
    comment: str | None


@dataclass(frozen=True)
class Constraint:
    """A table constraint other than NOT NULL (which is folded into Column)."""

    name: str
    table: str
    type: str  # "primary key" | "unique" | "foreign key" | "check" | "exclusion"
    # pg_get_constraintdef without the DEFERRABLE / INITIALLY DEFERRED / NOT
    # VALID suffixes: those are the fields below, so one change is one difference.
    definition: str
    deferrable: bool
    initially_deferred: bool
    validated: bool
    comment: str | None


@dataclass(frozen=True)
class Index:
    """An index, with the flags a failed CREATE INDEX CONCURRENTLY leaves false."""

    name: str
    table: str
    definition: str
    valid: bool
    ready: bool
    clustered: bool
    comment: str | None


@dataclass(frozen=True)
class Trigger:
    """A user trigger (internal FK triggers are implied by the constraint)."""

    name: str
    table: str
    definition: str
    enabled: str  # "enabled" | "disabled" | "replica" | "always"
    comment: str | None


@dataclass(frozen=True)
class Function:
    """A function or procedure; ``definition`` is its body."""

    name: str
    kind: str
    arguments: str  # with names and defaults
    result: str | None
    language: str
    volatility: str
    strict: bool
    security_definer: bool
    leakproof: bool
    parallel: str
    cost: float
    rows: float
    config: tuple[str, ...]
    definition: str | None
    comment: str | None


@dataclass(frozen=True)
class SequenceDef:
    """A sequence no column owns (owned ones are recorded on their column)."""

    name: str
    type: str
    start: int
    increment: int
    minimum: int
    maximum: int
    cache: int
    cycle: bool
    persistence: str
    comment: str | None


@dataclass(frozen=True)
class View:
    """A view or materialized view."""

    name: str
    kind: str  # "view" | "materialized view"
    definition: str
    options: tuple[str, ...]
    comment: str | None


@dataclass(frozen=True)
class TypeDef:
    """A user-defined type; fields that do not apply to its kind are None."""

    name: str
    kind: str  # "enum" | "domain" | "composite" | "range" | "base"
    labels: tuple[str, ...] | None  # enum, in sort order
    base_type: str | None  # domain
    not_null: bool | None  # domain
    default: str | None  # domain
    collation: str | None  # domain, when not the base type's
    constraints: tuple[str, ...] | None  # domain CHECKs: "name definition"
    attributes: tuple[str, ...] | None  # composite: "name type", in order
    subtype: str | None  # range
    comment: str | None


@dataclass(frozen=True)
class Policy:
    """A row security policy."""

    name: str
    table: str
    command: str
    permissive: bool
    roles: tuple[str, ...]
    using: str | None
    with_check: str | None
    comment: str | None


@dataclass(frozen=True)
class Extension:
    """An installed extension (database-wide, whatever schema holds it)."""

    name: str
    version: str
    schema: str
    comment: str | None


@dataclass(frozen=True)
class Schema:
    """A user schema (every one in the database, not only those read)."""

    name: str
    comment: str | None


CatalogObject = Union[  # noqa: UP007 -- a runtime alias: keep it readable in 3.11
    Extension,
    Schema,
    TypeDef,
    Table,
    Constraint,
    Index,
    Trigger,
    Function,
    SequenceDef,
    View,
    Policy,
]

# Difference kind -> Catalog field, in the order differences are reported:
# containers before contents, so a reader meets the cause before the effects.
_SECTIONS: dict[str, str] = {
    "schema": "schemas",
    "extension": "extensions",
    "type": "types",
    "sequence": "sequences",
    "function": "functions",
    "table": "tables",
    "column": "",  # inside tables
    "constraint": "constraints",
    "index": "indexes",
    "trigger": "triggers",
    "view": "views",
    "policy": "policies",
}
KINDS: tuple[str, ...] = tuple(_SECTIONS)


@dataclass(frozen=True)
class Catalog:
    """Everything ``read_catalog`` saw, each section sorted by name."""

    extensions: tuple[Extension, ...] = ()
    schemas: tuple[Schema, ...] = ()
    types: tuple[TypeDef, ...] = ()
    tables: tuple[Table, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    indexes: tuple[Index, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    functions: tuple[Function, ...] = ()
    sequences: tuple[SequenceDef, ...] = ()
    views: tuple[View, ...] = ()
    policies: tuple[Policy, ...] = ()

    def __post_init__(self) -> None:
        # Canonical order whoever built the catalog, so == and fingerprints
        # never depend on query order or on how a test assembled one.
        for section in fields(self):
            items: tuple[CatalogObject, ...] = getattr(self, section.name)
            object.__setattr__(self, section.name, tuple(sorted(items, key=_by_name)))

    def objects(self, kind: str) -> dict[str, CatalogObject]:
        """The objects of one kind ("table", "index", ...) keyed by name."""
        section = _SECTIONS.get(kind)
        if not section:
            raise ValueError(f"no catalog section for kind {kind!r}")
        items: tuple[CatalogObject, ...] = getattr(self, section)
        return {item.name: item for item in items}

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON-able form: lists sorted by name, no tuples."""
        data: dict[str, Any] = {"format": CATALOG_FORMAT}
        for section in fields(self):
            data[section.name] = _to_json(getattr(self, section.name))
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Catalog:
        """Rebuild a catalog stored with ``to_dict``; refuses other formats."""
        if not isinstance(data, Mapping) or data.get("format") != CATALOG_FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise CannotRun(
                f"not a Rollgate catalog of format {CATALOG_FORMAT} (found format {found!r}); "
                "re-read the database to get a current catalog"
            )
        body = {key: value for key, value in data.items() if key != "format"}
        try:
            catalog: Catalog = _from_json(cls, body)
        except (KeyError, TypeError, ValueError) as exc:
            raise CannotRun(f"malformed catalog: {exc}") from exc
        return catalog

    def fingerprint(self) -> str:
        """sha256 hex of the canonical JSON: equal catalogs, equal fingerprints."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _by_name(item: CatalogObject) -> str:
    return item.name


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
"""

_EXTENSIONS = """
SELECT x.extname AS name, x.extversion AS version, n.nspname AS schema,
       obj_description(x.oid, 'pg_extension') AS comment
FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
"""

_SCHEMAS = """
SELECT n.nspname AS name, obj_description(n.oid, 'pg_namespace') AS comment
FROM pg_namespace n
WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' AND n.nspname <> 'rollgate'
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


def read_catalog(
    conn: psycopg.Connection[Any],
    *,
    schemas: Sequence[str] = ("public",),
    exclude_tables: Collection[str] = ("schema_migrations",),
) -> Catalog:
    """Read the catalog of the objects in ``schemas`` through ``conn``.

    ``exclude_tables`` names tables (bare, or schema-qualified) left out with
    everything on them; by default the runner's own ``schema_migrations``.
    The schemas section lists every user schema, so a stray schema shows up
    even when it is not read.

    Works in autocommit mode or inside the caller's transaction. All queries
    see one snapshot and leave no trace: settings pinned for deparsing are
    undone by rolling back (a savepoint, inside the caller's transaction).
    """
    if conn.info.server_version < MIN_SERVER_VERSION:
        raise CannotRun(
            f"catalog comparison needs PostgreSQL {MIN_SERVER_VERSION // 10000} or newer; "
            f"the server is version {conn.info.server_version}"
        )
    system = [s for s in schemas if s.startswith("pg_") or s == "information_schema"]
    if system:
        raise CannotRun(f"system schemas are never compared: {', '.join(system)}")
    params = {"schemas": list(schemas), "excluded": list(exclude_tables)}
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
        rows = _fetch_all(conn, params)
    return _build_catalog(rows)


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


# --- comparing ---------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """One way ``actual`` differs from ``expected``.

    ``expected`` / ``actual`` hold JSON-able detail: the whole object for
    "missing" / "unexpected" (the absent side is None), the attribute's two
    values for "changed".
    """

    kind: str
    name: str
    change: Change
    expected: Any = None
    actual: Any = None
    attribute: str | None = None

    def describe(self) -> str:
        """One line for a person: what, where, and what was expected."""
        where = f"{self.kind} {self.name}"
        if self.change == "missing":
            return f"{where}: missing{_summary(self.kind, self.expected)}"
        if self.change == "unexpected":
            return f"{where}: unexpected{_summary(self.kind, self.actual)}"
        special = _SPECIAL_MESSAGES.get((self.kind, self.attribute or ""))
        message = special(self.expected, self.actual) if special else None
        if message:
            return f"{where}: {message}"
        return f"{where}: {self.attribute} changed{_contrast(self.expected, self.actual)}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for ``--json`` output."""
        return {
            "kind": self.kind,
            "name": self.name,
            "change": self.change,
            "attribute": self.attribute,
            "expected": self.expected,
            "actual": self.actual,
            "message": self.describe(),
        }


# Field name -> the attribute named in a Difference (and so in messages).
_ATTRIBUTE_LABELS = {
    "not_null": "nullability",
    "not_null_constraint": "not-null constraint",
    "not_null_validated": "not-null constraint valid",
    "validated": "valid",
    "enabled": "enabled state",
}

# A change to the key attribute implies a change to these; report the cause
# only (an INVALID index is also not ready; a column that lost NOT NULL also
# lost its not-null constraint; a column that lost identity lost its sequence).
_IMPLIED: dict[str, dict[str, str]] = {
    "column": {
        "not_null_constraint": "not_null",
        "not_null_validated": "not_null",
        "sequence": "identity",
    },
    "index": {"ready": "valid"},
}

_NOT_COMPARED = {"name", "columns", "position"}


def diff_catalogs(expected: Catalog, actual: Catalog) -> list[Difference]:
    """Every difference between two catalogs, containers first, then by name.

    Contents of a missing or unexpected schema, table or view are not listed
    one by one: the container's difference says it all. Column order is
    checked once per table, on the columns both sides have.
    """
    differences: list[Difference] = []
    kinds = [kind for kind in KINDS if kind != "column"]
    # What is on one side only, for every kind up front: an index must know
    # whether its materialized view is gone, and views come after indexes.
    gone = {kind: set(expected.objects(kind)) ^ set(actual.objects(kind)) for kind in kinds}
    for kind in kinds:
        wanted, found = expected.objects(kind), actual.objects(kind)
        for name in sorted(wanted.keys() | found.keys()):
            if _inside_gone(kind, name, wanted.get(name) or found[name], gone):
                continue
            if name not in found:
                differences.append(
                    Difference(kind, name, "missing", expected=_to_json(wanted[name]))
                )
            elif name not in wanted:
                differences.append(
                    Difference(kind, name, "unexpected", actual=_to_json(found[name]))
                )
            else:
                before, after = wanted[name], found[name]
                differences.extend(_compare(kind, name, before, after))
                if isinstance(before, Table) and isinstance(after, Table):
                    differences.extend(_compare_columns(before, after))
    return sorted(differences, key=_report_order)


def _inside_gone(kind: str, name: str, item: CatalogObject, gone: Mapping[str, set[str]]) -> bool:
    if kind not in ("schema", "extension") and any(
        name.startswith(f"{schema}.") for schema in gone.get("schema", ())
    ):
        return True
    table = getattr(item, "table", None)
    return table is not None and (table in gone.get("table", ()) or table in gone.get("view", ()))


def _compare(kind: str, name: str, wanted: Any, found: Any) -> list[Difference]:
    wanted_json, found_json = _to_json(wanted), _to_json(found)
    changed = [
        key
        for key in wanted_json
        if key not in _NOT_COMPARED and wanted_json[key] != found_json[key]
    ]
    implied = _IMPLIED.get(kind, {})
    return [
        Difference(
            kind,
            name,
            "changed",
            expected=wanted_json[key],
            actual=found_json[key],
            attribute=_ATTRIBUTE_LABELS.get(key, key.replace("_", " ")),
        )
        for key in changed
        if implied.get(key) not in changed
    ]


def _compare_columns(wanted: Table, found: Table) -> list[Difference]:
    differences: list[Difference] = []
    wanted_columns = {column.name: column for column in wanted.columns}
    found_columns = {column.name: column for column in found.columns}
    for column in wanted.columns:
        qualified = f"{wanted.name}.{column.name}"
        if column.name not in found_columns:
            differences.append(
                Difference("column", qualified, "missing", expected=_to_json(column))
            )
        else:
            differences.extend(_compare("column", qualified, column, found_columns[column.name]))
    for column in found.columns:
        if column.name not in wanted_columns:
            differences.append(
                Difference(
                    "column", f"{wanted.name}.{column.name}", "unexpected", actual=_to_json(column)
                )
            )
    # Order is judged on the shared columns only: a missing or extra column
    # shifts every later position, which is not a second, separate problem.
    shared_wanted = [c.name for c in wanted.columns if c.name in found_columns]
    shared_found = [c.name for c in found.columns if c.name in wanted_columns]
    if shared_wanted != shared_found:
        differences.append(
            Difference(
                "table",
                wanted.name,
                "changed",
                expected=[c.name for c in wanted.columns],
                actual=[c.name for c in found.columns],
                attribute="column order",
            )
        )
    return differences


def _report_order(difference: Difference) -> tuple[int, str, str, str]:
    return (
        KINDS.index(difference.kind),
        difference.name,
        difference.change,
        difference.attribute or "",
    )


# --- messages ----------------------------------------------------------------


# A short hint of what a missing or unexpected object is, so the line says
# what was found without dumping the whole record.
_SUMMARIES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "column": lambda d: f"{d['type']}{' NOT NULL' if d['not_null'] else ''}",
    "constraint": lambda d: str(d["definition"]),
    "index": lambda d: str(d["definition"]),
    "trigger": lambda d: str(d["definition"]),
    "table": lambda d: f"{len(d['columns'])} columns",
    "extension": lambda d: f"version {d['version']}",
    "type": lambda d: str(d["kind"]),
    "view": lambda d: str(d["kind"]),
    "function": lambda d: str(d["kind"]),
}


def _summary(kind: str, detail: Any) -> str:
    render = _SUMMARIES.get(kind)
    return f" ({render(detail)})" if render and isinstance(detail, Mapping) else ""


def _invalid_index(expected: Any, actual: Any) -> str | None:
    if expected is True and actual is False:
        return "INVALID (a failed CREATE INDEX CONCURRENTLY); expected a valid index"
    return None


def _not_valid_constraint(expected: Any, actual: Any) -> str | None:
    if expected is True and actual is False:
        return "NOT VALID (existing rows were never checked); expected a validated constraint"
    return None


def _not_valid_not_null(expected: Any, actual: Any) -> str | None:
    if expected is True and actual is False:
        return (
            "NOT NULL constraint is NOT VALID (existing rows were never checked); "
            "expected a validated one"
        )
    return None


def _nullability(expected: Any, actual: Any) -> str:
    def show(not_null: Any) -> str:
        return "NOT NULL" if not_null else "nullable"

    return f"nullability changed: expected {show(expected)}, found {show(actual)}"


def _enabled_state(expected: Any, actual: Any) -> str:
    return f"{actual}; expected {expected}"


_SPECIAL_MESSAGES: dict[tuple[str, str], Callable[[Any, Any], str | None]] = {
    ("index", "valid"): _invalid_index,
    ("constraint", "valid"): _not_valid_constraint,
    ("column", "not-null constraint valid"): _not_valid_not_null,
    ("column", "nullability"): _nullability,
    ("trigger", "enabled state"): _enabled_state,
}


def _contrast(expected: Any, actual: Any) -> str:
    # Returns the tail of "<attribute> changed...": ": expected X, found Y",
    # or " at line N: ..." for multi-line text such as function bodies.
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        # Show only the keys that differ: "increment=1" beats a whole dict.
        keys = [k for k in expected if expected.get(k) != actual.get(k)]
        return (
            f": expected {', '.join(f'{k}={_show(expected.get(k))}' for k in keys)}, "
            f"found {', '.join(f'{k}={_show(actual.get(k))}' for k in keys)}"
        )
    if (
        isinstance(expected, str)
        and isinstance(actual, str)
        and ("\n" in expected or "\n" in actual)
    ):
        line, wanted_line, found_line = _first_different_line(expected, actual)
        return f" at line {line}: expected {wanted_line!r}, found {found_line!r}"
    return f": expected {_show(expected)}, found {_show(actual)}"


def _first_different_line(expected: str, actual: str) -> tuple[int, str, str]:
    wanted_lines, found_lines = expected.splitlines(), actual.splitlines()
    for number in range(max(len(wanted_lines), len(found_lines))):
        wanted_line = wanted_lines[number].strip() if number < len(wanted_lines) else "<end>"
        found_line = found_lines[number].strip() if number < len(found_lines) else "<end>"
        if wanted_line != found_line:
            return number + 1, wanted_line, found_line
    # Only whitespace at line ends differs: point at the first raw difference.
    return 1, expected, actual


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "(" + ", ".join(_show(item) for item in value) + ")"
    return str(value)


# --- canonical JSON ----------------------------------------------------------


def _to_json(value: Any) -> Any:
    """Dataclasses to dicts and tuples to lists, recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [_to_json(item) for item in value]
    return value


def _from_json(target: Any, value: Any) -> Any:
    """Rebuild ``target`` (a record type, tuple, optional or scalar) from JSON."""
    origin = get_origin(target)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [arg for arg in get_args(target) if arg is not type(None)]
        return _from_json(inner, value)
    if origin is tuple:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        item_type = get_args(target)[0]
        return tuple(_from_json(item_type, item) for item in value)
    if dataclasses.is_dataclass(target) and isinstance(target, type):
        if not isinstance(value, Mapping):
            raise TypeError(f"{target.__name__}: expected an object, got {type(value).__name__}")
        hints = get_type_hints(target)
        names = [f.name for f in fields(target)]
        unknown = set(value) - set(names)
        if unknown:
            raise ValueError(f"{target.__name__}: unknown keys {sorted(unknown)}")
        return target(**{name: _from_json(hints[name], value[name]) for name in names})
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if target in (str, int, bool, float) and not isinstance(value, target):
        raise TypeError(f"expected {target.__name__}, got {value!r}")
    if target is int and isinstance(value, bool):
        raise TypeError(f"expected int, got {value!r}")
    return value
