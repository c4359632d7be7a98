"""Database checks: schema drift (catalog and migration checksums) and integrity.

Every query runs in a read-only session with short lock and statement
timeouts, so an audit never blocks (or waits behind) the application.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from core.postgres import connect
from db.catalog import EVERY_SCHEMA
from db.config import CatalogScope
from db.drift import detect_drift
from db.errors import HistoryMismatch
from db.migrations import Migration
from db.plan import check_history
from db.runner import MigrationRunner
from db.throwaway import ThrowawayPostgres
from release.audit.model import CheckResult, Finding, Status, verdict
from release.audit.thresholds import Thresholds

AUDIT_APPLICATION = "rollgate-audit"


@contextmanager
def read_only_session(dsn: str, thresholds: Thresholds) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose every transaction is read-only and gives up quickly on locks."""
    with connect(dsn, application_name=AUDIT_APPLICATION) as conn:
        conn.autocommit = True
        conn.execute("SET default_transaction_read_only = on")
        conn.execute(f"SET lock_timeout = '{int(thresholds.lock_timeout_ms)}ms'")
        conn.execute(f"SET statement_timeout = '{int(thresholds.statement_timeout_ms)}ms'")
        yield conn


def schema_drift(
    dsn: str,
    server: ThrowawayPostgres,
    schema_path: Path,
    migrations: Sequence[Migration],
    *,
    scope: CatalogScope = EVERY_SCHEMA,
) -> CheckResult:
    """The live catalog (every schema) against the canonical schema, and the history's checksums."""
    findings: list[Finding] = []
    report = detect_drift(dsn, server, schema_path, migrations, scope=scope)
    for difference in report.differences:
        findings.append(Finding("catalog", False, difference.describe()))
    if not report.drifted:
        findings.append(
            Finding(
                "catalog",
                True,
                f"live catalog fingerprint {report.live_fingerprint[:12]} matches "
                f"{schema_path.name}",
            )
        )
    with MigrationRunner(dsn, migrations) as runner:
        runner.conn.execute("SET default_transaction_read_only = on")
        history = runner.read_history()
    try:
        check_history(migrations, history)
        findings.append(
            Finding(
                "migration checksums",
                True,
                f"{len(history)} applied migrations match their files' checksums",
            )
        )
    except HistoryMismatch as exc:
        for problem in exc.details.get("problems", [exc.message]):
            findings.append(Finding("migration checksums", False, str(problem)))
    drift_count = len(report.differences) + sum(
        1 for f in findings if f.name == "migration checksums" and not f.ok
    )
    result = verdict(
        "schema_drift",
        findings,
        f"no drift: catalog and {len(history)} migration checksums match",
        metrics={"drift_count": float(drift_count)},
    )
    return result


_INVALID_INDEXES = """
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
ORDER BY 1
"""

# A foreign key is indexed when some valid index's leading columns are exactly
# the key's columns (in any order): deletes on the parent then find children
# without a sequential scan.
_UNINDEXED_FOREIGN_KEYS = """
SELECT format('%I.%I', n.nspname, t.relname), con.conname,
       (SELECT string_agg(a.attname, ', ' ORDER BY k.ord)
          FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum)
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class t ON t.oid = con.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
WHERE con.contype = 'f'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_index i
    WHERE i.indrelid = con.conrelid AND i.indisvalid
      AND i.indnkeyatts >= cardinality(con.conkey)
      AND (SELECT array_agg(x ORDER BY x) FROM unnest(con.conkey) AS x)
        = (SELECT array_agg(x ORDER BY x)
             FROM unnest((i.indkey::int2[])[0:cardinality(con.conkey) - 1]) AS x)
  )
ORDER BY 1, 2
"""

# Sequences (identity columns own one too): percent of the range already used.
_SEQUENCES = """
SELECT format('%I.%I', schemaname, sequencename), last_value, min_value, max_value, increment_by
FROM pg_catalog.pg_sequences
WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1
"""

_BLOAT = """
SELECT format('%I.%I', schemaname, relname), n_live_tup, n_dead_tup
FROM pg_catalog.pg_stat_user_tables
ORDER BY 1
"""

_SLOTS = """
SELECT slot_name, slot_type, active,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), restart_lsn)::bigint
FROM pg_catalog.pg_replication_slots
WHERE restart_lsn IS NOT NULL
ORDER BY 1
"""


def integrity(dsn: str, thresholds: Thresholds) -> CheckResult:
    """INVALID indexes, unindexed foreign keys, sequence exhaustion, bloat, WAL held by slots."""
    findings: list[Finding] = []
    worst_sequence = 0.0
    with read_only_session(dsn, thresholds) as conn:
        invalid = [row[0] for row in conn.execute(_INVALID_INDEXES).fetchall()]
        findings.append(
            Finding(
                "invalid indexes",
                not invalid,
                f"INVALID (drop and rebuild CONCURRENTLY): {', '.join(invalid)}"
                if invalid
                else "none",
            )
        )
        for table, name, columns in conn.execute(_UNINDEXED_FOREIGN_KEYS).fetchall():
            findings.append(
                Finding(
                    f"foreign key {table}.{name}",
                    False,
                    f"no index leads with ({columns}): deleting a parent row scans {table}; "
                    f"CREATE INDEX CONCURRENTLY ON {table} ({columns})",
                )
            )
        for sequence, last, minimum, maximum, increment in conn.execute(_SEQUENCES).fetchall():
            if last is None:
                continue  # never used (or not readable by this role): nothing consumed
            span = maximum - minimum
            used = (last - minimum) if increment > 0 else (maximum - last)
            percent = 100.0 * used / span if span else 100.0
            worst_sequence = max(worst_sequence, percent)
            if percent >= thresholds.sequence_used_percent:
                findings.append(
                    Finding(
                        f"sequence {sequence}",
                        False,
                        f"{percent:.2f}% of its range used (threshold "
                        f"{thresholds.sequence_used_percent}%): widen it to bigint",
                    )
                )
        findings.append(
            Finding("sequences", True, f"the fullest sequence has used {worst_sequence:.4f}%")
        )
        worst_bloat = 0.0
        for table, live, dead in conn.execute(_BLOAT).fetchall():
            if dead < thresholds.bloat_min_dead_rows:
                continue  # small tables: the ratio is noise
            ratio = dead / max(live, 1)
            worst_bloat = max(worst_bloat, ratio)
            if ratio > thresholds.bloat_dead_ratio:
                findings.append(
                    Finding(
                        f"bloat {table}",
                        False,
                        f"{dead} dead rows for {live} live ({ratio:.0%} > "
                        f"{thresholds.bloat_dead_ratio:.0%}): check autovacuum, long transactions",
                    )
                )
        worst_slot = 0
        for slot, kind, active, retained in conn.execute(_SLOTS).fetchall():
            worst_slot = max(worst_slot, int(retained))
            if retained > thresholds.slot_retained_bytes:
                findings.append(
                    Finding(
                        f"replication slot {slot}",
                        False,
                        f"{kind} slot ({'active' if active else 'inactive'}) retains "
                        f"{retained} bytes of WAL (threshold {thresholds.slot_retained_bytes}): "
                        f"consume it or SELECT pg_drop_replication_slot('{slot}')",
                    )
                )
    findings.append(
        Finding("replication slots", True, f"the most WAL any slot retains: {worst_slot} bytes")
    )
    return verdict(
        "integrity",
        findings,
        "no INVALID index, every foreign key indexed, sequences, bloat and slots within bounds",
        metrics={
            "sequence_used_percent": worst_sequence,
            "max_dead_ratio": worst_bloat,
            "slot_retained_bytes": float(worst_slot),
        },
    )


def not_run(check: str, reason: str) -> CheckResult:
    return CheckResult(check, Status.NOT_RUN, reason)
