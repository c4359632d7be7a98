"""Human output, all in one place. ``--json`` bypasses this module entirely.

Written for a tired reader: the verdict first, then the facts, then what to
do next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from db.baseline import BaselineReport
    from db.check import CheckReport
    from db.destructive import DestructiveRevert
    from db.drift import DriftReport
    from db.runner import RunReport, StatusReport
    from db.sample import SampleProgress, SampleReport

_STATE_MARK = {
    "applied": "applied  ",
    "pending": "pending  ",
    "applying": "APPLYING ",
    "reverting": "REVERTING",
    "orphaned": "ORPHANED ",
}


def status(report: StatusReport) -> str:
    verdict = "healthy" if report.healthy else "NEEDS ATTENTION"
    lines = [
        f"database at {report.current:04d}, latest migration {report.latest:04d} "
        f"(PostgreSQL {report.server_version}): {verdict}"
    ]
    for m in report.migrations:
        when = f"  {m.applied_at:%Y-%m-%d %H:%M:%S %Z} by {m.applied_by}" if m.applied_at else ""
        took = f" in {m.duration_ms} ms" if m.duration_ms is not None else ""
        lines.append(f"  {_STATE_MARK.get(m.state, m.state)}  {m.label}{when}{took}")
    for problem in report.problems:
        lines.append(f"  problem: {problem}")
    for index in report.invalid_indexes:
        lines.append(f"  INVALID index {index}: a CONCURRENTLY build failed or was interrupted")
    unfinished = [m for m in report.migrations if m.state in ("applying", "reverting")]
    if unfinished:
        lines.append(
            "  next: run `rollgate db migrate` to finish (or `rollgate db revert --to N` to undo) "
            + ", ".join(m.label for m in unfinished)
        )
    elif report.pending and not report.problems:
        lines.append(f"  next: `rollgate db migrate` applies {len(report.pending)} pending")
    return "\n".join(lines)


def run(report: RunReport) -> str:
    verb = "migrate" if report.plan.direction == "up" else "revert"
    if report.dry_run:
        if report.plan.empty:
            return f"{verb}: nothing to do; the database is at {report.version_before:04d}"
        lines = [
            f"{verb} plan: {report.version_before:04d} -> {report.plan.target:04d} "
            f"({len(report.plan.steps)} step(s)); nothing has been changed"
        ]
        lines += [f"  would {step.describe()}" for step in report.plan.steps]
        return "\n".join(lines + _invalid(report.invalid_indexes))
    if not report.executed:
        return f"{verb}: nothing to do; the database is at {report.version_after:04d}"
    lines = [f"{verb}: {report.version_before:04d} -> {report.version_after:04d}"]
    for result in report.executed:
        extras = [f"{result.duration_ms} ms"]
        if result.retries:
            extras.append(
                f"{result.retries} lock-timeout retr{'y' if result.retries == 1 else 'ies'}"
            )
        if result.resumed:
            extras.append("resumed an interrupted run")
        extras += list(result.repairs)
        done = "applied" if result.direction == "up" else "reverted"
        lines.append(f"  {done} {result.label} ({'; '.join(extras)})")
    return "\n".join(lines + _invalid(report.invalid_indexes))


def check(report: CheckReport) -> str:
    verdict = "PASSED" if report.ok else "FAILED"
    lines = [
        f"db check {verdict}: {len(report.migrations)} migration(s) on throwaway PostgreSQL "
        f"{report.server_major} ({report.backend}) in {report.elapsed_seconds:.1f}s"
    ]
    lines += [f"  warning: {w}" for w in report.warnings]
    contract = report.contract
    lines.append(f"  contract: {'ok' if contract.ok else 'BROKEN'}")
    for step in contract.steps:
        mark = "ok" if step.reversible else "NOT REVERSIBLE"
        lines.append(f"    {step.migration}: up/down/up {mark} (fingerprint {step.after_up[:12]})")
    if contract.ok:
        lines.append(
            f"    migrations == schema.sql (fingerprint {contract.schema_fingerprint[:12]})"
        )
    lines += [f"    {finding.describe()}" for finding in contract.findings]
    lint = report.lint
    lines.append(
        f"  lint: {'ok' if lint.ok else f'{len(lint.findings)} finding(s)'} "
        f"({lint.files_checked} files, squawk {lint.squawk_version})"
    )
    lines += [f"    {finding.describe()}" for finding in lint.findings]
    if lint.skipped_files:
        lines.append(f"    skipped {len(lint.skipped_files)} file(s): {lint.skipped_reason}")
    if lint.expected_drops:
        lines.append(
            f"    {len(lint.expected_drops)} drop finding(s) in down files set aside: each drops "
            "what its own up created (listed below as destructive reverts)"
        )
    lines += _destructive_reverts(report)
    return "\n".join(lines)


def _destructive_reverts(report: CheckReport) -> list[str]:
    from db.destructive import affected_data

    if not report.destructive_reverts:
        return ["  destructive reverts: none (no down file destroys data)"]
    by_migration: dict[str, list[DestructiveRevert]] = {}
    for revert in report.destructive_reverts:
        by_migration.setdefault(revert.migration, []).append(revert)
    losing = [label for label, group in by_migration.items() if any(r.loses_data for r in group)]
    lines = [
        f"  destructive reverts: {len(losing)} migration(s) lose data written since their up "
        "when reverted (a snapshot restore keeps it)"
    ]
    for label, entries in by_migration.items():
        affected = affected_data(entries)
        if affected:
            tables = ", ".join(
                table if columns is None else f"{table}({', '.join(columns)})"
                for table, columns in affected.items()
            )
            lines.append(f"    {label}: loses {tables}")
        else:
            lines.append(f"    {label}: schema only, no data lost")
        lines += [f"      {r.file}:{r.line}: {r.describe().split(': ', 1)[1]}" for r in entries]
    return lines


def baseline(report: BaselineReport) -> str:
    span = f"{report.migrations[0]}..{report.migrations[-1]}"
    if not report.matches:
        problems = len(report.differences) + len(report.verify_failures)
        lines = [
            f"baseline REFUSED: the live database differs from what {span} build "
            f"({problems} difference(s)); nothing was recorded"
        ]
        lines += [f"  {d.describe()}" for d in report.differences]
        lines += [f"  {failure}" for failure in report.verify_failures]
        lines.append(
            "  next: make the live schema match (or fix the migrations), or baseline at "
            "the version the live database really has"
        )
    elif report.recorded:
        lines = [
            f"baseline: recorded {span} as applied without running them; the live catalog "
            f"matches them (fingerprint {report.live_fingerprint[:12]})",
            f"  next: `rollgate db migrate` applies only what comes after {report.version:04d}",
        ]
    else:
        lines = [
            f"baseline dry run: the live catalog matches {span} "
            f"(fingerprint {report.live_fingerprint[:12]}); nothing was recorded",
            "  next: run again without --dry-run to record them",
        ]
    lines += [f"  note: {note}" for note in report.notes]
    return "\n".join(lines)


def drift(report: DriftReport) -> str:
    if not report.drifted:
        lines = [
            f"no drift: the live catalog matches the canonical schema "
            f"(fingerprint {report.live_fingerprint[:12]})"
        ]
    else:
        lines = [f"DRIFT: {len(report.differences)} difference(s) from the canonical schema"]
        lines += [f"  {d.describe()}" for d in report.differences]
    lines += [f"  note: {note}" for note in report.notes]
    return "\n".join(lines)


def sample(report: SampleReport) -> str:
    lines = [
        f"sample data: {_mb(report.bytes_after)} in the four tables "
        f"(target {_mb(report.target_bytes)}, was {_mb(report.bytes_before)}) "
        f"in {report.elapsed_seconds:.1f}s, {report.batches} batch(es), seed {report.seed}"
    ]
    lines += [f"  {table}: {count:,} rows added" for table, count in report.rows.items()]
    return "\n".join(lines)


def sample_progress(progress: SampleProgress) -> str:
    done, target = progress.bytes_now, max(progress.target_bytes, 1)
    percent = min(100.0, 100.0 * done / target)
    rows = sum(progress.rows.values())
    return (
        f"sample batch {progress.batch}: {_mb(done)} of {_mb(target)} ({percent:.0f}%), "
        f"{rows:,} rows in {progress.elapsed_seconds:.0f}s"
    )


def _mb(value: int) -> str:
    return f"{value / (1024 * 1024):.1f} MB"


def _invalid(indexes: tuple[str, ...]) -> list[str]:
    return [
        f"  warning: INVALID index {index} (a failed CONCURRENTLY build); "
        "its migration rebuilds it on the next run, or drop it"
        for index in indexes
    ]
