"""Snapshots of databases too large for a logical dump: RDS manual snapshots.

``create_rds_snapshot`` takes a manual DB snapshot of an RDS instance through
boto3 and records it in the store with the same manifest as a logical
snapshot: no artifact files (the data stays in RDS, encrypted with the
instance's KMS key), and an ``rds`` section naming the snapshot, instance,
engine version and ARN.

The manifest has **no table checksums and no catalog fingerprint**: RDS takes
a storage-level snapshot at a moment Rollgate cannot open a transaction at,
so nothing read over SQL would describe exactly the snapshot's data. The
proof that such a snapshot works is ``verify_rds_snapshot``: it restores it
to a temporary instance (``restore_db_instance_from_db_snapshot``), waits for
it to be available, checks its engine, version and encryption against the
manifest, and deletes it, recording the verification like any other.

A rollback that must keep writes up to a moment uses point-in-time restore
instead (``restore_db_instance_to_point_in_time``); see docs/rollback.md.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from core.errors import CannotRun, CheckFailed
from core.progress import Progress, silent
from rollback.manifest import Manifest, RdsSnapshot
from rollback.snapshot import ReleaseInfo, new_snapshot_id
from rollback.store import SnapshotStore
from rollback.verify import VerifyReport, load_manifest, record_verification

_IDENTIFIER = re.compile(r"[^a-zA-Z0-9-]")


class RdsFailed(CannotRun):
    """An RDS call failed or an instance/snapshot did not reach the state wanted."""


def rds_client(endpoint_url: str | None) -> Any:
    """A boto3 RDS client with bounded retries; ``endpoint_url`` for moto or a VPC endpoint."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=10)
    return boto3.client("rds", endpoint_url=endpoint_url, config=config)


def rds_identifier(snapshot_id: str, prefix: str = "rollgate") -> str:
    """An RDS identifier (letters, digits, hyphens; starts with a letter; <= 63)."""
    return f"{prefix}-{_IDENTIFIER.sub('-', snapshot_id.lower())}"[:63].rstrip("-")


def create_rds_snapshot(
    store: SnapshotStore,
    instance: str,
    *,
    client: Any,
    release: ReleaseInfo | None = None,
    timeout: float = 3600.0,
    poll_seconds: float = 15.0,
    progress: Progress = silent,
) -> Manifest:
    """Take a manual RDS snapshot of ``instance``, wait for it, record it in ``store``."""
    started = time.monotonic()
    described = _call(
        f"describe RDS instance {instance}",
        lambda: client.describe_db_instances(DBInstanceIdentifier=instance),
    )["DBInstances"][0]
    engine = str(described["Engine"])
    if "postgres" not in engine:
        raise CheckFailed(f"RDS instance {instance} runs {engine}, not PostgreSQL")
    snapshot_id = new_snapshot_id()
    identifier = rds_identifier(snapshot_id)
    progress(f"creating RDS snapshot {identifier} of {instance}")
    with store.begin(snapshot_id) as draft:
        created = _call(
            f"create an RDS snapshot of {instance}",
            lambda: client.create_db_snapshot(
                DBSnapshotIdentifier=identifier,
                DBInstanceIdentifier=instance,
                Tags=[{"Key": "rollgate-snapshot", "Value": snapshot_id}],
            ),
        )["DBSnapshot"]
        snapshot = _wait(
            lambda: client.describe_db_snapshots(DBSnapshotIdentifier=identifier)["DBSnapshots"][0],
            lambda s: s.get("Status") == "available",
            what=f"RDS snapshot {identifier}",
            timeout=timeout,
            poll_seconds=poll_seconds,
            progress=progress,
        )
        version = str(snapshot.get("EngineVersion") or described.get("EngineVersion", ""))
        manifest = Manifest(
            id=snapshot_id,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            database=str(described.get("DBName") or instance),
            server_version=version,
            server_major=_major(version),
            catalog_fingerprint="",
            release=_release(release or ReleaseInfo()),
            tables=(),
            files=(),
            dump_format="rds-snapshot",
            timings={"total_seconds": round(time.monotonic() - started, 3)},
            rds=RdsSnapshot(
                snapshot_identifier=identifier,
                instance=instance,
                engine=engine,
                engine_version=version,
                arn=str(snapshot.get("DBSnapshotArn") or created.get("DBSnapshotArn", "")),
                encrypted=bool(snapshot.get("Encrypted", False)),
                kms_key_id=snapshot.get("KmsKeyId"),
            ),
        )
        draft.commit(manifest.to_json())
    progress(f"snapshot {snapshot_id}: RDS snapshot {identifier} of {instance} is available")
    return manifest


def verify_rds_snapshot(
    store: SnapshotStore,
    snapshot_id: str,
    *,
    client: Any,
    instance_class: str = "db.t4g.micro",
    timeout: float = 3600.0,
    poll_seconds: float = 15.0,
    record: bool = True,
    progress: Progress = silent,
) -> VerifyReport:
    """Restore the snapshot to a temporary instance, check it, delete it; record the result."""
    started = time.monotonic()
    manifest = load_manifest(store, snapshot_id)
    if manifest.rds is None:
        raise CannotRun(f"snapshot {snapshot_id} is a logical snapshot, not an RDS one")
    rds = manifest.rds
    problems: list[str] = []
    temporary = rds_identifier(snapshot_id, "rollgate-verify")
    progress(f"restoring RDS snapshot {rds.snapshot_identifier} to a temporary instance")
    _call(
        f"restore RDS snapshot {rds.snapshot_identifier}",
        lambda: client.restore_db_instance_from_db_snapshot(
            DBInstanceIdentifier=temporary,
            DBSnapshotIdentifier=rds.snapshot_identifier,
            DBInstanceClass=instance_class,
            PubliclyAccessible=False,
            MultiAZ=False,
            Tags=[{"Key": "rollgate-verify", "Value": snapshot_id}],
        ),
    )
    try:
        restored = _wait(
            lambda: client.describe_db_instances(DBInstanceIdentifier=temporary)["DBInstances"][0],
            lambda i: i.get("DBInstanceStatus") == "available",
            what=f"temporary RDS instance {temporary}",
            timeout=timeout,
            poll_seconds=poll_seconds,
            progress=progress,
        )
        restore_seconds = time.monotonic() - started
        if restored.get("Engine") != rds.engine:
            problems.append(f"restored engine {restored.get('Engine')}, recorded {rds.engine}")
        if str(restored.get("EngineVersion")) != rds.engine_version:
            problems.append(
                f"restored engine version {restored.get('EngineVersion')}, "
                f"recorded {rds.engine_version}"
            )
        if bool(restored.get("StorageEncrypted", False)) != rds.encrypted:
            problems.append(
                f"restored instance storage_encrypted={restored.get('StorageEncrypted')}, "
                f"the snapshot was recorded encrypted={rds.encrypted}"
            )
    finally:
        progress(f"deleting the temporary instance {temporary}")
        _call(
            f"delete the temporary RDS instance {temporary}",
            lambda: client.delete_db_instance(
                DBInstanceIdentifier=temporary,
                SkipFinalSnapshot=True,
                DeleteAutomatedBackups=True,
            ),
        )
    report = VerifyReport(
        snapshot_id=snapshot_id,
        backend="rds",
        restore_seconds=restore_seconds,
        total_seconds=time.monotonic() - started,
        problems=tuple(problems),
        notes=(
            "an RDS snapshot has no table checksums: the restored instance's engine, "
            "version and encryption were checked, not its rows",
        ),
    )
    if record:
        record_verification(store, report)
    return report


def _release(release: ReleaseInfo) -> Any:
    from rollback.manifest import Release

    return Release(bundle_commit=release.bundle_commit, app_image=release.app_image)


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def _call(what: str, action: Callable[[], Any]) -> Any:
    try:
        return action()
    except Exception as exc:  # botocore's errors share no narrower base worth naming
        raise RdsFailed(f"cannot {what}: {exc}") from exc


def _wait(
    read: Callable[[], dict[str, Any]],
    done: Callable[[dict[str, Any]], bool],
    *,
    what: str,
    timeout: float,
    poll_seconds: float,
    progress: Progress,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, Any] = _call(f"read the state of {what}", read)
        if done(state):
            return state
        status = state.get("Status") or state.get("DBInstanceStatus")
        if status in ("failed", "incompatible-restore", "incompatible-parameters"):
            raise RdsFailed(f"{what} is {status}")
        if time.monotonic() > deadline:
            raise RdsFailed(f"{what} is still {status} after {timeout:.0f}s; gave up waiting")
        progress(f"{what} is {status}; waiting")
        time.sleep(poll_seconds)


def restore_to_point_in_time(
    client: Any,
    instance: str,
    new_instance: str,
    *,
    moment: datetime | None = None,
    instance_class: str | None = None,
) -> dict[str, Any]:
    """Start a point-in-time restore of ``instance`` as ``new_instance`` (the latest
    restorable time when ``moment`` is None); returns the new instance's description.

    The path for a rollback that must keep writes up to ``moment``: RDS replays
    its own WAL archive onto its last automated snapshot, so nothing written
    before ``moment`` is lost. The new instance has a new endpoint; the
    application is pointed at it (or the instances are renamed) afterwards.
    """
    arguments: dict[str, Any] = {
        "SourceDBInstanceIdentifier": instance,
        "TargetDBInstanceIdentifier": new_instance,
        "PubliclyAccessible": False,
    }
    if moment is None:
        arguments["UseLatestRestorableTime"] = True
    else:
        arguments["RestoreTime"] = moment
    if instance_class:
        arguments["DBInstanceClass"] = instance_class
    response = _call(
        f"restore RDS instance {instance} to a point in time",
        lambda: client.restore_db_instance_to_point_in_time(**arguments),
    )
    return dict(response["DBInstance"])
