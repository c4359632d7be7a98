"""What a migration file may contain, decided on PostgreSQL's own parse tree.

Rollgate runs every migration file in a transaction it owns (or, with
``-- rollgate: transaction=false``, statement by statement in autocommit) and
writes the history row itself. A file that steers the transaction, runs
server-level commands, streams data or touches Rollgate's own schema breaks
that promise, so loading refuses it, naming ``file:line:column`` and the fix,
before a single statement has run:

* transaction control (BEGIN, COMMIT, END, ROLLBACK, SAVEPOINT, RELEASE,
  PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED), in any file: a sqitch-style
  ``ROLLBACK;`` at the end of a verify script would silently undo the
  migration that history then records as applied;
* statements that PostgreSQL refuses inside a transaction block
  (``PreventInTransactionBlock``), in a transactional file: they need their
  own ``transaction=false`` file;
* statements that change the server rather than the schema (databases,
  tablespaces, ALTER SYSTEM), in any file;
* ``COPY`` from/to the client (there is no data stream), a program or a
  server-side file, in any file;
* ``LOCK`` in a ``transaction=false`` file, where it could hold nothing;
* ``DISCARD ALL``, which would drop the runner's migration lock;
* any reference to the ``rollgate`` schema, however deeply nested.

Dynamic SQL (``DO`` blocks, ``EXECUTE``) is invisible here; the runner checks
at run time that its transaction and history are intact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from db.errors import MigrationFileError
from db.history import HISTORY_SCHEMA

if TYPE_CHECKING:
    from db.sqlfile import SqlScript, Statement

TRANSACTION_FIX = (
    "remove BEGIN/COMMIT: Rollgate runs each migration in its own transaction; "
    "use -- rollgate: transaction=false for statements that cannot run in one"
)
NO_TRANSACTION_FIX = (
    "it cannot run inside a transaction block; move it to a migration of its own whose "
    "files start with the line -- rollgate: transaction=false"
)
SERVER_LEVEL_FIX = (
    "it changes the database server, not the schema; Rollgate never runs it from a "
    "migration, even with transaction=false (do it by hand or in the infrastructure code)"
)
HISTORY_FIX = (
    f"no migration may touch schema {HISTORY_SCHEMA!r}: it holds Rollgate's own history "
    "(use `rollgate db` commands to inspect or change it)"
)

# Statements whose first keyword is one of these are plain queries or DML: they
# can never be transaction control, COPY, VACUUM and the like, so unless their
# text could name the rollgate schema they need no parse tree of their own.
# Building pglast's Python tree costs ~1.5 s per MB of SQL, which a 50 MB data
# migration cannot afford; this keeps its load linear and fast.
_PLAIN_FIRST_WORDS = frozenset({"insert", "update", "delete", "select", "values", "merge", "with"})

_TRANSACTION_KINDS = {
    "TRANS_STMT_BEGIN": "BEGIN",
    "TRANS_STMT_START": "START TRANSACTION",
    "TRANS_STMT_COMMIT": "COMMIT",
    "TRANS_STMT_ROLLBACK": "ROLLBACK",
    "TRANS_STMT_SAVEPOINT": "SAVEPOINT",
    "TRANS_STMT_RELEASE": "RELEASE SAVEPOINT",
    "TRANS_STMT_ROLLBACK_TO": "ROLLBACK TO SAVEPOINT",
    "TRANS_STMT_PREPARE": "PREPARE TRANSACTION",
    "TRANS_STMT_COMMIT_PREPARED": "COMMIT PREPARED",
    "TRANS_STMT_ROLLBACK_PREPARED": "ROLLBACK PREPARED",
}

# Fields that hold lists of column names, never a qualified object name; a
# column called "rollgate" first in such a list is no reference to the schema.
_COLUMN_LIST_FIELDS = frozenset(
    {"keys", "including", "fk_attrs", "pk_attrs", "fk_del_set_cols", "attlist", "columns",
     "colnames", "cols", "vals", "exclusions", "aliascolnames", "ctecolnames", "indexParams"}
)  # fmt: skip

_REG_TYPES = frozenset(
    {"regclass", "regproc", "regprocedure", "regoper", "regoperator", "regtype",
     "regnamespace", "regcollation", "regconfig", "regdictionary"}
)  # fmt: skip


@dataclass(frozen=True)
class Refusal:
    """Why one statement may not be in a migration, and where (a character offset)."""

    offset: int
    rule: str
    message: str


def check_migration_script(script: SqlScript) -> None:
    """Raise ``MigrationFileError`` naming ``file:line:column`` for the first refusal."""
    for refusal in migration_refusals(script):
        line, column = script.line_of(refusal.offset)
        raise MigrationFileError(
            f"{script.path}:{line}:{column}: {refusal.message}",
            details={
                "file": str(script.path),
                "line": line,
                "column": column,
                "rule": refusal.rule,
            },
        )


def migration_refusals(script: SqlScript) -> Iterator[Refusal]:
    """Every statement of ``script`` that a migration may not contain, in file order."""
    for statement in script.statements:
        if not needs_parse_tree(statement.text):
            continue
        yield from statement_refusals(statement, transactional=script.transactional)


def needs_parse_tree(text: str) -> bool:
    """False only for a statement that provably cannot break a rule (see _PLAIN_FIRST_WORDS).

    The statement starts at its first token (pglast's split guarantees it). Its
    text must also not mention ``rollgate`` in any spelling the parser could fold
    to it: unquoted upper case, a Unicode-escaped identifier (``U&"..."``) or an
    escaped string constant (``E'\\x72...'``, for ``SET search_path``).
    """
    if not _starts_with_plain_word(text):
        return True
    lowered = text.lower()
    return HISTORY_SCHEMA in lowered or "u&" in lowered or "\\" in lowered


def _starts_with_plain_word(text: str) -> bool:
    head = text[:8].lower()
    for word in _PLAIN_FIRST_WORDS:
        if head.startswith(word):
            after = text[len(word) : len(word) + 1]
            return not (after.isalnum() or after in ("_", "$"))
    return False


def statement_refusals(statement: Statement, *, transactional: bool) -> Iterator[Refusal]:
    """The rules one statement breaks, judged on its own parse tree."""
    from pglast import parser

    (raw,) = parser.parse_sql(statement.text)
    node: Any = raw.stmt
    kind = type(node).__name__
    start = statement.offset

    def refuse(rule: str, message: str, offset: int = start) -> Refusal:
        return Refusal(offset=offset, rule=rule, message=message)

    if kind == "TransactionStmt":
        name = _TRANSACTION_KINDS.get(node.kind.name, node.kind.name)
        yield refuse("transaction-control", f"{name} in a migration file; {TRANSACTION_FIX}")
        return
    server_level = _server_level_name(node, kind)
    if server_level:
        yield refuse("server-level", f"{server_level} in a migration file; {SERVER_LEVEL_FIX}")
        return
    if kind == "CopyStmt":
        yield refuse("copy", _copy_message(node))
        return
    if kind == "DiscardStmt" and node.target.name == "DISCARD_ALL":
        yield refuse(
            "discard-all",
            "DISCARD ALL in a migration file; it would reset the runner's session and "
            "release its migration lock; remove it",
        )
        return
    if transactional:
        outside = _needs_no_transaction_block(node, kind)
        if outside:
            yield refuse("needs-transaction-false", f"{outside}: {NO_TRANSACTION_FIX}")
    elif kind == "LockStmt":
        yield refuse(
            "lock-without-transaction",
            "LOCK in a transaction=false file: each statement there commits on its own, so "
            "the lock would be released at once; drop the LOCK or make the file transactional",
        )
    for offset in _history_references(raw, statement):
        yield refuse("rollgate-schema", HISTORY_FIX, offset)
        return


def _server_level_name(node: Any, kind: str) -> str | None:
    simple = {
        "CreatedbStmt": "CREATE DATABASE",
        "DropdbStmt": "DROP DATABASE",
        "AlterSystemStmt": "ALTER SYSTEM",
        "CreateTableSpaceStmt": "CREATE TABLESPACE",
        "DropTableSpaceStmt": "DROP TABLESPACE",
        "AlterTableSpaceOptionsStmt": "ALTER TABLESPACE",
        "AlterTableMoveAllStmt": "ALTER TABLE ALL IN TABLESPACE",
    }
    if kind in simple:
        return simple[kind]
    if kind == "AlterDatabaseStmt" and any(
        option.defname == "tablespace" for option in node.options or ()
    ):
        return "ALTER DATABASE ... SET TABLESPACE"
    if kind == "RenameStmt" and node.renameType.name in ("OBJECT_DATABASE", "OBJECT_TABLESPACE"):
        return f"ALTER {node.renameType.name.removeprefix('OBJECT_')} ... RENAME"
    return None


def _copy_message(node: Any) -> str:
    direction = "FROM" if node.is_from else "TO"
    if node.is_program:
        return (
            f"COPY ... {direction} PROGRAM in a migration file: it runs a program on the "
            "database server, which RDS refuses; load data with INSERT ... SELECT instead"
        )
    if node.filename is not None:
        return (
            f"COPY ... {direction} '{node.filename}' in a migration file: it reads or writes "
            "a file on the database server, which RDS refuses; use INSERT ... SELECT instead"
        )
    stream = "STDIN" if node.is_from else "STDOUT"
    return (
        f"COPY ... {direction} {stream} in a migration file: Rollgate sends each statement "
        "on its own, so there is no data stream; write the rows as INSERT ... VALUES instead"
    )


def _needs_no_transaction_block(node: Any, kind: str) -> str | None:
    """The statement's name if PostgreSQL refuses it inside a transaction block.

    The callers of ``PreventInTransactionBlock`` in PostgreSQL 18, as far as the
    raw parse tree can tell (CLUSTER or REINDEX of a partitioned table are also
    refused by the server, but nothing here knows which tables are partitioned).
    """
    check = _NO_TRANSACTION_CHECKS.get(kind)
    return check(node) if check else None


def _vacuum(node: Any) -> str | None:
    return "VACUUM" if node.is_vacuumcmd else None  # ANALYZE alone may run in one


def _reindex(node: Any) -> str | None:
    if "concurrently" in {param.defname for param in node.params or ()}:
        return "REINDEX ... CONCURRENTLY"
    object_kind = node.kind.name.removeprefix("REINDEX_OBJECT_")
    return f"REINDEX {object_kind}" if object_kind in ("SCHEMA", "SYSTEM", "DATABASE") else None


def _detach_concurrently(node: Any) -> str | None:
    for command in node.cmds or ():
        partition: Any = getattr(command, "def_", None)
        if type(partition).__name__ == "PartitionCmd" and partition.concurrent:
            return "ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY"
    return None


def _create_subscription(node: Any) -> str | None:
    options = {option.defname: option for option in _options(node)}
    if _false(options.get("create_slot")) or _false(options.get("connect")):
        return None
    return "CREATE SUBSCRIPTION (it creates a replication slot)"


def _alter_subscription(node: Any) -> str | None:
    options = {option.defname: option for option in _options(node)}
    subkind = node.kind.name.removeprefix("ALTER_SUBSCRIPTION_")
    refreshes = subkind == "REFRESH" or (
        subkind in ("SET_PUBLICATION", "ADD_PUBLICATION", "DROP_PUBLICATION")
        and not _false(options.get("refresh"))
    )
    return "ALTER SUBSCRIPTION ... (refreshing the publication)" if refreshes else None


_NO_TRANSACTION_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "VacuumStmt": _vacuum,
    "IndexStmt": lambda node: "CREATE INDEX CONCURRENTLY" if node.concurrent else None,
    "DropStmt": lambda node: "DROP INDEX CONCURRENTLY" if node.concurrent else None,
    "ReindexStmt": _reindex,
    "AlterTableStmt": _detach_concurrently,
    "ClusterStmt": lambda node: "CLUSTER without a table name" if node.relation is None else None,
    "CreateSubscriptionStmt": _create_subscription,
    "DropSubscriptionStmt": lambda _node: "DROP SUBSCRIPTION (it drops a replication slot)",
    "AlterSubscriptionStmt": _alter_subscription,
}


def _options(node: Any) -> tuple[Any, ...]:
    options = getattr(node, "options", None) or ()
    return tuple(o for o in options if type(o).__name__ == "DefElem")


def _false(option: Any) -> bool:
    if option is None or option.arg is None:
        return False
    value: Any = getattr(option.arg, "sval", None) or getattr(option.arg, "boolval", None)
    if hasattr(value, "boolval"):
        value = value.boolval
    return str(value).lower() in ("false", "off", "0", "no")


def _history_references(raw: Any, statement: Statement) -> Iterator[int]:
    """Character offsets (in the file) of every reference to the rollgate schema."""
    from pglast.visitors import Visitor

    found: list[int] = []

    def at(node: Any) -> None:
        # pglast reports locations as character offsets into the statement text.
        location = getattr(node, "location", None)
        if not isinstance(location, int) or location < 0:
            location = 0
        found.append(statement.offset + location)

    class HistoryReferences(Visitor):
        def visit(self, ancestors: Any, node: Any) -> None:
            if _names_history_schema(node):
                at(node)

    HistoryReferences()(raw)
    yield from found


def _names_history_schema(node: Any) -> bool:
    """Does this one node (not its children) name the rollgate schema?"""
    return any(check(node) for check in _HISTORY_CHECKS)


def _schema_members(node: Any) -> bool:
    # RangeVar and CREATE SCHEMA (schemaname), SET SCHEMA (newschema), IMPORT
    # FOREIGN SCHEMA ... INTO (local_schema).
    if any(
        getattr(node, member, None) == HISTORY_SCHEMA
        for member in ("schemaname", "newschema", "local_schema")
    ):
        return True
    # CREATE SCHEMA AUTHORIZATION rollgate names the schema after the role.
    authrole = getattr(node, "authrole", None)
    return (
        type(node).__name__ == "CreateSchemaStmt"
        and node.schemaname is None
        and getattr(authrole, "rolename", None) == HISTORY_SCHEMA
    )


def _schema_objects(node: Any) -> bool:
    # DROP/ALTER/COMMENT ON/GRANT ON SCHEMA rollgate, GRANT ... IN SCHEMA rollgate.
    kind = type(node).__name__
    if _object_type(node) != "OBJECT_SCHEMA" and not (
        kind == "GrantStmt" and node.targtype.name == "ACL_TARGET_ALL_IN_SCHEMA"
    ):
        return False
    names = [getattr(node, member, None) for member in ("subname", "newname")]
    names += _strings(getattr(node, "objects", None)) + _strings(getattr(node, "object", None))
    return HISTORY_SCHEMA in names


def _schema_options(node: Any) -> bool:
    # CREATE EXTENSION ... SCHEMA rollgate, ALTER DEFAULT PRIVILEGES IN SCHEMA rollgate.
    return (
        type(node).__name__ == "DefElem"
        and node.defname in ("schema", "schemas")
        and HISTORY_SCHEMA in _strings(node.arg)
    )


def _search_path(node: Any) -> bool:
    # SET search_path (also inside ALTER ROLE/FUNCTION ... SET) and set_config().
    kind = type(node).__name__
    if kind == "VariableSetStmt" and (node.name or "").lower() == "search_path":
        return any(_search_path_names_history(value) for value in _constants(node.args))
    if kind == "FuncCall" and _last_name(node.funcname) == "set_config":
        constants = _constants(node.args)
        return constants[:1] == ["search_path"] and any(
            _search_path_names_history(value) for value in constants[1:2]
        )
    return False


def _reg_cast(node: Any) -> bool:
    # 'rollgate.schema_migrations'::regclass and the like.
    if type(node).__name__ != "TypeCast" or _last_name(node.typeName.names) not in _REG_TYPES:
        return False
    return any(
        value.strip().split(".")[0].strip('"') == HISTORY_SCHEMA
        for value in _constants((node.arg,))
    )


def _qualified_names(node: Any) -> bool:
    # A qualified name is a list of String nodes whose first part is the schema
    # (functions, types, operators, DROP ... lists); a column reference needs
    # three parts (schema.table.column), as two are table.column.
    minimum = 3 if type(node).__name__ == "ColumnRef" else 2
    for member in node:
        if member in _COLUMN_LIST_FIELDS:
            continue
        value = getattr(node, member)
        if _is_qualified_history_name(value, minimum=minimum):
            return True
        if isinstance(value, tuple) and any(
            _is_qualified_history_name(item, minimum=2) for item in value
        ):
            return True
    return False


_HISTORY_CHECKS: tuple[Callable[[Any], bool], ...] = (
    _schema_members,
    _schema_objects,
    _schema_options,
    _search_path,
    _reg_cast,
    _qualified_names,
)


def _object_type(node: Any) -> str | None:
    for member in ("objtype", "removeType", "renameType", "objectType"):
        value = getattr(node, member, None)
        if value is not None and hasattr(value, "name"):
            return str(value.name)
    return None


def _strings(value: Any) -> list[str]:
    """The svals of a String node or of a tuple of them (one level deep)."""
    if value is None:
        return []
    items = value if isinstance(value, tuple) else (value,)
    return [item.sval for item in items if type(item).__name__ == "String"]


def _constants(values: Any) -> list[str]:
    """String constants among ``values`` (A_Const nodes), in order."""
    result = []
    for value in values or ():
        constant = getattr(value, "val", None) if type(value).__name__ == "A_Const" else None
        if constant is not None and type(constant).__name__ == "String":
            result.append(constant.sval)
    return result


def _search_path_names_history(value: str) -> bool:
    return any(part.strip().strip('"') == HISTORY_SCHEMA for part in value.split(","))


def _last_name(names: Any) -> str | None:
    strings = _strings(names)
    return strings[-1] if strings else None


def _is_qualified_history_name(value: Any, *, minimum: int) -> bool:
    if not isinstance(value, tuple) or len(value) < minimum:
        return False
    first = value[0]
    return type(first).__name__ == "String" and first.sval == HISTORY_SCHEMA
