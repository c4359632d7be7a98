"""The records of a catalog: one frozen dataclass per object kind, and ``Catalog``.

Every record is plain data (strings, numbers, booleans, tuples of those or of
other records), so a catalog has one canonical JSON form (``db.catalog.codec``)
and a fingerprint that depends on nothing but what Postgres described.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, Union

from core.errors import CannotRun
from db.catalog.codec import _from_json, _to_json

# Bumped whenever the shape of Catalog.to_dict() changes, so an old stored
# artifact is refused rather than compared field-by-field with a new one.
CATALOG_FORMAT = 1

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
    """A user schema that was read (see ``read_catalog`` for which are)."""

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
