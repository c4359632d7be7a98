"""RDS manual snapshots and point-in-time restore, against moto's RDS API on loopback.

moto answers the API calls and keeps their state; it cannot show how long a
real snapshot or restore takes, nor restore real data (there is no database
behind its instances). See docs/rollback.md.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import CheckFailed
from rollback.manifest import Manifest
from rollback.rds import (
    RdsFailed,
    create_rds_snapshot,
    restore_to_point_in_time,
    verify_rds_snapshot,
)
from rollback.snapshot import ReleaseInfo
from rollback.store import DirectoryStore
from rollback.verify import latest_verification


def test_create_records_the_rds_snapshot_in_the_same_manifest(rds, instance, tmp_path):
    store = DirectoryStore(tmp_path / "store")
    manifest = create_rds_snapshot(
        store, instance, client=rds, release=ReleaseInfo("c0ffee", "app@sha256:1"), poll_seconds=0
    )
    assert manifest.rds is not None
    snapshot = rds.describe_db_snapshots(DBSnapshotIdentifier=manifest.rds.snapshot_identifier)
    described = snapshot["DBSnapshots"][0]
    assert manifest.rds.arn == described["DBSnapshotArn"]
    assert (manifest.rds.instance, manifest.rds.engine, manifest.rds.engine_version) == (
        instance,
        "postgres",
        "16.3",
    )
    assert manifest.rds.encrypted is True
    assert manifest.files == () and manifest.tables == () and manifest.server_major == 16
    assert manifest.release.bundle_commit == "c0ffee"
    # Stored like any snapshot, and read back whole.
    assert store.list_ids() == [manifest.id]
    raw = store.read_manifest(manifest.id)
    assert Manifest.from_json(raw) == manifest
    assert json.loads(raw)["rds"]["snapshot_identifier"] == manifest.rds.snapshot_identifier


def test_verify_restores_to_a_temporary_instance_checks_it_and_deletes_it(rds, instance, tmp_path):
    store = DirectoryStore(tmp_path / "store")
    manifest = create_rds_snapshot(store, instance, client=rds, poll_seconds=0)
    report = verify_rds_snapshot(store, manifest.id, client=rds, poll_seconds=0)
    assert report.ok, report.problems
    assert report.backend == "rds"
    names = {i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]}
    assert instance in names
    assert not any(name.startswith("rollgate-verify-") for name in names)  # deleted again
    recorded = latest_verification(store, manifest.id)
    assert recorded is not None and recorded["ok"] and recorded["backend"] == "rds"


def test_verify_of_a_snapshot_deleted_in_rds_fails_naming_it(rds, instance, tmp_path):
    store = DirectoryStore(tmp_path / "store")
    manifest = create_rds_snapshot(store, instance, client=rds, poll_seconds=0)
    assert manifest.rds is not None
    rds.delete_db_snapshot(DBSnapshotIdentifier=manifest.rds.snapshot_identifier)
    with pytest.raises(RdsFailed, match=manifest.rds.snapshot_identifier):
        verify_rds_snapshot(store, manifest.id, client=rds, poll_seconds=0)
    assert latest_verification(store, manifest.id) is None  # never verified


def test_a_non_postgres_instance_is_refused(rds, tmp_path):
    name = f"mysql-{secrets.token_hex(3)}"
    rds.create_db_instance(
        DBInstanceIdentifier=name,
        DBInstanceClass="db.t4g.micro",
        Engine="mysql",
        MasterUsername="admin",
        MasterUserPassword="not-a-secret-1",
        AllocatedStorage=20,
    )
    store = DirectoryStore(tmp_path / "store")
    with pytest.raises(CheckFailed, match="not PostgreSQL"):
        create_rds_snapshot(store, name, client=rds, poll_seconds=0)
    manual = rds.describe_db_snapshots(DBInstanceIdentifier=name, SnapshotType="manual")
    assert manual["DBSnapshots"] == []


@pytest.mark.parametrize("latest", [True, False])
def test_point_in_time_restore_starts_a_new_instance(rds, instance, latest):
    moment = None if latest else datetime.now(UTC) - timedelta(minutes=1)
    target = f"{instance}-pitr"
    described = restore_to_point_in_time(rds, instance, target, moment=moment)
    assert described["DBInstanceIdentifier"] == target
    found = rds.describe_db_instances(DBInstanceIdentifier=target)["DBInstances"][0]
    assert found["Engine"] == "postgres"


def test_the_cli_creates_lists_and_verifies_an_rds_snapshot(
    capsys, moto_endpoint, instance, tmp_path
):
    from rollgate.cli import main

    store = str(tmp_path / "store")
    common = ("--store", store, "--aws-endpoint-url", moto_endpoint)
    assert main(["--json", "snapshot", "create", "--rds", instance, *common]) == 0
    snapshot_id = json.loads(capsys.readouterr().out)["result"]["id"]
    assert main(["snapshot", "verify", snapshot_id, *common]) == 0
    out = capsys.readouterr().out
    assert "VERIFIED" in out and "rds" in out
    assert main(["--json", "snapshot", "show", snapshot_id, *common]) == 0
    shown = json.loads(capsys.readouterr().out)["result"]
    assert shown["manifest"]["rds"]["instance"] == instance
    assert shown["verification"]["ok"] is True


def test_a_logical_manifest_has_no_rds_key_and_reads_back_as_none():
    from rollback.manifest import Release

    manifest = Manifest(
        id="20261130T000000Z-abcdef",
        created_at="2026-11-30T00:00:00+00:00",
        database="app",
        server_version="18.1",
        server_major=18,
        catalog_fingerprint="f" * 64,
        release=Release(),
        tables=(),
        files=(),
    )
    raw = manifest.to_json()
    assert "rds" not in json.loads(raw)  # byte-identical to what earlier releases wrote
    assert Manifest.from_json(raw).rds is None
