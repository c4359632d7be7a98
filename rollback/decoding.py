"""Row changes since a snapshot, read from its logical replication slot.

The slot uses PostgreSQL's ``test_decoding`` plugin (see ``rollback.snapshot``
for why not pgoutput). Its output is one text line per change::

    BEGIN 756
    table public."Odd Name": INSERT: id[integer]:1 "we""ird"[text]:'it''s' tags[text[]]:null
    table public.t: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2 big[text]:unc...
    table public.t: DELETE: id[integer]:3
    table public.nopk: DELETE: (no-tuple-data)
    table public.t: TRUNCATE: (no-flags)
    COMMIT 756

``parse_change`` turns a line into a ``Change``: identifiers unquoted as
``quote_identifier`` quoted them, types read with nested brackets (``text[]``),
values as the text a type's output function produced (quoted strings with
doubled quotes, bit strings, bare numbers and booleans), ``None`` for SQL
NULL and ``UNCHANGED`` for a TOASTed value an UPDATE did not touch.

Values are text in the *decoding session's* output format, so the decoding
session pins DateStyle, TimeZone, IntervalStyle, extra_float_digits and
bytea_output: the replaying session reads them back with the same pins.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from core.errors import CheckFailed

# Output format of values, pinned for decoding and for replay alike.
PINNED_SETTINGS = {
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}


class _Unchanged:
    """A TOASTed value the change did not touch (test_decoding: unchanged-toast-datum)."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Any = _Unchanged()


class DecodeError(CheckFailed):
    """A line of decoded output could not be understood."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    value: Any  # str, None (NULL) or UNCHANGED


@dataclass(frozen=True)
class Change:
    schema: str
    table: str
    kind: str  # insert | update | delete | truncate
    new: tuple[Column, ...] = ()
    old_key: tuple[Column, ...] = ()  # DELETE's key, or UPDATE's old key when it changed
    no_tuple_data: bool = False  # a DELETE/UPDATE on a table with no replica identity

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass
class Transaction:
    xid: int
    commit_lsn: str
    changes: list[Change] = field(default_factory=list)


def parse_change(line: str) -> Change:
    """One ``table ...`` line of test_decoding output as a ``Change``."""
    reader = _Reader(line)
    reader.expect("table ")
    schema = reader.identifier()
    reader.expect(".")
    table = reader.identifier()
    reader.expect(": ")
    kind = reader.until(":").lower()
    reader.expect(": ")
    if kind == "truncate":
        return Change(schema, table, "truncate")
    if kind not in ("insert", "update", "delete"):
        raise DecodeError(f"unknown change kind {kind!r} in: {line[:200]}")
    if reader.rest() == "(no-tuple-data)":
        return Change(schema, table, kind, no_tuple_data=True)
    old_key: tuple[Column, ...] = ()
    if kind == "update" and reader.peek("old-key: "):
        reader.expect("old-key: ")
        old_key = tuple(reader.columns(stop="new-tuple: "))
        reader.expect("new-tuple: ")
    columns = tuple(reader.columns())
    if kind == "delete":
        return Change(schema, table, kind, old_key=columns)
    return Change(schema, table, kind, new=columns, old_key=old_key)


def flush_wal(conn: psycopg.Connection[Any]) -> str:
    """Make every commit so far durable, so decoding can see it; returns the flushed LSN.

    Logical decoding reads only WAL that is flushed to disk. Under
    ``synchronous_commit = off`` (a common tuning, and the throwaway servers'
    setting) the last commits can sit unflushed for a few hundred
    milliseconds, and a replay would silently miss them. A transaction that
    writes WAL and commits synchronously flushes the WAL up to its own commit
    record, and with it every commit before. (Taking an xid alone is not
    enough: a transaction that wrote no WAL commits asynchronously anyway.)
    A transactional logical message is the smallest such write, and it
    touches no table; ``decode`` skips messages.
    """
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = on")
        conn.execute("SELECT pg_logical_emit_message(true, 'rollgate', 'flush')")
    # Read after the commit: the flush position now covers every earlier
    # commit (the write position read inside could still lag behind them).
    row = conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


def decode(
    conn: psycopg.Connection[Any],
    slot: str,
    *,
    upto_lsn: str | None = None,
    batch: int = 5000,
) -> Iterator[Transaction]:
    """Committed transactions retained by ``slot``, in commit order; nothing is consumed.

    Peeks (never gets), so a replay that crashes can read the same changes
    again; the caller drops or advances the slot once the changes are safe.
    Rows are streamed through a server-side cursor: memory stays flat however
    many changes the slot holds.
    """
    if conn.autocommit:
        raise DecodeError("decode needs a connection in a transaction (a server-side cursor)")
    conn.execute(
        "SELECT " + ", ".join("set_config(%s, %s, true)" for _ in PINNED_SETTINGS),
        [item for pair in PINNED_SETTINGS.items() for item in pair],
    )
    query = sql.SQL(
        "SELECT lsn::text, xid::text::bigint, data "
        "FROM pg_logical_slot_peek_changes({}, {}, NULL, 'include-xids', '1', "
        "'skip-empty-xacts', '1')"
    ).format(sql.Literal(slot), sql.Literal(upto_lsn) if upto_lsn else sql.NULL)
    current: Transaction | None = None
    with conn.cursor(name=f"rollgate_decode_{slot}") as cursor:
        cursor.itersize = batch
        cursor.execute(query)
        for lsn, xid, data in cursor:
            if data.startswith("BEGIN"):
                current = Transaction(int(xid), "")
            elif data.startswith("COMMIT"):
                # A transaction with no row change (only logical messages,
                # such as flush_wal's) has nothing to replay.
                if current is not None and current.changes:
                    current.commit_lsn = lsn
                    yield current
                current = None
            elif data.startswith("table "):
                if current is None:  # a change outside BEGIN/COMMIT never happens; be loud
                    raise DecodeError(f"change outside a transaction at {lsn}: {data[:200]}")
                current.changes.append(parse_change(data))
            # anything else (messages) is not a row change: ignored


class _Reader:
    """A cursor over one line of test_decoding output."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self, literal: str) -> bool:
        return self.text.startswith(literal, self.pos)

    def expect(self, literal: str) -> None:
        if not self.peek(literal):
            raise DecodeError(
                f"expected {literal!r} at column {self.pos + 1} of: {self.text[:200]}"
            )
        self.pos += len(literal)

    def rest(self) -> str:
        return self.text[self.pos :]

    def until(self, stop: str) -> str:
        end = self.text.find(stop, self.pos)
        if end < 0:
            raise DecodeError(
                f"expected {stop!r} after column {self.pos + 1} of: {self.text[:200]}"
            )
        found = self.text[self.pos : end]
        self.pos = end
        return found

    def identifier(self) -> str:
        if self.peek('"'):
            return self._quoted('"')
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in '.:[ "':
            self.pos += 1
        if start == self.pos:
            raise DecodeError(f"expected an identifier at column {start + 1} of: {self.text[:200]}")
        return self.text[start : self.pos]

    def columns(self, stop: str | None = None) -> Iterator[Column]:
        while self.pos < len(self.text):
            if stop is not None and self.peek(stop):
                return
            name = self.identifier()
            type_name = self._bracketed()
            self.expect(":")
            value = self._value()
            yield Column(name, type_name, value)
            if self.peek(" "):
                self.pos += 1

    def _bracketed(self) -> str:
        self.expect("[")
        start, depth = self.pos, 1
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == '"':
                self._quoted('"')
                continue
            if char == "[":
                depth += 1
            elif char == "]":
                depth -= 1
                if depth == 0:
                    found = self.text[start : self.pos]
                    self.pos += 1
                    return found
            self.pos += 1
        raise DecodeError(f"unbalanced [type] in: {self.text[:200]}")

    def _value(self) -> Any:
        if self.peek("'"):
            return self._quoted("'")
        if self.peek("B'"):
            self.pos += 1
            return self._quoted("'")
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] != " ":
            self.pos += 1
        bare = self.text[start : self.pos]
        if bare == "null":
            return None
        if bare == "unchanged-toast-datum":
            return UNCHANGED
        return bare

    def _quoted(self, quote: str) -> str:
        self.expect(quote)
        parts = []
        while True:
            end = self.text.find(quote, self.pos)
            if end < 0:
                raise DecodeError(f"unterminated {quote} quote in: {self.text[:200]}")
            parts.append(self.text[self.pos : end])
            self.pos = end + 1
            if self.peek(quote):  # a doubled quote is one literal quote
                parts.append(quote)
                self.pos += 1
                continue
            return "".join(parts)
