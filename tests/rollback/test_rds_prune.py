"""``snapshot prune`` and ``show``/``list`` of RDS-backed snapshots, against moto's RDS on loopback.

Prune deletes the DB snapshot Rollgate took before the record that names it,
and nothing else in RDS: not the instance's automated snapshots, not a manual
snapshot a person took, not one re-created under the recorded name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from rollback import retention
from rollback.manifest import Manifest
from rollback.rds import create_rds_snapshot, delete_rds_snapshot
from rollback.store import DirectoryStore
from rollgate.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@dataclass(frozen=True)
class Pruning:
    """A store with two RDS-backed records of one instance; ``older`` expires under --keep 1."""

    rds: Any
    instance: str
    store: DirectoryStore
    endpoint: str
    older: Manifest
    newer: Manifest

    def argv(self, *extra: str) -> list[str]:
        return ["snapshot", "prune", "--store", str(self.store.root), "--keep", "1",
                "--aws-endpoint-url", self.endpoint, *extra]  # fmt: skip

    def db_snapshots(self) -> dict[str, str]:
        """Every DB snapshot of the instance in RDS: identifier -> type (manual / automated)."""
        found = self.rds.describe_db_snapshots(DBInstanceIdentifier=self.instance)["DBSnapshots"]
        return {s["DBSnapshotIdentifier"]: s["SnapshotType"] for s in found}


@pytest.fixture
def store(tmp_path: Path) -> DirectoryStore:
    return DirectoryStore(tmp_path / "store")


@pytest.fixture
def pruning(rds: Any, instance: str, store: DirectoryStore, moto_endpoint: str) -> Pruning:
    for _ in range(2):
        create_rds_snapshot(store, instance, client=rds, poll_seconds=0)
    older, newer = (
        Manifest.from_json(store.read_manifest(snapshot_id)) for snapshot_id in store.list_ids()
    )
    return Pruning(rds, instance, store, moto_endpoint, older, newer)


def identifier(manifest: Manifest) -> str:
    assert manifest.rds is not None
    return manifest.rds.snapshot_identifier


def test_prune_deletes_the_expired_db_snapshot_then_its_record(capsys, pruning):
    older, newer = pruning.older, pruning.newer
    automated = {k for k, kind in pruning.db_snapshots().items() if kind == "automated"}
    assert automated  # moto keeps one for an instance with backups: it must survive

    code, out, err = run(capsys, "--json", *pruning.argv())
    assert code == 0, err
    result = json.loads(out)["result"]
    assert result["deleted"] == [older.id]
    assert result["rds_deleted"] == {identifier(older): "deleted"}
    assert pruning.store.list_ids() == [newer.id]
    assert set(pruning.db_snapshots()) == {identifier(newer), *automated}


def test_dry_run_names_the_db_snapshot_and_deletes_nothing(capsys, pruning):
    older, newer = pruning.older, pruning.newer
    before = pruning.db_snapshots()
    code, out, _ = run(capsys, *pruning.argv("--dry-run"))
    assert code == 0
    assert f"would delete {older.id}" in out
    assert f"RDS snapshot {identifier(older)} would be deleted" in out
    assert identifier(newer) not in out
    assert pruning.store.list_ids() == [older.id, newer.id]
    assert pruning.db_snapshots() == before

    code, out, _ = run(capsys, "--json", *pruning.argv("--dry-run"))
    assert json.loads(out)["result"]["rds_snapshots"] == {older.id: identifier(older)}


def test_a_db_snapshot_already_gone_is_a_note_and_the_record_goes(capsys, pruning):
    older, newer = pruning.older, pruning.newer
    pruning.rds.delete_db_snapshot(DBSnapshotIdentifier=identifier(older))
    code, out, err = run(capsys, *pruning.argv())
    assert code == 0, err
    assert f"RDS snapshot {identifier(older)} was already gone" in out
    assert pruning.store.list_ids() == [newer.id]


def test_a_snapshot_a_person_took_of_the_same_instance_is_never_deleted(capsys, pruning):
    older = pruning.older
    pruning.rds.create_db_snapshot(
        DBSnapshotIdentifier="before-upgrade", DBInstanceIdentifier=pruning.instance
    )
    code, _, err = run(capsys, *pruning.argv())
    assert code == 0, err
    assert "before-upgrade" in pruning.db_snapshots()
    assert identifier(older) not in pruning.db_snapshots()


def test_a_db_snapshot_recreated_under_the_recorded_name_is_refused_and_the_record_kept(
    capsys, pruning
):
    """Someone deleted Rollgate's snapshot and took their own under the same name: not ours."""
    older, newer = pruning.older, pruning.newer
    pruning.rds.delete_db_snapshot(DBSnapshotIdentifier=identifier(older))
    pruning.rds.create_db_snapshot(
        DBSnapshotIdentifier=identifier(older), DBInstanceIdentifier=pruning.instance
    )
    code, _, err = run(capsys, *pruning.argv())
    assert code == 2
    assert f"RDS snapshot {identifier(older)} was left alone" in err
    assert "rollgate-snapshot tag is None" in err and "Traceback" not in err
    assert identifier(older) in pruning.db_snapshots()
    assert pruning.store.list_ids() == [older.id, newer.id]  # the record stays: nothing orphaned


@contextmanager
def deletes_denied(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto enforcing IAM, with credentials that may do anything in RDS but delete snapshots."""
    import boto3

    iam: Any = boto3.client("iam", endpoint_url=endpoint)
    user = f"pruner-{id(monkeypatch)}"
    iam.create_user(UserName=user)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "rds:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "rds:DeleteDBSnapshot", "Resource": "*"},
        ],
    }
    iam.put_user_policy(UserName=user, PolicyName="no-deletes", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    # boto3's default session caches the credentials it first found: start a fresh one.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)

    def enforce_auth_after(actions: str) -> None:
        # moto's control endpoint: enforce IAM after this many further actions.
        requests.post(
            f"{endpoint}/moto-api/reset-auth", data=actions, timeout=10
        ).raise_for_status()

    enforce_auth_after("0")
    try:
        yield
    finally:
        enforce_auth_after("inf")
        monkeypatch.undo()


def test_a_refused_deletion_exits_2_naming_the_snapshot_and_keeps_the_record(
    capsys, pruning, monkeypatch
):
    older, newer = pruning.older, pruning.newer
    with deletes_denied(pruning.endpoint, monkeypatch):
        code, out, _ = run(capsys, "--json", *pruning.argv())
    assert code == 2
    error = json.loads(out)["error"]
    assert f"RDS refused to delete RDS snapshot {identifier(older)}" in error["message"]
    assert "AccessDenied" in error["message"]
    assert error["details"]["kept"].keys() == {older.id}
    assert pruning.store.list_ids() == [older.id, newer.id]
    assert identifier(older) in pruning.db_snapshots()


def test_a_prune_killed_between_the_two_deletions_converges_on_rerun(capsys, pruning):
    """The DB snapshot goes first: a crash then leaves a record whose DB snapshot is gone,
    which the next prune removes. (The crash is an interrupt raised at exactly that point,
    from the progress report between the two deletions: a kill from outside cannot be timed.)"""
    older, newer = pruning.older, pruning.newer

    def killed_after_the_rds_deletion(message: str) -> None:
        if message.startswith(f"RDS snapshot {identifier(older)}"):
            raise KeyboardInterrupt

    plan = retention.plan_prune(retention.list_snapshots(pruning.store), keep=1)
    with pytest.raises(KeyboardInterrupt):
        retention.prune(
            pruning.store,
            plan,
            delete_rds=lambda manifest: delete_rds_snapshot(pruning.rds, manifest),
            progress=killed_after_the_rds_deletion,
        )
    assert identifier(older) not in pruning.db_snapshots()
    assert pruning.store.list_ids() == [older.id, newer.id]  # the record outlived its DB snapshot

    code, out, err = run(capsys, *pruning.argv())
    assert code == 0 and "Traceback" not in err
    assert f"RDS snapshot {identifier(older)} was already gone" in out
    assert pruning.store.list_ids() == [newer.id]
    code, out, _ = run(capsys, *pruning.argv())
    assert code == 0 and "deleted 0 snapshot(s)" in out


def test_show_and_list_render_the_rds_section(capsys, rds, instance, store, moto_endpoint):
    manifest = create_rds_snapshot(store, instance, client=rds, poll_seconds=0)
    assert manifest.rds is not None
    common = ("--store", str(store.root), "--aws-endpoint-url", moto_endpoint)

    code, out, _ = run(capsys, "snapshot", "show", manifest.id, *common)
    assert code == 0
    assert f"RDS snapshot {manifest.rds.snapshot_identifier} of instance {instance}" in out
    assert "(postgres 16.3), status available" in out
    assert f"ARN {manifest.rds.arn}" in out and "0 tables" not in out

    code, out, _ = run(capsys, "--json", "snapshot", "show", manifest.id, *common)
    shown = json.loads(out)["result"]
    assert shown["rds_status"] == "available"
    assert shown["manifest"]["rds"]["arn"] == manifest.rds.arn

    code, out, _ = run(capsys, "snapshot", "list", *common)
    assert f"RDS snapshot {manifest.rds.snapshot_identifier} of {instance}" in out
    code, out, _ = run(capsys, "--json", "snapshot", "list", *common)
    listed = json.loads(out)["result"]["snapshots"][0]["rds"]
    assert listed == {
        "snapshot_identifier": manifest.rds.snapshot_identifier,
        "instance": instance,
        "engine": "postgres",
        "engine_version": "16.3",
        "arn": manifest.rds.arn,
    }

    rds.delete_db_snapshot(DBSnapshotIdentifier=manifest.rds.snapshot_identifier)
    code, out, _ = run(capsys, "snapshot", "show", manifest.id, *common)
    assert code == 0 and "status not found" in out


def test_show_still_shows_the_manifest_when_rds_cannot_be_asked(
    capsys, rds, instance, store, moto_endpoint
):
    manifest = create_rds_snapshot(store, instance, client=rds, poll_seconds=0)
    unreachable = "http://127.0.0.1:9"  # the discard port: nothing listens
    code, out, _ = run(
        capsys, "snapshot", "show", manifest.id, "--store", str(store.root),
        "--aws-endpoint-url", unreachable,
    )  # fmt: skip
    assert code == 0 and "status unknown (cannot read RDS snapshot" in out
