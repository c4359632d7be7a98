"""Human output, all in one place. ``--json`` bypasses this module entirely.

Written for a tired reader: the verdict first, then the facts, then what to
do next.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from db.baseline import BaselineReport
    from db.check import CheckReport
    from db.destructive import DestructiveRevert
    from db.drift import DriftReport
    from db.roles import BootstrapReport
    from db.runner import RunReport, StatusReport
    from db.sample import SampleProgress, SampleReport
    from rollback.manifest import Manifest
    from rollback.plan import RollbackPlan
    from rollback.restore import RestoreReport
    from rollback.retention import PrunePlan, PruneResult, SnapshotSummary
    from rollback.run import RollbackOutcome
    from rollback.verify import VerifyReport

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


def schema_written(result: dict[str, Any]) -> str:
    what = "wrote" if result["written"] else "unchanged:"
    lines = [
        f"{what} {result['path']} (pg_dump --schema-only of {len(result['migrations'])} "
        f"migration(s) on throwaway PostgreSQL {result['server_major']}, {result['backend']})"
    ]
    lines += [f"  warning: {w}" for w in result["warnings"]]
    return "\n".join(lines)


def schema_checked(result: dict[str, Any]) -> str:
    if result["up_to_date"]:
        lines = [f"{result['path']} is what the {len(result['migrations'])} migration(s) build"]
    else:
        lines = [
            f"{result['path']} differs from what the {len(result['migrations'])} migration(s) "
            f"build: regenerate it with `rollgate db schema --write` and review the diff"
        ]
    lines += [f"  warning: {w}" for w in result["warnings"]]
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


# --- snapshots ----------------------------------------------------------------


def snapshot_verify(report: VerifyReport) -> str:
    verdict = "VERIFIED" if report.ok else "FAILED"
    lines = [
        f"snapshot {report.snapshot_id} {verdict}: restored on {report.backend} in "
        f"{report.restore_seconds:.1f}s ({report.total_seconds:.1f}s in all)"
    ]
    lines += [f"  problem: {problem}" for problem in report.problems]
    if report.verify_scripts:
        lines.append(f"  verify scripts passed: {', '.join(report.verify_scripts)}")
    lines += [f"  note: {note}" for note in report.notes]
    return "\n".join(lines)


def snapshot_list(summaries: Sequence[SnapshotSummary]) -> str:
    if not summaries:
        return "no snapshots in this store"
    lines = []
    for summary in summaries:
        data = summary.to_dict()
        if summary.problem:
            lines.append(f"{summary.id}  UNREADABLE: {summary.problem}")
            continue
        warm = f"warm (verified {data['verified_at']})" if summary.verified else "NOT VERIFIED"
        version = data["schema_version"]
        rds = summary.manifest.rds if summary.manifest else None
        held = (
            f"RDS snapshot {rds.snapshot_identifier} of {rds.instance}"
            if rds
            else f"{data['rows']:,} rows  {_mb(data['bytes'] or 0)}"
        )
        lines.append(
            f"{summary.id}  {data['database']}  schema {version if version is not None else '-'}"
            f"  {held}  {warm}"
        )
    return "\n".join(lines)


def snapshot_show(
    manifest: Manifest, verification: dict[str, Any] | None, *, rds_status: str | None = None
) -> str:
    release = manifest.release
    lines = [
        f"snapshot {manifest.id} of {manifest.database} (PostgreSQL {manifest.server_version}), "
        f"taken {manifest.created_at}",
        f"  release: commit {release.bundle_commit or '-'}, image {release.app_image or '-'}, "
        f"schema {release.schema_version if release.schema_version is not None else '-'}",
        *(_rds_lines(manifest, rds_status) if manifest.rds else _contents_lines(manifest)),
        f"  replay slot: {manifest.slot.name} at {manifest.slot.consistent_lsn}"
        if manifest.slot
        else "  replay slot: none (writes after this snapshot cannot be replayed)",
    ]
    if verification:
        verdict = "ok" if verification.get("ok") else "FAILED"
        lines.append(
            f"  last verified {verification.get('verified_at')}: {verdict}, restore "
            f"{verification.get('restore_seconds')}s on {verification.get('backend')}"
        )
    else:
        lines.append("  never verified: run `rollgate snapshot verify` before trusting it")
    return "\n".join(lines)


def _contents_lines(manifest: Manifest) -> list[str]:
    return [
        f"  catalog fingerprint {manifest.catalog_fingerprint[:12]}; "
        f"{len(manifest.tables)} tables, {manifest.total_rows:,} rows "
        f"(checksums {manifest.checksum_method}); "
        f"{len(manifest.files)} files, {_mb(manifest.total_bytes)}"
    ]


def _rds_lines(manifest: Manifest, status: str | None) -> list[str]:
    rds = manifest.rds
    assert rds is not None  # only called for RDS-backed snapshots
    encryption = (
        f"encrypted with {rds.kms_key_id or 'the default key'}"
        if rds.encrypted
        else ("NOT encrypted")
    )
    return [
        f"  RDS snapshot {rds.snapshot_identifier} of instance {rds.instance} "
        f"({rds.engine} {rds.engine_version}), status {status or 'not read'}, {encryption}",
        f"  ARN {rds.arn or '-'}",
        "  no table checksums or catalog fingerprint: `verify` restores it to a temporary "
        "instance to prove it",
    ]


def restore_plan(manifest: Manifest, verification: dict[str, Any] | None) -> str:
    lines = [
        f"restore plan for snapshot {manifest.id} ({manifest.total_rows:,} rows, "
        f"{_mb(manifest.total_bytes)}); nothing has been changed yet:",
        "  1. check every artifact file against the manifest",
        "  2. restore into a new database beside the live one, then verify it",
        "  3. swap it in by rename; the live database is kept, closed, under a new name",
        "  writes made to the live database after the snapshot are NOT in the restored copy",
    ]
    if verification and verification.get("restore_seconds") is not None:
        lines.append(f"  expected restore time: about {verification['restore_seconds']}s")
    else:
        lines.append("  WARNING: this snapshot was never verified")
    return "\n".join(lines)


def restore(report: RestoreReport) -> str:
    if report.kept_database:
        return (
            f"warm standby {report.kept_database} ready (snapshot {report.snapshot_id}): "
            f"restored in {report.restore_seconds:.1f}s, verified in {report.verify_seconds:.1f}s"
        )
    return (
        f"restored snapshot {report.snapshot_id} as {report.database} "
        f"(restore {report.restore_seconds:.1f}s, verify {report.verify_seconds:.1f}s, "
        f"swap {report.swap_seconds:.2f}s); the previous database is kept as "
        f"{report.replaced_by_rename}"
    )


def prune(plan: PrunePlan, *, done: PruneResult | None = None) -> str:
    """The plan (``done`` None: a dry run, nothing changed) or what was deleted."""
    if done is None:
        lines = [f"prune: would delete {len(plan.delete)} snapshot(s), keeping {len(plan.keep)}"]
        for snapshot_id in plan.delete:
            lines.append(f"  would delete {snapshot_id}")
            if snapshot_id in plan.rds_snapshots:
                lines.append(f"    RDS snapshot {plan.rds_snapshots[snapshot_id]} would be deleted")
    else:
        lines = [f"prune: deleted {len(done.deleted)} snapshot(s), keeping {len(plan.keep)}"]
        for snapshot_id in done.deleted:
            lines.append(f"  deleted {snapshot_id}")
            identifier = plan.rds_snapshots.get(snapshot_id)
            if identifier in done.rds:
                what = "was already gone" if done.rds[identifier] == "already gone" else "deleted"
                lines.append(f"    RDS snapshot {identifier} {what}")
    lines += [f"  keep {snapshot_id}: {why}" for snapshot_id, why in plan.keep.items()]
    return "\n".join(lines)


# --- rollback -----------------------------------------------------------------


def rollback_plan(plan: RollbackPlan) -> str:
    lines = [
        f"rollback plan: {plan.current.label} -> {plan.target.label} by {plan.path}, "
        f"about {plan.expected_seconds:.0f}s; nothing has been changed",
    ]
    for number, step in enumerate(plan.steps, start=1):
        lines.append(f"  {number}. {step.description} (~{step.expected_seconds:.0f}s)")
    lines.append(f"  data: {plan.rpo}")
    lines += [f"  will lose: {loss}" for loss in plan.losses]
    lines += [f"  note: {note}" for note in plan.notes]
    lines.append(f"  fingerprint: {plan.fingerprint()}")
    return "\n".join(lines)


def rollback_outcome(outcome: RollbackOutcome) -> str:
    plan = outcome.plan
    lines = [
        f"rolled back to {plan['target']['sequence']} by {plan['path']} in "
        f"{outcome.seconds:.1f}s (expected about {plan['expected_seconds']}s)"
    ]
    if outcome.resumed_from:
        lines.append(f"  resumed an interrupted run after {outcome.resumed_from} step(s)")
    for step in outcome.steps:
        lines.append(f"  {step['kind']}: {step['seconds']}s")
    if outcome.replay:
        replay = outcome.replay
        verdict = "RPO 0" if replay["rpo_zero"] else "NOT everything was carried back"
        lines.append(
            f"  replayed {replay['rows_replayed']} row change(s) written since the snapshot: "
            f"{verdict}"
        )
        for table, detail in replay["tables"].items():
            for reason, count in detail["not_replayed"].items():
                lines.append(f"    {table}: {count} not replayed: {reason}")
            for column, count in detail["columns_not_carried"].items():
                lines.append(f"    {table}.{column}: {count} value(s) had no column to go to")
        for table, count in replay["tables_not_in_target"].items():
            lines.append(f"    {table}: {count} change(s), table not in the target release")
    lines.append(f"  recorded in the rollbacks log as {outcome.record}")
    return "\n".join(lines)


if TYPE_CHECKING:  # here, not at the top, so merges of render.py stay simple
    from smoke.run import SmokeReport


def smoke(report: SmokeReport) -> str:
    """Verdict, failing checks with their reasons, N-1, data lost, where the reports are."""
    data = report.summary
    if "checks" not in data:
        error = data.get("error", "")
        return f"smoke: pytest exited {report.exit_code}: {error} (see {report.pytest_log})"
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(data["counts"].items()))
    verdict = "passed" if report.exit_code == 0 else f"FAILED (pytest exit {report.exit_code})"
    backend = data.get("backend")
    where = (
        f" on {backend}" + (" (Docker absent)" if data.get("docker_absent") else "")
        if backend
        else ""
    )
    lines = [f"smoke ({data['mode']}{where}): {verdict}: {counts}"]
    for nodeid, entry in data["checks"].items():
        if entry["outcome"] in ("failed", "error"):
            lines.append(f"  FAILED {nodeid.split('::')[-1]}: {entry['message']}")
    n1 = data.get("n_minus_1")
    if n1 and n1.get("checked"):
        lines.append(f"  N-1: {n1['verdict']}")
    for item in data.get("data_lost_on_revert") or []:
        declared = "declared" if item["declared"] else "NOT declared"
        lines.append(f"  revert lost data in {item['table']} ({declared}): {item['description']}")
    for note in data.get("notes", []):
        lines.append(f"  note: {note}")
    lines.append(f"  reports: {report.junit_xml}, {report.json_summary}, {report.markdown_summary}")
    return "\n".join(lines)


# --- rollgate audit -----------------------------------------------------------


def audit_report(report: Any) -> str:
    """One line per check (PASS / FAIL / NOT RUN), its failed findings, and where it is logged."""
    marks = {"passed": "PASS", "failed": "FAIL", "not_run": "NOT RUN"}
    lines = []
    for check in report.checks:
        lines.append(f"{marks[check.status.value]:8} {check.check}: {check.summary}")
        for finding in check.findings:
            if not finding.ok:
                lines.append(f"         - {finding.name}: {finding.evidence}")
    verdict = {0: "all checks passed", 1: "FAILED", 2: "INCOMPLETE (checks did not run)"}
    lines.append(f"audit {verdict[report.exit_code]} in {report.seconds:.1f}s")
    if report.log_entry:
        lines.append(f"  logged as {report.log_entry} (sha256 {report.log_entry_sha256[:16]})")
    if report.stack_outputs_source:
        lines.append(f"  stack outputs from {report.stack_outputs_source}")
    for note in report.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def audit_trends(found: Sequence[Any], html: Any) -> str:
    if not found:
        return "no audit metrics recorded yet"
    lines = []
    for trend in found:
        mark = "WORSE" if trend.flagged else "ok"
        lines.append(f"{mark:6} {trend.label}: {trend.reason}")
    if html is not None:
        lines.append(f"chart written to {html}")
    return "\n".join(lines)


def bootstrap_roles(report: BootstrapReport) -> str:
    verdict = "changed" if report.changed else "nothing to change: roles already as wanted"
    lines = [f"bootstrap-roles on {report.database} as {report.owner}: {verdict}"]
    lines.extend(f"  {change}" for change in report.shared_changes)
    for role in report.roles:
        done = ", ".join(role.changes) or "unchanged"
        lines.append(f"  {role.name} ({role.purpose}, member of {role.group}): {done}")
    return "\n".join(lines)
