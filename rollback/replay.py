"""Replaying writes made since a snapshot onto its restored copy, so a restore loses nothing.

The restored database is the target release's schema with the snapshot's
data. The slot opened at the snapshot's moment holds every row change made on
the live database since. ``replay_changes`` carries them over:

* **In commit order, exactly once.** Consecutive source transactions are
  replayed in groups (up to 100 transactions or 2000 changes), each group
  one target transaction that also records its last commit LSN in
  ``rollgate.replay_progress``; a replay that crashes and runs again skips
  what already landed, so it converges. Inserts are upserts on the primary
  key as a second line of defence.
* **Fast, unless something is refused.** A group runs one statement per
  change with no savepoints, pipelined (no round trip per statement). If
  any change in it is refused, or an UPDATE finds no row, the group is
  rolled back and replayed the careful way: one target transaction per
  source transaction, a savepoint per change.
* **Mapped onto the target's schema.** Columns the target lacks are dropped
  (and counted, per table and column); tables the target lacks are reported;
  values are cast to the target's column types by the server.
* **Skipping the migrations' own changes.** Their transactions are known from
  Rollgate's history (``skip_xids``); so are Rollgate's own tables.
* **Triggers stay quiet.** User triggers on the replayed tables are disabled
  while replaying (the decoded rows already carry what the source's triggers
  wrote); constraints, foreign keys included, stay enforced.
* **What cannot be carried back is listed, never silently lost:** a row the
  target's constraints reject, an UPDATE of a row that is gone whose TOASTed
  values were not in the change, a change to a table without a primary key
  that cannot be matched to a row. On the careful path each change is
  replayed in a savepoint, so one refusal does not cost the rest of its
  transaction.
* **Sequences move forward.** Replayed rows carry their ids; afterwards every
  sequence owned by a replayed column is set past the highest value, so the
  next insert on the restored database cannot collide.
"""

from __future__ import annotations

import copy
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from core.postgres import connect
from core.progress import Progress, silent
from db.history import HISTORY_SCHEMA
from rollback.decoding import (
    PINNED_SETTINGS,
    UNCHANGED,
    Change,
    Column,
    Transaction,
    decode,
    flush_wal,
)

_PROGRESS_DDL = f"""
CREATE TABLE IF NOT EXISTS {HISTORY_SCHEMA}.replay_progress (
    slot text PRIMARY KEY,
    commit_lsn pg_lsn NOT NULL,
    transactions bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


# A group of source transactions is replayed as one target transaction:
# bounded, so a group that must be redone the careful way stays cheap.
GROUP_TRANSACTIONS = 100
GROUP_CHANGES = 2000


class _Refused(Exception):
    """A change that cannot be carried onto the target; its message says why."""


@dataclass(frozen=True)
class TargetTable:
    columns: dict[str, str]  # name -> format_type
    primary_key: tuple[str, ...]
    identity_always: frozenset[str]
    # Statement text by shape (kind, columns): composing SQL per change was
    # most of the client's time; the same text also lets psycopg prepare it.
    statements: dict[tuple[Any, ...], str] = field(default_factory=dict, compare=False, repr=False)

    def statement(self, conn: psycopg.Connection[Any], shape: tuple[Any, ...], build: Any) -> str:
        """The text of ``build()`` (a ``sql.Composable``), composed once per ``shape``."""
        text = self.statements.get(shape)
        if text is None:
            text = build().as_string(conn)
            self.statements[shape] = text
        return text


@dataclass
class TableOutcome:
    replayed: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # reason -> rows
    dropped_columns: Counter[str] = field(default_factory=Counter)  # column -> rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "replayed": self.replayed,
            "not_replayed": dict(self.refused),
            "columns_not_carried": dict(self.dropped_columns),
        }


@dataclass
class ReplayReport:
    slot: str
    transactions: int = 0
    skipped_transactions: int = 0
    already_replayed: int = 0
    tables: dict[str, TableOutcome] = field(default_factory=lambda: defaultdict(TableOutcome))
    missing_tables: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rows_replayed(self) -> int:
        return sum(t.replayed for t in self.tables.values())

    @property
    def lossless(self) -> bool:
        """RPO 0: every change carried back, whole."""
        return not self.missing_tables and all(
            not t.refused and not t.dropped_columns for t in self.tables.values()
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "rpo_zero": self.lossless,
            "transactions": self.transactions,
            "skipped_transactions": self.skipped_transactions,
            "already_replayed": self.already_replayed,
            "rows_replayed": self.rows_replayed,
            "rows_per_second": round(self.rows_replayed / self.seconds, 1)
            if self.seconds
            else None,
            "tables": {name: outcome.to_dict() for name, outcome in sorted(self.tables.items())},
            "tables_not_in_target": dict(self.missing_tables),
            "seconds": round(self.seconds, 3),
        }


def replay_changes(
    live_dsn: str,
    slot: str,
    target_dsn: str,
    *,
    skip_xids: Collection[int] = (),
    upto_lsn: str | None = None,
    live_conn: psycopg.Connection[Any] | None = None,
    group_transactions: int = GROUP_TRANSACTIONS,
    progress: Progress = silent,
) -> ReplayReport:
    """Replay what ``slot`` retained on the live database onto ``target_dsn``.

    ``live_conn``: an open autocommit session on the live database to decode
    through (a database closed to new connections still serves it).
    ``group_transactions``: source transactions committed together on the
    target (see ``_replay_group``); 1 commits each on its own.
    """
    started = time.monotonic()
    report = ReplayReport(slot)
    skip = set(skip_xids)
    with connect(target_dsn, application_name="rollgate-replay") as target:
        target.execute(f"CREATE SCHEMA IF NOT EXISTS {HISTORY_SCHEMA}")
        target.execute(_PROGRESS_DDL)
        done_lsn = _replayed_upto(target, slot)
        tables = read_target_tables(target)
        target.execute(
            "SELECT " + ", ".join("set_config(%s, %s, false)" for _ in PINNED_SETTINGS),
            [item for pair in PINNED_SETTINGS.items() for item in pair],
        )
        silenced = _silence_user_triggers(target, tables)
        try:
            with _decoding_session(live_dsn, live_conn) as live:
                flushed = flush_wal(live)
                upto_lsn = upto_lsn or flushed
                live.autocommit = False
                group: list[Transaction] = []
                group_changes = 0
                reported = 0
                for transaction in decode(live, slot, upto_lsn=upto_lsn):
                    if done_lsn is not None and _lsn(transaction.commit_lsn) <= _lsn(done_lsn):
                        report.already_replayed += 1
                        continue
                    group.append(transaction)
                    group_changes += len(transaction.changes)
                    if len(group) >= group_transactions or group_changes >= GROUP_CHANGES:
                        _replay_group(target, group, tables, report, slot, skip=skip)
                        group, group_changes = [], 0
                    if report.transactions - reported >= 1000:
                        reported = report.transactions
                        progress(f"replayed {report.transactions} transactions")
                if group:
                    _replay_group(target, group, tables, report, slot, skip=skip)
                live.rollback()
                live.autocommit = True
            _advance_sequences(target, {name for name in report.tables if name in tables})
        finally:
            _restore_user_triggers(target, silenced)
    report.seconds = time.monotonic() - started
    return report


@contextmanager
def _decoding_session(
    live_dsn: str, given: psycopg.Connection[Any] | None
) -> Iterator[psycopg.Connection[Any]]:
    if given is not None:
        yield given  # the caller's to close
        return
    with connect(live_dsn, application_name="rollgate-decode") as live:
        yield live


def read_target_tables(conn: psycopg.Connection[Any]) -> dict[str, TargetTable]:
    """Every user table of the target: its columns (with types), primary key, identities."""
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
               a.attidentity = 'a',
               coalesce(a.attnum = ANY(i.indkey::int2[]), false)
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
        WHERE c.relkind IN ('r', 'p') AND n.nspname !~ '^pg_'
          AND n.nspname NOT IN ('information_schema', %s)
        ORDER BY 1, a.attnum
        """,
        (HISTORY_SCHEMA,),
    ).fetchall()
    columns: dict[str, dict[str, str]] = defaultdict(dict)
    keys: dict[str, list[str]] = defaultdict(list)
    always: dict[str, set[str]] = defaultdict(set)
    for table, column, type_name, identity_always, in_key in rows:
        columns[table][column] = type_name
        if in_key:
            keys[table].append(column)
        if identity_always:
            always[table].add(column)
    return {
        table: TargetTable(cols, tuple(keys[table]), frozenset(always[table]))
        for table, cols in columns.items()
    }


class _FastPathFailed(Exception):
    """A change of the group needs the careful path (a refusal, or an error)."""


def _replay_group(
    target: psycopg.Connection[Any],
    group: list[Transaction],
    tables: dict[str, TargetTable],
    report: ReplayReport,
    slot: str,
    *,
    skip: set[int],
) -> None:
    """Replay ``group`` (consecutive source transactions) in one target transaction.

    The fast path: every change as one statement, no savepoints, one commit
    for the whole group, whose last commit LSN is recorded with it (so a
    crash leaves either the whole group or none of it, and a rerun skips
    exactly what landed). Savepoints cost two round trips per change and a
    commit per source transaction costs one more each: most of a replay's
    time. When anything in the group is refused or fails, the group is
    rolled back, the report restored, and each of its transactions replayed
    the careful way, one commit each, a savepoint per change, so one refused
    row costs that row only.
    """
    before = copy.deepcopy((report.tables, report.missing_tables))
    counts = (report.transactions, report.skipped_transactions)
    try:
        with target.transaction(), target.pipeline() as pipeline:
            updates: list[psycopg.Cursor[Any]] = []
            for transaction in group:
                if transaction.xid in skip:
                    report.skipped_transactions += 1
                    continue
                for change in transaction.changes:
                    _replay_change(target, change, tables, report, careful=False, updates=updates)
                report.transactions += 1
            _record_progress(target, slot, group[-1].commit_lsn, len(group))
            pipeline.sync()
            if any(cursor.rowcount == 0 for cursor in updates):
                # An UPDATE found no row: the careful path decides whether
                # the change can be inserted instead, or must be listed.
                raise _FastPathFailed("an updated row is not in the target")
        return
    except (_FastPathFailed, _Refused, psycopg.Error):
        if target.broken:
            raise
    report.tables, report.missing_tables = before
    report.transactions, report.skipped_transactions = counts
    for transaction in group:
        if transaction.xid in skip:
            report.skipped_transactions += 1
            _record_progress(target, slot, transaction.commit_lsn)
            continue
        _replay_transaction(target, transaction, tables, report, slot)
        report.transactions += 1


def _replay_transaction(
    target: psycopg.Connection[Any],
    transaction: Transaction,
    tables: dict[str, TargetTable],
    report: ReplayReport,
    slot: str,
) -> None:
    with target.transaction():
        for change in transaction.changes:
            _replay_change(target, change, tables, report, careful=True)
        _record_progress(target, slot, transaction.commit_lsn)


def _replay_change(
    target: psycopg.Connection[Any],
    change: Change,
    tables: dict[str, TargetTable],
    report: ReplayReport,
    *,
    careful: bool,
    updates: list[psycopg.Cursor[Any]] | None = None,
) -> None:
    """Apply one change; ``careful``: in a savepoint, refusals counted, never raised.

    Not careful (in a pipeline): an UPDATE's cursor goes to ``updates``, for
    the caller to check its row count once the pipeline is synced.
    """
    if change.schema == HISTORY_SCHEMA:
        return  # Rollgate's own bookkeeping is not the app's data
    table = tables.get(change.qualified)
    if table is None:
        report.missing_tables[change.qualified] += 1
        return
    outcome = report.tables[change.qualified]
    refusal = _plan_refusal(change, table)
    if refusal:
        if not careful:
            raise _FastPathFailed(refusal)
        outcome.refused[refusal] += 1
        return
    for column in change.new:
        # Only a value is lost: a NULL in a column the target lacks says nothing.
        if column.name not in table.columns and column.value is not None:
            outcome.dropped_columns[column.name] += 1
    if not careful:
        _apply(target, change, table, updates=updates)
        outcome.replayed += 1
        return
    try:
        with target.transaction():  # a savepoint: one refusal costs one row
            applied = _apply(target, change, table)
    except _Refused as exc:
        outcome.refused[str(exc)] += 1
        return
    except psycopg.Error as exc:
        reason = (exc.diag.message_primary or type(exc).__name__).split("\n")[0]
        outcome.refused[f"rejected by the target: {reason}"] += 1
        return
    if applied:
        outcome.replayed += 1
    else:
        outcome.refused[
            "the row is gone from the target and the change lacks its unchanged TOASTed values"
        ] += 1


def _plan_refusal(change: Change, table: TargetTable) -> str | None:
    if change.kind in ("update", "delete") and change.no_tuple_data:
        return "the source table has no replica identity: the row cannot be found"
    if change.kind in ("update", "delete") and not table.primary_key:
        return "the target table has no primary key: the row cannot be matched"
    if change.kind in ("update", "delete"):
        key_source = change.old_key or change.new
        names = {c.name for c in key_source}
        if not set(table.primary_key) <= names:
            return "the change does not carry the target's primary key"
    return None


def _apply(
    target: psycopg.Connection[Any],
    change: Change,
    table: TargetTable,
    *,
    updates: list[psycopg.Cursor[Any]] | None = None,
) -> bool:
    """Apply ``change``; False when its row is gone and it lacks TOASTed values.

    With ``updates`` (pipeline mode, results not read yet) an UPDATE is only
    sent, its cursor appended: the caller checks that it found its row.
    """
    identifier = sql.Identifier(change.schema, change.table)
    if change.kind == "truncate":
        target.execute(sql.SQL("TRUNCATE {}").format(identifier))
        return True
    if change.kind == "delete":
        statement = table.statement(
            target,
            ("delete",),
            lambda: sql.SQL("DELETE FROM {} WHERE {}").format(identifier, _key_condition(table)),
        )
        target.execute(statement, _key_params(change.old_key, table))
        return True
    present = [c for c in change.new if c.name in table.columns and c.value is not UNCHANGED]
    if change.kind == "update":
        key_params = _key_params(change.old_key or change.new, table)
        # The key is only SET when the change moved it (test_decoding then
        # prints an old key); an identity GENERATED ALWAYS column cannot be
        # SET at all, and an unmoved key needs no SET.
        settable = [
            c
            for c in present
            if (change.old_key or c.name not in table.primary_key)
            and c.name not in table.identity_always
        ]
        if change.old_key and any(c.name in table.identity_always for c in change.old_key):
            raise _Refused("the change moved an identity GENERATED ALWAYS key")
        if settable:
            statement = table.statement(
                target,
                ("update", *(c.name for c in settable)),
                lambda: sql.SQL("UPDATE {} SET {} WHERE {}").format(
                    identifier,
                    sql.SQL(", ").join(
                        sql.SQL("{} = {}").format(sql.Identifier(c.name), _cast(c.name, table))
                        for c in settable
                    ),
                    _key_condition(table),
                ),
            )
            cursor = target.execute(statement, [c.value for c in settable] + key_params)
        else:
            statement = table.statement(
                target,
                ("select",),
                lambda: sql.SQL("SELECT 1 FROM {} WHERE {}").format(
                    identifier, _key_condition(table)
                ),
            )
            cursor = target.execute(statement, key_params)
        if updates is not None:
            updates.append(cursor)
            return True
        if cursor.rowcount > 0:
            return True
        if any(c.value is UNCHANGED for c in change.new if c.name in table.columns):
            return False
    statement = table.statement(
        target,
        ("insert", *(c.name for c in present)),
        lambda: _insert_statement(identifier, [c.name for c in present], table),
    )
    target.execute(statement, [c.value for c in present])
    return True


def _insert_statement(
    identifier: sql.Identifier, present: list[str], table: TargetTable
) -> sql.Composable:
    names = sql.SQL(", ").join(sql.Identifier(name) for name in present)
    values = sql.SQL(", ").join(_cast(name, table) for name in present)
    overriding = (
        sql.SQL(" OVERRIDING SYSTEM VALUE")
        if any(name in table.identity_always for name in present)
        else sql.SQL("")
    )
    statement = sql.SQL("INSERT INTO {} ({}){} VALUES ({})").format(
        identifier, names, overriding, values
    )
    keyed = table.primary_key and set(table.primary_key) <= set(present)
    if keyed:
        updates = [name for name in present if name not in table.primary_key]
        conflict = sql.SQL(" ON CONFLICT ({}) DO ").format(
            sql.SQL(", ").join(sql.Identifier(k) for k in table.primary_key)
        )
        if updates:
            statement += (
                conflict
                + sql.SQL("UPDATE SET ")
                + sql.SQL(", ").join(
                    sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(name), sql.Identifier(name))
                    for name in updates
                )
            )
        else:
            statement += conflict + sql.SQL("NOTHING")
    return statement


def _key_condition(table: TargetTable) -> sql.Composed:
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(name), _cast(name, table))
        for name in table.primary_key
    )


def _key_params(columns: Iterable[Column], table: TargetTable) -> list[Any]:
    by_name = {c.name: c for c in columns}
    return [by_name[name].value for name in table.primary_key]


def _cast(name: str, table: TargetTable) -> sql.Composable:
    # The target's type, not the source's: a migration may have changed it,
    # and the server's own cast decides whether the value still fits.
    return sql.SQL("%s::{}").format(sql.SQL(table.columns[name]))


def _replayed_upto(target: psycopg.Connection[Any], slot: str) -> str | None:
    row = target.execute(
        f"SELECT commit_lsn::text FROM {HISTORY_SCHEMA}.replay_progress WHERE slot = %s", (slot,)
    ).fetchone()
    return None if row is None else str(row[0])


def _record_progress(
    target: psycopg.Connection[Any], slot: str, commit_lsn: str, transactions: int = 1
) -> None:
    target.execute(
        f"INSERT INTO {HISTORY_SCHEMA}.replay_progress AS p (slot, commit_lsn, transactions) "
        "VALUES (%s, %s::pg_lsn, %s) ON CONFLICT (slot) DO UPDATE SET "
        "commit_lsn = EXCLUDED.commit_lsn, transactions = p.transactions + EXCLUDED.transactions, "
        "updated_at = now()",
        (slot, commit_lsn, transactions),
    )


def _silence_user_triggers(
    target: psycopg.Connection[Any], tables: dict[str, TargetTable]
) -> list[str]:
    rows = target.execute(
        "SELECT DISTINCT n.nspname || '.' || c.relname, n.nspname, c.relname FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE NOT t.tgisinternal AND t.tgenabled <> 'D'"
    ).fetchall()
    silenced = []
    for qualified, schema, name in rows:
        if qualified in tables:
            target.execute(
                sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier(schema, name))
            )
            silenced.append(qualified)
    return silenced


def _restore_user_triggers(target: psycopg.Connection[Any], silenced: list[str]) -> None:
    if target.closed or target.broken:
        return
    for qualified in silenced:
        schema, name = qualified.split(".", 1)
        target.execute(
            sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(sql.Identifier(schema, name))
        )


def _advance_sequences(target: psycopg.Connection[Any], tables: set[str]) -> None:
    rows = target.execute(
        "SELECT n.nspname || '.' || c.relname, a.attname, pg_get_serial_sequence("
        "  format('%I.%I', n.nspname, c.relname), a.attname) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "WHERE c.relkind IN ('r', 'p')"
    ).fetchall()
    for table, column, sequence in rows:
        if sequence is None or table not in tables:
            continue
        schema, name = table.split(".", 1)
        target.execute(
            sql.SQL(
                "SELECT setval({seq}, greatest((SELECT max({col}) FROM {tab}), "
                "(SELECT last_value FROM {seq_ident})), true)"
            ).format(
                seq=sql.Literal(sequence),
                col=sql.Identifier(column),
                tab=sql.Identifier(schema, name),
                seq_ident=sql.SQL(sequence),
            )
        )


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)
