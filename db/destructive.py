"""Destructive reverts: what a migration's down file throws away.

A down file that drops what its own up created is doing its job; that is what
a down is. It is still *destructive*: whatever was written into those tables
and columns after the up ran is gone once the down has run. The rollback
planner needs to know exactly that to choose between running a down file and
restoring a snapshot, so this module answers it from the SQL alone::

    classify_reverts(migrations) -> [DestructiveRevert, ...]

Each entry is one object a down file drops or one statement that destroys
rows (``TRUNCATE``, ``DELETE``, ``UPDATE``, ``ALTER COLUMN ... TYPE``), with
the table and columns affected, whether it loses data, and whether it is
*expected*: the same migration's up created (or wrote) what the down removes.
``db check`` uses ``expected`` to take squawk's drop findings out of the lint
result (see ``REVERT_RULES``); a drop of something the up did not create stays
a lint finding.

Both files are read with PostgreSQL's own parser (pglast). Names resolve as
the server would resolve them: schema-qualified as written, unqualified ones
through the file's ``search_path`` (``public`` unless the file sets it), so
``orders`` in one file and ``public.orders`` in the other are one table.
Statements hidden in ``DO`` blocks or functions are not seen.

Pure: no database, no squawk, nothing printed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from db.migrations import Migration
from db.sqlfile import SqlScript

DEFAULT_SEARCH_PATH = ("public",)

# squawk rules that a down file trips by doing its job: each is reported only
# when the dropped object was *not* created by the migration's own up.
REVERT_RULES = frozenset(
    {
        "ban-drop-table",
        "ban-drop-column",
        "ban-drop-constraint",
        "ban-drop-function",
        "ban-drop-type",
        "ban-drop-view",
        "ban-drop-sequence",
        "ban-drop-schema",
    }
)

# Kinds of revert, as they appear in reports.
DROP_TABLE = "drop table"
DROP_COLUMN = "drop column"
DROP_INDEX = "drop index"
DROP_CONSTRAINT = "drop constraint"
DROP_TYPE = "drop type"
DROP_FUNCTION = "drop function"
DROP_VIEW = "drop view"
DROP_MATERIALIZED_VIEW = "drop materialized view"
DROP_SEQUENCE = "drop sequence"
DROP_SCHEMA = "drop schema"
TRUNCATE = "truncate"
DELETE = "delete"
UPDATE = "update"
ALTER_COLUMN_TYPE = "alter column type"


@dataclass(frozen=True)
class DestructiveRevert:
    """One thing a down file destroys.

    ``table`` is the schema-qualified table whose data is affected (None for
    objects that belong to no table: a schema, a type, a function), and
    ``columns`` the affected columns; empty columns with a table mean the
    whole table. ``target`` names the dropped object itself (an index, a
    constraint, a type). ``loses_data`` is False for drops that only remove
    schema (an index, a view, a constraint, a function).
    """

    migration: str
    kind: str
    table: str | None
    columns: tuple[str, ...] = ()
    target: str = ""
    expected: bool = False
    loses_data: bool = True
    file: Path = field(default=Path(), compare=False)
    line: int = field(default=0, compare=False)
    end_line: int = field(default=0, compare=False)

    def describe(self) -> str:
        """``0002_add_ai_model: drop column public.execution_tasks.ai_model (...)``."""
        if self.columns and self.table:
            what = ", ".join(f"{self.table}.{column}" for column in self.columns)
        elif self.kind in (DROP_TABLE, TRUNCATE, DELETE, UPDATE):
            what = self.table or self.target
        else:
            what = self.target + (f" on {self.table}" if self.table else "")
        origin = "its up created it" if self.expected else "NOT created by its up"
        if self.kind in (TRUNCATE, DELETE, UPDATE, ALTER_COLUMN_TYPE):
            origin = "reverses its up" if self.expected else "rows its up did not write"
        loss = "loses data written since the up" if self.loses_data else "schema only"
        return f"{self.migration}: {self.kind} {what} ({origin}; {loss})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "migration": self.migration,
            "kind": self.kind,
            "table": self.table,
            "columns": list(self.columns),
            "target": self.target,
            "expected": self.expected,
            "loses_data": self.loses_data,
            "file": str(self.file),
            "line": self.line,
        }


def classify_reverts(migrations: Sequence[Migration]) -> list[DestructiveRevert]:
    """Every destructive statement in the down files of ``migrations``, in file order."""
    reverts: list[DestructiveRevert] = []
    for migration in migrations:
        reverts.extend(classify_down(migration.label, migration.up, migration.down))
    return reverts


def destroys_data(reverts: Iterable[DestructiveRevert]) -> dict[str, list[DestructiveRevert]]:
    """The reverts that lose data, grouped by migration label (in the given order)."""
    grouped: dict[str, list[DestructiveRevert]] = {}
    for revert in reverts:
        if revert.loses_data:
            grouped.setdefault(revert.migration, []).append(revert)
    return grouped


def affected_data(reverts: Iterable[DestructiveRevert]) -> dict[str, tuple[str, ...] | None]:
    """Table -> the columns whose data the reverts lose, or None for the whole table.

    Only reverts that lose data count; a table dropped or truncated anywhere
    counts as whole, whatever else touched its columns.
    """
    affected: dict[str, tuple[str, ...] | None] = {}
    for revert in reverts:
        if not revert.loses_data or revert.table is None:
            continue
        if not revert.columns or revert.kind in (DROP_TABLE, TRUNCATE, DELETE):
            affected[revert.table] = None
        elif revert.table not in affected or affected[revert.table] is not None:
            before = affected.get(revert.table) or ()
            affected[revert.table] = tuple(dict.fromkeys((*before, *revert.columns)))
    return affected


# --- What an up file creates ---------------------------------------------------------


@dataclass
class _Created:
    """Objects one up file creates or writes, by qualified name."""

    tables: set[str] = field(default_factory=set)
    columns: set[tuple[str, str]] = field(default_factory=set)
    retyped: set[tuple[str, str]] = field(default_factory=set)
    constraints: set[tuple[str, str]] = field(default_factory=set)
    indexes: dict[str, str] = field(default_factory=dict)  # index -> its table
    views: set[str] = field(default_factory=set)
    sequences: set[str] = field(default_factory=set)
    types: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    schemas: set[str] = field(default_factory=set)
    written: set[str] = field(default_factory=set)  # tables with rows inserted or updated

    def names(self) -> set[str]:
        """Every qualified name created, whatever its kind (for search_path lookups)."""
        return (
            self.tables
            | set(self.indexes)
            | self.views
            | self.sequences
            | self.types
            | self.functions
        )

    def owns_rows_of(self, table: str) -> bool:
        """The up created ``table`` or wrote rows into it."""
        return table in self.tables or table in self.written


def _created_by(up: SqlScript) -> _Created:
    from pglast import ast

    created = _Created()
    path = _SearchPath()
    for node, _statement in _parsed(up):
        if path.update(node):
            continue
        if isinstance(node, ast.CreateStmt):
            _note_table(node, path, created)
        elif isinstance(node, ast.AlterTableStmt) and node.relation is not None:
            _note_alter_table(node, path, created)
        elif isinstance(node, ast.InsertStmt | ast.UpdateStmt):
            relation = node.relation
            created.written.add(path.relation(relation, created))
        else:
            _note_other(node, path, created)
    return created


def _note_table(node: Any, path: _SearchPath, created: _Created) -> None:
    from pglast import ast

    table = path.new_relation(node.relation)
    created.tables.add(table)
    for element in node.tableElts or ():
        if isinstance(element, ast.ColumnDef) and element.colname:
            created.columns.add((table, element.colname))
            for constraint in element.constraints or ():
                if isinstance(constraint, ast.Constraint) and constraint.conname:
                    created.constraints.add((table, constraint.conname))
        elif isinstance(element, ast.Constraint) and element.conname:
            created.constraints.add((table, element.conname))


def _note_alter_table(node: Any, path: _SearchPath, created: _Created) -> None:
    from pglast import enums

    table = path.relation(node.relation, created)
    for command in node.cmds or ():
        subtype = command.subtype
        if subtype == enums.AlterTableType.AT_AddColumn and command.def_ is not None:
            created.columns.add((table, command.def_.colname))
        elif subtype == enums.AlterTableType.AT_AddConstraint and command.def_ is not None:
            if command.def_.conname:
                created.constraints.add((table, command.def_.conname))
        elif subtype == enums.AlterTableType.AT_AlterColumnType and command.name:
            created.retyped.add((table, command.name))


def _note_other(node: Any, path: _SearchPath, created: _Created) -> None:
    from pglast import ast, enums

    if isinstance(node, ast.CreateTableAsStmt) and node.into is not None:
        name = path.new_relation(node.into.rel)
        is_view = node.objtype == enums.ObjectType.OBJECT_MATVIEW
        (created.views if is_view else created.tables).add(name)
    elif isinstance(node, ast.ViewStmt):
        created.views.add(path.new_relation(node.view))
    elif isinstance(node, ast.CreateSeqStmt):
        created.sequences.add(path.new_relation(node.sequence))
    elif isinstance(node, ast.IndexStmt) and node.idxname:
        table = path.relation(node.relation, created)
        # An index always lives in its table's schema.
        created.indexes[f"{table.split('.', 1)[0]}.{node.idxname}"] = table
    elif isinstance(node, ast.CreateEnumStmt | ast.CreateRangeStmt):
        created.types.add(path.qualify_new_names(node.typeName))
    elif isinstance(node, ast.CompositeTypeStmt):
        created.types.add(path.new_relation(node.typevar))
    elif isinstance(node, ast.CreateDomainStmt):
        created.types.add(path.qualify_new_names(node.domainname))
    elif isinstance(node, ast.CreateFunctionStmt):
        created.functions.add(path.qualify_new_names(node.funcname))
    elif isinstance(node, ast.CreateSchemaStmt) and node.schemaname:
        created.schemas.add(node.schemaname)


# --- What a down file destroys ---------------------------------------------------------


def classify_down(label: str, up: SqlScript, down: SqlScript) -> list[DestructiveRevert]:
    """The destructive statements of one migration's ``down``, judged against its ``up``."""
    from pglast import ast

    reader = _DownReader(label, down.path, _created_by(up))
    for node, statement in _parsed(down):
        if reader.path.update(node):
            continue
        reader.start = statement.line
        reader.end = statement.line + statement.text.rstrip().count("\n")
        if isinstance(node, ast.DropStmt):
            reader.drop(node)
        elif isinstance(node, ast.AlterTableStmt) and node.relation is not None:
            reader.alter_table(node)
        elif isinstance(node, ast.TruncateStmt | ast.DeleteStmt | ast.UpdateStmt):
            reader.rows(node)
    return reader.found


class _DownReader:
    """Walks one down file, collecting a ``DestructiveRevert`` per destroyed thing."""

    def __init__(self, label: str, file: Path, created: _Created) -> None:
        self.label = label
        self.file = file
        self.created = created
        self.path = _SearchPath()
        self.found: list[DestructiveRevert] = []
        self.start = 0
        self.end = 0

    def add(
        self,
        kind: str,
        table: str | None,
        *,
        columns: tuple[str, ...] = (),
        target: str = "",
        expected: bool,
        loses_data: bool,
    ) -> None:
        self.found.append(
            DestructiveRevert(
                migration=self.label,
                kind=kind,
                table=table,
                columns=columns,
                target=target or table or "",
                expected=expected,
                loses_data=loses_data,
                file=self.file,
                line=self.start,
                end_line=self.end,
            )
        )

    def _table(self, relation: Any) -> str:
        return self.path.relation(relation, self.created)

    def alter_table(self, node: Any) -> None:
        from pglast import enums

        if node.objtype != enums.ObjectType.OBJECT_TABLE:
            return
        created = self.created
        table = self._table(node.relation)
        for command in node.cmds or ():
            subtype, name = command.subtype, command.name
            if not name:
                continue
            if subtype == enums.AlterTableType.AT_DropColumn:
                self.add(
                    DROP_COLUMN,
                    table,
                    columns=(name,),
                    target=f"{table}.{name}",
                    expected=(table, name) in created.columns or table in created.tables,
                    loses_data=True,
                )
            elif subtype == enums.AlterTableType.AT_DropConstraint:
                self.add(
                    DROP_CONSTRAINT,
                    table,
                    target=name,
                    expected=(table, name) in created.constraints or table in created.tables,
                    loses_data=False,
                )
            elif subtype == enums.AlterTableType.AT_AlterColumnType:
                # A type change back can truncate or fail to convert what was written.
                self.add(
                    ALTER_COLUMN_TYPE,
                    table,
                    columns=(name,),
                    target=f"{table}.{name}",
                    expected=(table, name) in created.retyped,
                    loses_data=True,
                )

    def rows(self, node: Any) -> None:
        from pglast import ast

        if isinstance(node, ast.TruncateStmt):
            for relation in node.relations or ():
                table = self._table(relation)
                self.add(
                    TRUNCATE, table, expected=self.created.owns_rows_of(table), loses_data=True
                )
            return
        table = self._table(node.relation)
        if isinstance(node, ast.DeleteStmt):
            self.add(DELETE, table, expected=self.created.owns_rows_of(table), loses_data=True)
            return
        columns = tuple(
            dict.fromkeys(
                target.name
                for target in node.targetList or ()
                if isinstance(target, ast.ResTarget) and target.name
            )
        )
        self.add(
            UPDATE,
            table,
            columns=columns,
            expected=self.created.owns_rows_of(table),
            loses_data=True,
        )

    def drop(self, node: Any) -> None:
        from pglast import enums

        kinds = enums.ObjectType
        created = self.created
        cascade = node.behavior == enums.DropBehavior.DROP_CASCADE
        # removeType -> (kind, the set of what the up created, loses data)
        simple: dict[Any, tuple[str, Collection[str], bool]] = {
            kinds.OBJECT_TABLE: (DROP_TABLE, created.tables, True),
            kinds.OBJECT_FOREIGN_TABLE: (DROP_TABLE, created.tables, True),
            kinds.OBJECT_VIEW: (DROP_VIEW, created.views, False),
            kinds.OBJECT_MATVIEW: (DROP_MATERIALIZED_VIEW, created.views, False),
            # A sequence's current value is data: recreated, it starts over.
            kinds.OBJECT_SEQUENCE: (DROP_SEQUENCE, created.sequences, True),
            # CASCADE drops every column of the type with it.
            kinds.OBJECT_TYPE: (DROP_TYPE, created.types, cascade),
            kinds.OBJECT_DOMAIN: (DROP_TYPE, created.types, cascade),
            kinds.OBJECT_FUNCTION: (DROP_FUNCTION, created.functions, False),
            kinds.OBJECT_PROCEDURE: (DROP_FUNCTION, created.functions, False),
            kinds.OBJECT_ROUTINE: (DROP_FUNCTION, created.functions, False),
            kinds.OBJECT_INDEX: (DROP_INDEX, created.indexes, False),
        }
        for obj in node.objects or ():
            names = _object_names(obj)
            if not names:
                continue
            if node.removeType == kinds.OBJECT_SCHEMA:
                schema = names[-1]
                self.add(
                    DROP_SCHEMA,
                    None,
                    target=schema,
                    expected=schema in created.schemas,
                    loses_data=True,
                )
                continue
            if node.removeType not in simple:
                continue
            kind, made, loses_data = simple[node.removeType]
            name = self.path.resolve_names(names, created)
            if kind == DROP_TABLE:
                self.add(kind, name, expected=name in made, loses_data=loses_data)
            else:
                self.add(
                    kind,
                    created.indexes.get(name),
                    target=name,
                    expected=name in made,
                    loses_data=loses_data,
                )


# --- Names and search_path ----------------------------------------------------------------


class _SearchPath:
    """The ``search_path`` in force at one point of a file, and name resolution under it."""

    def __init__(self) -> None:
        self.schemas: tuple[str, ...] = DEFAULT_SEARCH_PATH

    def update(self, node: Any) -> bool:
        """Follow ``SET [LOCAL] search_path``, ``RESET search_path`` and pg_dump's
        ``SELECT pg_catalog.set_config('search_path', ...)``; True if it was one."""
        from pglast import ast, enums

        if isinstance(node, ast.SelectStmt):
            value = _set_config_search_path(node)
            if value is None:
                return False
            self.schemas = _schemas_in([value])
            return True
        if not isinstance(node, ast.VariableSetStmt) or node.name != "search_path":
            return False
        if node.kind == enums.VariableSetKind.VAR_SET_VALUE:
            self.schemas = _schemas_in([_constant_text(arg) for arg in node.args or ()])
        else:  # RESET, SET ... TO DEFAULT
            self.schemas = DEFAULT_SEARCH_PATH
        return True

    def qualify_new(self, schema: str | None, name: str) -> str:
        """Where ``CREATE`` puts ``name``: its schema, or the first one on the path."""
        return f"{schema or self.schemas[0]}.{name}"

    def new_relation(self, relation: Any) -> str:
        """Where ``CREATE`` puts the relation a ``RangeVar`` names."""
        return self.qualify_new(relation.schemaname, relation.relname)

    def relation(self, relation: Any, created: _Created) -> str:
        """The qualified relation a ``RangeVar`` refers to (see ``resolve``)."""
        return self.resolve(relation.schemaname, relation.relname, created)

    def qualify_new_names(self, names: Any) -> str:
        parts = _strings(names)
        return self.qualify_new(parts[-2] if len(parts) > 1 else None, parts[-1])

    def resolve(self, schema: str | None, name: str, created: _Created) -> str:
        """The qualified object ``name`` refers to: the first schema on the path
        where the up created it, else the first schema on the path."""
        if schema:
            return f"{schema}.{name}"
        known = created.names()
        for candidate in self.schemas:
            if f"{candidate}.{name}" in known:
                return f"{candidate}.{name}"
        return f"{self.schemas[0]}.{name}"

    def resolve_names(self, names: Sequence[str], created: _Created) -> str:
        return self.resolve(names[-2] if len(names) > 1 else None, names[-1], created)


def _schemas_in(values: Sequence[str | None]) -> tuple[str, ...]:
    """The schemas a search_path setting names, ``$user`` left out (no such schema
    in migrations); an empty path falls back to the default, so that creations
    still have a schema to land in."""
    schemas = tuple(
        part.strip().strip('"')
        for value in values
        if value is not None
        for part in value.split(",")
        if part.strip() and part.strip().strip('"') != "$user"
    )
    return schemas or DEFAULT_SEARCH_PATH


def _set_config_search_path(node: Any) -> str | None:
    """The value of ``SELECT [pg_catalog.]set_config('search_path', value, ...)``."""
    from pglast import ast

    targets: list[Any] = list(node.targetList or ())
    if len(targets) != 1 or not isinstance(targets[0], ast.ResTarget):
        return None
    call = targets[0].val
    if not isinstance(call, ast.FuncCall) or _strings(call.funcname)[-1:] != ["set_config"]:
        return None
    args: list[Any] = list(call.args or ())
    if len(args) < 2 or _constant_text(args[0]) != "search_path":
        return None
    return _constant_text(args[1])


def _parsed(script: SqlScript) -> Iterable[tuple[Any, Any]]:
    from pglast import parse_sql

    for statement in script.statements:
        for raw in parse_sql(statement.text):
            yield raw.stmt, statement


def _object_names(obj: Any) -> list[str]:
    """The dotted name parts of one object of a ``DROP`` statement."""
    from pglast import ast

    if isinstance(obj, ast.String):
        return [str(obj.sval)]
    if isinstance(obj, ast.TypeName):
        return _strings(obj.names)
    if isinstance(obj, ast.ObjectWithArgs):
        return _strings(obj.objname)
    if isinstance(obj, tuple | list):
        return _strings(obj)
    return []


def _strings(nodes: Any) -> list[str]:
    from pglast import ast

    return [str(node.sval) for node in nodes or () if isinstance(node, ast.String)]


def _constant_text(node: Any) -> str | None:
    from pglast import ast

    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.String):
        return str(node.val.sval)
    return None
