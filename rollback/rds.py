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

``delete_rds_snapshot`` removes the DB snapshot behind a record that
``snapshot prune`` deletes, but only the one Rollgate made for that record: a
manual snapshot of the recorded instance, with the recorded identifier and ARN
and the ``rollgate-snapshot`` tag naming the record. Anything else (an automated
snapshot, one a person took, one re-created under the same name) is refused
and left alone. ``rds_snapshot_status`` reads a snapshot's status for
``snapshot show``, without ever failing it.

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
from rollback.aws import make_client
from rollback.manifest import Manifest, RdsSnapshot
from rollback.snapshot import ReleaseInfo, new_snapshot_id
from rollback.store import SnapshotStore
from rollback.verify import VerifyReport, load_manifest, record_verification

_IDENTIFIER = re.compile(r"[^a-zA-Z0-9-]")
#: The tag ``create_rds_snapshot`` puts on every DB snapshot it takes: the record's id.
OWNER_TAG = "rollgate-snapshot"
#: RDS answers a missing snapshot with DBSnapshotNotFound (moto: ...Fault).
_NOT_FOUND = frozenset({"DBSnapshotNotFound", "DBSnapshotNotFoundFault"})


class RdsFailed(CannotRun):
    """An RDS call failed or an instance/snapshot did not reach the state wanted."""


class NotRollgates(RdsFailed):
    """The DB snapshot at a recorded identifier is not the one Rollgate made for that record."""


def rds_client(endpoint_url: str | None, *, quick: bool = False) -> Any:
    """A boto3 RDS client with bounded retries; ``endpoint_url`` for moto or a VPC endpoint.

    ``quick``: one attempt and short timeouts, for a read that only adds detail
    (``snapshot show``) and must not hold the terminal when AWS is unreachable.
    """
    from botocore.config import Config

    if quick:
        config = Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=5)
    else:
        config = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=10)
    return make_client("rds", endpoint_url, config)


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
                Tags=[{"Key": OWNER_TAG, "Value": snapshot_id}],
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
    rds = _rds_section(load_manifest(store, snapshot_id))
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


def delete_rds_snapshot(client: Any, manifest: Manifest) -> str:
    """Delete the DB snapshot Rollgate took for ``manifest``; returns what happened.

    ``"deleted"``, or ``"already gone"`` when RDS has no snapshot by that name
    (deleted by hand, or by a prune that died before it removed the record).
    Raises ``NotRollgates`` when the snapshot there is not provably the one
    recorded, and ``RdsFailed`` when RDS refuses the deletion (permissions, a
    snapshot still being created or copied); either way nothing was deleted.
    """
    rds = _rds_section(manifest)
    identifier = rds.snapshot_identifier
    described = _describe_snapshot(client, identifier)
    if described is None:
        return "already gone"
    problems = _ownership_problems(client, manifest, described)
    if problems:
        raise NotRollgates(
            f"RDS snapshot {identifier} was left alone: it is not the one Rollgate took for "
            f"snapshot {manifest.id} ({'; '.join(problems)}). Delete it by hand if it is no "
            "longer wanted, then prune again",
            details={"snapshot": manifest.id, "rds_snapshot": identifier, "problems": problems},
        )
    try:
        client.delete_db_snapshot(DBSnapshotIdentifier=identifier)
    except Exception as exc:  # botocore's errors share no narrower base worth naming
        if _error_code(exc) in _NOT_FOUND:
            return "already gone"  # deleted between the read and the delete
        raise RdsFailed(
            f"RDS refused to delete RDS snapshot {identifier} (snapshot {manifest.id}): {exc}",
            details={"snapshot": manifest.id, "rds_snapshot": identifier},
        ) from exc
    return "deleted"


def rds_snapshot_status(rds: RdsSnapshot, *, endpoint_url: str | None) -> str:
    """The DB snapshot's status in RDS (``available``, ``creating``, ...), ``not found``
    when it is gone, or ``unknown (<why>)`` when RDS cannot be asked; never raises.

    One call with a quick client: the status is a detail of ``snapshot show``,
    which must still show the manifest when AWS is unreachable.
    """
    try:
        client = rds_client(endpoint_url, quick=True)
        described = _describe_snapshot(client, rds.snapshot_identifier)
    except RdsFailed as exc:
        return f"unknown ({exc.message})"
    except Exception as exc:  # no region or credentials configured: botocore's own errors
        return f"unknown ({exc})"
    return "not found" if described is None else str(described.get("Status", "unknown"))


def _rds_section(manifest: Manifest) -> RdsSnapshot:
    if manifest.rds is None:
        raise CannotRun(f"snapshot {manifest.id} is a logical snapshot, not an RDS one")
    return manifest.rds


def _describe_snapshot(client: Any, identifier: str) -> dict[str, Any] | None:
    """The DB snapshot's description, or None when RDS has none by that name."""
    try:
        found = client.describe_db_snapshots(DBSnapshotIdentifier=identifier)["DBSnapshots"]
    except Exception as exc:  # botocore's errors share no narrower base worth naming
        if _error_code(exc) in _NOT_FOUND:
            return None
        raise RdsFailed(f"cannot read RDS snapshot {identifier}: {exc}") from exc
    return dict(found[0]) if found else None


def _ownership_problems(client: Any, manifest: Manifest, described: dict[str, Any]) -> list[str]:
    """Why ``described`` is not the DB snapshot ``create_rds_snapshot`` took for ``manifest``."""
    rds = _rds_section(manifest)
    problems = []
    if rds.snapshot_identifier != rds_identifier(manifest.id):
        problems.append(f"Rollgate names its snapshot {rds_identifier(manifest.id)}")
    kind = described.get("SnapshotType")
    if kind != "manual":
        problems.append(f"its type is {kind}; Rollgate takes only manual snapshots")
    if described.get("DBInstanceIdentifier") != rds.instance:
        problems.append(
            f"it is of instance {described.get('DBInstanceIdentifier')}, recorded {rds.instance}"
        )
    if rds.arn and described.get("DBSnapshotArn") != rds.arn:
        problems.append(f"its ARN is {described.get('DBSnapshotArn')}, recorded {rds.arn}")
    tags = described.get("TagList")
    if tags is None:  # older API versions leave the tags out of the description
        tags = _call(
            f"read the tags of RDS snapshot {rds.snapshot_identifier}",
            lambda: client.list_tags_for_resource(ResourceName=described["DBSnapshotArn"]),
        )["TagList"]
    owner = {tag.get("Key"): tag.get("Value") for tag in tags}.get(OWNER_TAG)
    if owner != manifest.id:
        problems.append(f"its {OWNER_TAG} tag is {owner!r}, not {manifest.id!r}")
    return problems


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


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
