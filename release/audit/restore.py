"""Restore drill: the newest snapshot in the store, restored and verified on a throwaway."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from db.migrations import Migration
from db.throwaway import ThrowawayPostgres
from release.audit.model import CheckResult, Finding, NotRunnable, verdict
from release.audit.thresholds import Thresholds
from rollback.manifest import CorruptSnapshot
from rollback.store import SnapshotStore
from rollback.verify import load_manifest, verify_snapshot


def restore_drill(
    store: SnapshotStore,
    server: ThrowawayPostgres,
    migrations: Sequence[Migration],
    thresholds: Thresholds,
    *,
    now: datetime | None = None,
) -> CheckResult:
    """Restore the newest snapshot, verify it, and record its age and the restore time."""
    ids = store.list_ids()  # ids sort by creation time
    if not ids:
        raise NotRunnable(f"no snapshot in {store.uri}: nothing to drill (take one first)")
    newest = ids[-1]
    try:
        manifest = load_manifest(store, newest)
    except CorruptSnapshot as exc:
        finding = Finding("manifest", False, f"{newest}: {exc.message}")
        return verdict("restore_drill", [finding], "")
    created = datetime.fromisoformat(manifest.created_at.replace("Z", "+00:00"))
    age = ((now or datetime.now(UTC)) - created).total_seconds()
    size_mb = manifest.total_bytes / 1024**2
    metrics = {"snapshot_age_seconds": age, "snapshot_mb": size_mb}
    findings = [
        Finding(
            "snapshot age",
            age <= thresholds.snapshot_max_age_seconds,
            f"{newest} is {age / 3600:.1f} h old (threshold "
            f"{thresholds.snapshot_max_age_seconds / 3600:.1f} h)",
        )
    ]
    try:
        report = verify_snapshot(store, newest, server, migrations=migrations, record=True)
    except CorruptSnapshot as exc:
        findings.append(Finding("restore", False, f"{newest}: {exc.message}"))
        return verdict("restore_drill", findings, "", metrics=metrics)
    metrics["restore_seconds"] = report.restore_seconds
    if size_mb > 0:
        metrics["restore_seconds_per_mb"] = report.restore_seconds / max(size_mb, 1e-3)
    findings.append(
        Finding(
            "restore",
            report.ok,
            "; ".join(report.problems)
            if report.problems
            else f"restored {newest} ({size_mb:.1f} MB) in {report.restore_seconds:.1f} s on "
            f"{report.backend}; catalog and table checksums match the manifest",
        )
    )
    return verdict("restore_drill", findings, f"{newest} restored and verified", metrics=metrics)
