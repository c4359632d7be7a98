"""The audit's thresholds, with defaults; every one is a field a caller can override."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    #: The newest snapshot must be younger than this.
    snapshot_max_age_seconds: float = 26 * 3600
    #: The oldest message on the work queue must be younger than this.
    queue_oldest_message_seconds: float = 15 * 60
    #: A sequence past this share of its range fails the integrity check.
    sequence_used_percent: float = 75.0
    #: Dead rows per live row past which a table counts as bloated...
    bloat_dead_ratio: float = 0.5
    #: ... once it has at least this many dead rows (small tables are noise).
    bloat_min_dead_rows: int = 10_000
    #: WAL a replication slot may hold back before it is reported.
    slot_retained_bytes: int = 1024**3
    #: The audit never waits on the application's locks for longer than this.
    lock_timeout_ms: int = 200
    statement_timeout_ms: int = 30_000
    #: Generated invalid rows per kind of fault (hypothesis examples).
    adversarial_examples: int = 8
    #: Schemathesis examples per GET operation and generation mode.
    api_examples: int = 10

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
