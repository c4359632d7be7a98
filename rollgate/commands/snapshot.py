"""``rollgate snapshot``: create, verify, list, show, restore, warm, prune."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from core.errors import CannotRun, CheckFailed
from db.migrations import load_migrations
from db.throwaway import start_throwaway
from rollback import retention
from rollback.masking import load_masking
from rollback.rds import (
    create_rds_snapshot,
    delete_rds_snapshot,
    rds_client,
    rds_snapshot_status,
    verify_rds_snapshot,
)
from rollback.restore import restore_snapshot, warm_standby
from rollback.snapshot import ReleaseInfo, create_snapshot, drop_slot
from rollback.store import SnapshotStore, open_store
from rollback.verify import latest_verification, load_manifest, verify_snapshot
from rollgate import render
from rollgate.commands import Options, Outcome


def open_snapshot_store(uri: str | None, aws_endpoint_url: str | None) -> SnapshotStore:
    """The store from ``--store`` (or ``$ROLLGATE_STORE``), with SSE-KMS when configured."""
    return open_store(
        uri or os.environ.get("ROLLGATE_STORE") or "",
        aws_endpoint_url=aws_endpoint_url,
        kms_key_id=os.environ.get("ROLLGATE_STORE_KMS_KEY_ID") or None,
    )


def create(
    opts: Options,
    *,
    store: str | None,
    aws_endpoint_url: str | None,
    slot: bool,
    release_commit: str | None,
    app_image: str | None,
    jobs: int,
    rds_instance: str | None = None,
    mask: bool = False,
    masking_file: Path | None = None,
    backend: str = "embedded",
    image: str | None = None,
) -> Outcome:
    """Snapshot the database at ``--dsn`` (or the RDS instance ``--rds``); prints the new id."""
    if mask and rds_instance:
        raise CannotRun("--mask works on logical snapshots; it cannot mask an RDS snapshot")
    target = open_snapshot_store(store, aws_endpoint_url)
    release = ReleaseInfo(
        bundle_commit=release_commit or _bundle_commit(),
        app_image=app_image or os.environ.get("ROLLGATE_APP_IMAGE") or None,
    )
    if rds_instance:
        manifest = create_rds_snapshot(
            target,
            rds_instance,
            client=rds_client(aws_endpoint_url),
            release=release,
            progress=opts.progress,
        )
        return Outcome(0, {"id": manifest.id, "manifest": manifest.to_dict()}, manifest.id)
    if mask:
        rules = load_masking(masking_file) if masking_file else load_masking()
        with start_throwaway(backend, image=image, progress=opts.progress) as server:
            manifest = create_snapshot(
                opts.require_dsn(),
                target,
                release=release,
                jobs=jobs,
                mask=rules,
                mask_server=server,
                progress=opts.progress,
            )
        return Outcome(0, {"id": manifest.id, "manifest": manifest.to_dict()}, manifest.id)
    manifest = create_snapshot(
        opts.require_dsn(), target, release=release, slot=slot, jobs=jobs, progress=opts.progress
    )
    return Outcome(0, {"id": manifest.id, "manifest": manifest.to_dict()}, manifest.id)


def verify(
    opts: Options,
    *,
    snapshot_id: str,
    store: str | None,
    aws_endpoint_url: str | None,
    backend: str,
    image: str | None,
) -> Outcome:
    """Restore-test a snapshot on a throwaway Postgres; exit 1 when it does not match."""
    target = open_snapshot_store(store, aws_endpoint_url)
    if load_manifest(target, snapshot_id).rds is not None:
        report = verify_rds_snapshot(
            target, snapshot_id, client=rds_client(aws_endpoint_url), progress=opts.progress
        )
        return Outcome(0 if report.ok else 1, report.to_dict(), render.snapshot_verify(report))
    migrations = load_migrations(opts.migrations_dir)
    with start_throwaway(backend, image=image, progress=opts.progress) as server:
        report = verify_snapshot(
            target, snapshot_id, server, migrations=migrations, progress=opts.progress
        )
    return Outcome(0 if report.ok else 1, report.to_dict(), render.snapshot_verify(report))


def list_(opts: Options, *, store: str | None, aws_endpoint_url: str | None) -> Outcome:
    """Every complete snapshot, oldest first, and whether it is warm (verified)."""
    summaries = retention.list_snapshots(open_snapshot_store(store, aws_endpoint_url))
    result = {"snapshots": [s.to_dict() for s in summaries]}
    return Outcome(0, result, render.snapshot_list(summaries))


def show(
    opts: Options, *, snapshot_id: str, store: str | None, aws_endpoint_url: str | None
) -> Outcome:
    """One snapshot's manifest, its latest verification, and its RDS snapshot's status."""
    target = open_snapshot_store(store, aws_endpoint_url)
    manifest = load_manifest(target, snapshot_id)
    verification = latest_verification(target, snapshot_id)
    rds_status = (
        rds_snapshot_status(manifest.rds, endpoint_url=aws_endpoint_url) if manifest.rds else None
    )
    result: dict[str, Any] = {"manifest": manifest.to_dict(), "verification": verification}
    if manifest.rds:
        result["rds_status"] = rds_status
    return Outcome(0, result, render.snapshot_show(manifest, verification, rds_status=rds_status))


def restore(
    opts: Options,
    *,
    snapshot_id: str,
    store: str | None,
    aws_endpoint_url: str | None,
    dry_run: bool,
    yes: bool,
) -> Outcome:
    """Restore a snapshot as the database at ``--dsn``: plan, confirm, then act."""
    target = open_snapshot_store(store, aws_endpoint_url)
    manifest = load_manifest(target, snapshot_id)
    dsn = opts.require_dsn()
    plan = render.restore_plan(manifest, latest_verification(target, snapshot_id))
    if dry_run:
        return Outcome(0, {"snapshot": snapshot_id, "dry_run": True}, plan)
    if not yes:
        opts.progress(plan)
        if not opts.confirm(f"Restore snapshot {snapshot_id} in place of the live database?"):
            raise CheckFailed(
                "restore refused: not confirmed. Review the plan (--dry-run), then pass --yes"
            )
    report = restore_snapshot(target, snapshot_id, dsn, progress=opts.progress)
    return Outcome(0, report.to_dict(), render.restore(report))


def warm(
    opts: Options, *, snapshot_id: str, store: str | None, aws_endpoint_url: str | None
) -> Outcome:
    """Restore and verify a snapshot beside the live database, ready for a rename."""
    target = open_snapshot_store(store, aws_endpoint_url)
    report = warm_standby(target, snapshot_id, opts.require_dsn(), progress=opts.progress)
    return Outcome(0, report.to_dict(), render.restore(report))


def prune(
    opts: Options,
    *,
    store: str | None,
    aws_endpoint_url: str | None,
    keep: int,
    protect: list[str],
    dry_run: bool,
) -> Outcome:
    """Delete snapshots outside the retention policy, the RDS snapshots Rollgate took for
    them, and their slots (given --dsn); exit 2 naming any RDS snapshot it could not delete."""
    target = open_snapshot_store(store, aws_endpoint_url)
    plan = retention.plan_prune(
        retention.list_snapshots(target), keep=keep, protected_releases=set(protect)
    )
    if dry_run:
        result = {**plan.to_dict(), "dry_run": True, "deleted": [], "rds_deleted": {}}
        return Outcome(0, result, render.prune(plan))
    dsn = opts.dsn
    # Only a plan with RDS-backed records needs AWS (and its region and credentials).
    client = rds_client(aws_endpoint_url) if plan.rds_snapshots else None
    done = retention.prune(
        target,
        plan,
        drop_slot=(lambda name: drop_slot(dsn, name)) if dsn else None,
        delete_rds=(lambda manifest: delete_rds_snapshot(client, manifest)) if client else None,
        progress=opts.progress,
    )
    result = {**plan.to_dict(), "dry_run": False, "deleted": list(done.deleted)}
    result["rds_deleted"] = dict(done.rds)
    return Outcome(0, result, render.prune(plan, done=done))


def _bundle_commit() -> str | None:
    """The release's commit: $ROLLGATE_RELEASE_COMMIT, CI's $GITHUB_SHA, or the checkout's HEAD."""
    for name in ("ROLLGATE_RELEASE_COMMIT", "GITHUB_SHA"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None
