"""Append-only, hash-chained logs in the store: rollbacks, releases, gate reports, audits.

Each entry is one JSON object, ``logs/<log>/<sequence:08d>.json``::

    {"log": "rollbacks", "sequence": 3, "recorded_at": "...",
     "previous_sha256": "<entry 2's entry_sha256>", "body": {...},
     "entry_sha256": "<sha256 of everything above, canonical JSON>"}

* **Append-only.** An entry is created only if its name is free (``link(2)``
  on disk, ``If-None-Match: *`` on S3), so two writers racing for one
  sequence number cannot both win: the loser re-reads and retries.
* **Tamper-evident.** Every entry carries the hash of the one before it.
  ``verify_chain`` recomputes every hash and names the first entry that was
  edited, removed, inserted or reordered. A writer able to rewrite *every*
  later entry could forge a consistent chain; S3 Object Lock (when the bucket
  has it) forbids the rewrite, and whoever consumes an entry (the rollout
  records which gate report it passed) pins its hash outside the log.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from core.errors import CheckFailed
from rollback.store import LogEntryExists, SnapshotStore

T = TypeVar("T")

GENESIS = "0" * 64
_ENTRY_NAME = re.compile(r"(\d{8})\.json", re.ASCII)
_APPEND_ATTEMPTS = 20


class ChainBroken(CheckFailed):
    """A log's hash chain does not hold: an entry was edited, removed or reordered."""


@dataclass(frozen=True)
class LogEntry:
    log: str
    sequence: int
    recorded_at: str
    previous_sha256: str
    body: dict[str, Any]
    entry_sha256: str
    file_name: str = ""  # where it was read from; not part of the hashed content

    @property
    def name(self) -> str:
        return f"{self.sequence:08d}.json"

    def to_dict(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "sequence": self.sequence,
            "recorded_at": self.recorded_at,
            "previous_sha256": self.previous_sha256,
            "body": self.body,
            "entry_sha256": self.entry_sha256,
        }


@dataclass(frozen=True)
class ChainReport:
    log: str
    entries: int
    head_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "entries": self.entries,
            "head_sha256": self.head_sha256,
            "ok": True,
        }


def append(store: SnapshotStore, log: str, body: dict[str, Any]) -> LogEntry:
    """Append ``body`` to ``log``, chained to the current head; retries lost races."""
    for _ in range(_APPEND_ATTEMPTS):
        entries = read(store, log)
        head = entries[-1] if entries else None
        entry = _make_entry(
            log,
            sequence=(head.sequence + 1) if head else 1,
            previous=head.entry_sha256 if head else GENESIS,
            body=body,
        )
        try:
            store.create_log_entry(log, entry.name, _encode(entry))
        except LogEntryExists:
            continue  # another writer took this sequence number: chain to theirs
        return entry
    raise CheckFailed(f"could not append to log {log}: {_APPEND_ATTEMPTS} writers raced ahead")


def read(store: SnapshotStore, log: str) -> list[LogEntry]:
    """Every entry of ``log`` in sequence order, each parsed (not yet chain-checked)."""
    entries = []
    for name, raw in store.log_entries(log):
        if not _ENTRY_NAME.fullmatch(name):
            raise ChainBroken(f"log {log}: unexpected file {name!r} among its entries")
        entries.append(_decode(log, name, raw))
    return entries


def read_as(store: SnapshotStore, log: str, parse: Callable[[LogEntry], T]) -> list[T]:
    """Every entry of ``log`` through ``parse``; one it cannot read is ``ChainBroken``.

    A hash chain proves an entry was not changed after it was written, not that
    its writer wrote the shape this Rollgate reads (an older or newer writer, a
    hand-made entry with a fresh hash): a body ``parse`` cannot read is damaged
    store content naming its entry (exit 1), never a crash of whoever reads it.
    """
    parsed = []
    for entry in read(store, log):
        try:
            parsed.append(parse(entry))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise ChainBroken(
                f"log {log}, entry {entry.file_name}: its body is not what this Rollgate "
                f"reads ({type(exc).__name__}: {exc}); restore the entry from a backup of "
                "the store, or read it with the Rollgate that wrote it",
                details={"log": log, "entry": entry.file_name},
            ) from exc
    return parsed


def verify_chain(store: SnapshotStore, log: str) -> ChainReport:
    """Check every hash and link of ``log``; ``ChainBroken`` names the first bad entry."""
    previous = GENESIS
    entries = read(store, log)
    for expected_sequence, entry in enumerate(entries, start=1):
        # Name the file as found in the store: that is what a person opens.
        where = f"log {log}, entry {entry.file_name}"
        if entry.sequence != expected_sequence or entry.file_name != entry.name:
            raise ChainBroken(
                f"{where}: holds sequence {entry.sequence} where {expected_sequence} was "
                "expected (an entry was removed, inserted or moved)",
                details={"log": log, "entry": entry.file_name},
            )
        if _hash_of(entry) != entry.entry_sha256:
            raise ChainBroken(
                f"{where}: its content does not match its entry_sha256 (edited after writing)",
                details={"log": log, "entry": entry.file_name},
            )
        if entry.previous_sha256 != previous:
            raise ChainBroken(
                f"{where}: does not chain to the entry before it (an earlier entry was "
                "replaced or the entries were reordered)",
                details={"log": log, "entry": entry.file_name},
            )
        previous = entry.entry_sha256
    return ChainReport(log=log, entries=len(entries), head_sha256=previous)


def _make_entry(log: str, *, sequence: int, previous: str, body: dict[str, Any]) -> LogEntry:
    draft = LogEntry(
        log=log,
        sequence=sequence,
        recorded_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        previous_sha256=previous,
        body=json.loads(json.dumps(body, default=str)),  # exactly what will be read back
        entry_sha256="",
    )
    return LogEntry(**{**draft.__dict__, "entry_sha256": _hash_of(draft)})


def _hash_of(entry: LogEntry) -> str:
    data = entry.to_dict()
    data.pop("entry_sha256")
    return hashlib.sha256(
        json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _encode(entry: LogEntry) -> bytes:
    return (json.dumps(entry.to_dict(), sort_keys=True, indent=2) + "\n").encode()


def _decode(log: str, name: str, raw: bytes) -> LogEntry:
    try:
        data = json.loads(raw.decode("utf-8"))
        return LogEntry(
            log=str(data["log"]),
            sequence=int(data["sequence"]),
            recorded_at=str(data["recorded_at"]),
            previous_sha256=str(data["previous_sha256"]),
            body=dict(data["body"]),
            entry_sha256=str(data["entry_sha256"]),
            file_name=name,
        )
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ChainBroken(
            f"log {log}, entry {name}: unreadable ({exc})", details={"log": log, "entry": name}
        ) from exc
