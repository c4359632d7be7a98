"""Human output, all in one place. ``--json`` bypasses this module entirely.

Written for a tired reader: the verdict first, then the facts, then what to
do next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from db.check import CheckReport
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
    disk = report.server_disk
    if disk.get("free_bytes") is not None:
        lines.append(f"  server disk: {_mb(disk['free_bytes'])} free before the run")
    elif disk:
        lines.append(
            f"  server disk: free space unknown ({disk['reason']}); only --max-size applied"
        )
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
