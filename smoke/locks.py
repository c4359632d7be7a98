"""How long a migration blocks writers: ``pg_locks`` sampled from a second connection.

While one migration runs, a thread polls ``pg_locks`` every ``interval``
seconds for granted relation locks in a mode that conflicts with writers'
ROW EXCLUSIVE (SHARE, SHARE ROW EXCLUSIVE, EXCLUSIVE, ACCESS EXCLUSIVE) on a
table that existed before the migration started: a lock on a table the
migration itself creates blocks nobody. A lock seen in consecutive samples is
one hold; its length is last-seen minus first-seen, a lower bound that is at
most one interval short of the truth.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from core.postgres import connect

#: Lock modes that conflict with ROW EXCLUSIVE (INSERT, UPDATE, DELETE).
WRITER_BLOCKING_MODES = (
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)

_EXISTING_TABLES = """
SELECT c.oid::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'rollgate')
  AND n.nspname NOT LIKE 'pg\\_%'
"""

_HELD = """
SELECT l.relation::bigint, l.relation::regclass::text, l.mode
FROM pg_locks l
WHERE l.locktype = 'relation' AND l.granted AND l.mode = ANY(%(modes)s)
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.pid <> pg_backend_pid() AND l.relation = ANY(%(tables)s)
"""


@dataclass(frozen=True)
class LockHold:
    """The longest continuous writer-blocking hold on one table."""

    table: str
    mode: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "mode": self.mode, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class LockMeasurement:
    """What one migration held, and for how long."""

    migration: str
    duration_seconds: float
    samples: int
    interval_seconds: float
    holds: tuple[LockHold, ...]
    budget_seconds: float

    @property
    def longest(self) -> LockHold | None:
        return max(self.holds, key=lambda hold: hold.seconds, default=None)

    @property
    def within_budget(self) -> bool:
        longest = self.longest
        return longest is None or longest.seconds <= self.budget_seconds

    def describe(self) -> str:
        longest = self.longest
        if longest is None:
            return f"{self.migration}: blocked no writers ({self.samples} samples)"
        verdict = "within" if self.within_budget else "OVER"
        return (
            f"{self.migration}: held {longest.mode} on {longest.table} for "
            f"{longest.seconds:.2f}s ({verdict} the {self.budget_seconds:g}s budget; "
            f"sampled every {self.interval_seconds * 1000:.0f}ms)"
        )

    def to_dict(self) -> dict[str, Any]:
        longest = self.longest
        return {
            "migration": self.migration,
            "duration_seconds": round(self.duration_seconds, 3),
            "samples": self.samples,
            "interval_seconds": self.interval_seconds,
            "budget_seconds": self.budget_seconds,
            "within_budget": self.within_budget,
            "longest": longest.to_dict() if longest else None,
            "holds": [hold.to_dict() for hold in self.holds],
        }


@dataclass
class LockSampler:
    """Context manager: samples writer-blocking locks while the ``with`` body runs."""

    admin_dsn: str
    interval: float = 0.05
    _tables: list[int] = field(default_factory=list, init=False)
    _open: dict[tuple[int, str], tuple[str, float, float]] = field(default_factory=dict, init=False)
    _longest: dict[tuple[str, str], float] = field(default_factory=dict, init=False)
    _samples: int = field(default=0, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _error: BaseException | None = field(default=None, init=False)
    _conn: Any = field(default=None, init=False)

    def __enter__(self) -> LockSampler:
        self._conn = connect(self.admin_dsn, application_name="rollgate-smoke-locks")
        self._tables = [row[0] for row in self._conn.execute(_EXISTING_TABLES).fetchall()]
        self._sample()  # one sample before the migration starts
        self._thread = threading.Thread(target=self._loop, name="smoke-lock-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._close_holds(set())
        self._conn.close()
        if self._error is not None and exc is None:
            raise self._error

    def measurement(self, migration: str, duration: float, budget: float) -> LockMeasurement:
        holds = tuple(
            LockHold(table, mode, seconds) for (table, mode), seconds in self._longest.items()
        )
        return LockMeasurement(migration, duration, self._samples, self.interval, holds, budget)

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self._sample()
        except BaseException as exc:  # reported by __exit__ on the caller's thread
            self._error = exc

    def _sample(self) -> None:
        now = time.monotonic()
        rows = self._conn.execute(
            _HELD, {"modes": list(WRITER_BLOCKING_MODES), "tables": self._tables}
        ).fetchall()
        self._samples += 1
        seen = set()
        for oid, name, mode in rows:
            key = (int(oid), str(mode))
            seen.add(key)
            table, first, _ = self._open.get(key, (str(name), now, now))
            self._open[key] = (table, first, now)
        self._close_holds(seen)

    def _close_holds(self, still_held: set[tuple[int, str]]) -> None:
        for key in list(self._open):
            table, first, last = self._open[key]
            longest = (table, key[1])
            self._longest[longest] = max(self._longest.get(longest, 0.0), last - first)
            if key not in still_held:
                del self._open[key]
