"""Compare databases by their catalog, never by SQL text.

Two databases have the same schema when Postgres itself describes them the
same way. ``read_catalog`` asks pg_catalog (and Postgres' own deparsers:
``format_type``, ``pg_get_expr``, ``pg_get_constraintdef``, ``pg_get_indexdef``,
``pg_get_triggerdef``, ``pg_get_viewdef``) for every object in scope and
returns a ``Catalog``: plain frozen records with a canonical JSON form, so a
catalog can be stored as an artifact, fingerprinted, and compared later.
``diff_catalogs`` lists what differs, one ``Difference`` per fact, in a
deterministic order; ``Difference.describe()`` says it in one line.

Which schemas are read: every user schema by default, that is every schema
but ``pg_*`` and ``information_schema``. Never read: Rollgate's own
bookkeeping schema ``rollgate`` (``db.history.HISTORY_SCHEMA``), and a
``public.schema_migrations`` with Rollgate's checksum columns (the legacy
location of that history). A project narrows the scope with a
``db.config.CatalogScope`` (``[catalog]`` in ``rollgate.toml``): ``schemas``
to read only those, ``exclude`` to leave tables out, bare or qualified, with
everything on them. Callers pass it as ``read_catalog(conn, scope=...)``.

Objects an extension created (``pg_depend`` deptype ``e``: its types,
functions, tables, sequences, views, schemas) are left out wherever they
live; the extensions themselves are recorded, with version and schema, so
``CREATE EXTENSION`` or ``ALTER EXTENSION ... UPDATE`` is still a difference.

What a catalog records, and what it leaves out on purpose:

* Recorded, per schema read: the schemas, types (enum, domain, composite, range),
  tables (kind, persistence, partitioning, inheritance, RLS flags, storage
  options), columns in order, constraints, indexes (including whether they are
  valid and ready), triggers (including whether they are enabled), functions
  and procedures, free-standing sequences, views and materialized views, row
  security policies, and comments; database-wide: extensions and their
  versions. A function records what matters for security as fields of its
  own: SECURITY DEFINER, its SET options (``proconfig``, e.g. search_path),
  volatility, language, strictness, leakproofness and its body.
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

The package's layers: ``records`` (the dataclasses and ``Catalog``),
``reader`` (the pg_catalog queries), ``diff`` (``diff_catalogs`` and its
messages) and ``codec`` (the canonical JSON form). Import from
``db.catalog``; the layout behind it may change.

The reader targets PostgreSQL 18 (``db.throwaway.TARGET_POSTGRES_MAJOR``) and
also reads 14 to 17, but compare catalogs of one major only: deparsed text and
PG18's named NOT NULL constraints differ between majors.
"""

from __future__ import annotations

from db.catalog.diff import Difference, diff_catalogs
from db.catalog.reader import EVERY_SCHEMA, MIN_SERVER_VERSION, read_catalog
from db.catalog.records import (
    CATALOG_FORMAT,
    KINDS,
    Catalog,
    CatalogObject,
    Change,
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

__all__ = [
    "CATALOG_FORMAT",
    "EVERY_SCHEMA",
    "KINDS",
    "MIN_SERVER_VERSION",
    "Catalog",
    "CatalogObject",
    "Change",
    "Column",
    "Constraint",
    "Difference",
    "Extension",
    "Function",
    "Index",
    "Policy",
    "Schema",
    "SequenceDef",
    "SequenceOptions",
    "Table",
    "Trigger",
    "TypeDef",
    "View",
    "diff_catalogs",
    "read_catalog",
]
