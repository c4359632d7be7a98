"""The snapshot store: atomic publishes, listing only what is complete, on disk and S3."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from rollback.store import (
    MANIFEST_NAME,
    DirectoryStore,
    S3Store,
    SnapshotNotFound,
    SnapshotStore,
    StoreError,
    open_store,
)


@pytest.fixture(params=["directory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SnapshotStore:
    if request.param == "directory":
        return open_store(str(tmp_path / "store"))
    bucket = request.getfixturevalue("s3_bucket")
    endpoint = request.getfixturevalue("moto_endpoint")
    return open_store(f"s3://{bucket}/team/prod", aws_endpoint_url=endpoint)


def write_snapshot(store: SnapshotStore, snapshot_id: str, files: dict[str, bytes]) -> None:
    with store.begin(snapshot_id) as draft:
        for name, data in files.items():
            (draft.directory / name).parent.mkdir(parents=True, exist_ok=True)
            (draft.directory / name).write_bytes(data)
        draft.commit(b'{"id": "%s"}' % snapshot_id.encode())


def test_a_committed_snapshot_is_listed_and_reads_back(store, tmp_path):
    write_snapshot(store, "s1", {"dump/toc.dat": b"toc", "dump/1.dat": b"rows"})
    assert store.list_ids() == ["s1"]
    assert store.read_manifest("s1") == b'{"id": "s1"}'
    store.fetch("s1", "dump/1.dat", tmp_path / "out" / "1.dat")
    assert (tmp_path / "out" / "1.dat").read_bytes() == b"rows"


def test_a_draft_left_without_commit_is_never_listed(store):
    with pytest.raises(RuntimeError), store.begin("s2") as draft:
        (draft.directory / "part.dat").write_bytes(b"half")
        raise RuntimeError("the dump failed")
    assert store.list_ids() == []
    with pytest.raises(SnapshotNotFound):
        store.read_manifest("s2")


def test_ids_cannot_be_reused_or_escape_the_store(store):
    write_snapshot(store, "s3", {"a": b"1"})
    with pytest.raises(StoreError, match="already exists"):
        store.begin("s3")
    for bad in ("../etc", "a/b", "", ".hidden", "x" * 200, "a b", "s\n"):
        with pytest.raises(StoreError, match="invalid snapshot id"):
            store.begin(bad)


def test_missing_artifact_is_named(store, tmp_path):
    write_snapshot(store, "s4", {"a.dat": b"1"})
    with pytest.raises(StoreError, match=r"artifact file b\.dat is missing"):
        store.fetch("s4", "b.dat", tmp_path / "b.dat")


def test_delete_unlists_first(store):
    write_snapshot(store, "s5", {"a": b"1"})
    write_snapshot(store, "s6", {"a": b"2"})
    store.delete("s5")
    assert store.list_ids() == ["s6"]
    with pytest.raises(SnapshotNotFound):
        store.delete("s5")


def test_directory_store_killed_writer_leaves_only_staging(tmp_path):
    """SIGKILL mid-write: nothing is listed, and sweep_staging removes the rest."""
    root = tmp_path / "store"
    code = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        from rollback.store import open_store
        store = open_store({str(root)!r})
        draft = store.begin("killed")
        (draft.directory / "big.dat").write_bytes(b"x" * 1024)
        print("written", flush=True)
        time.sleep(60)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "written"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    store = open_store(str(root))
    assert store.list_ids() == []
    assert store.sweep_staging() != []
    assert not any((root / ".staging").iterdir())


def test_s3_objects_without_a_manifest_are_not_listed_and_are_swept(s3_bucket, moto_endpoint):
    import boto3

    client: Any = boto3.client("s3", endpoint_url=moto_endpoint)
    # What a killed upload leaves: data objects, no manifest.
    client.put_object(Bucket=s3_bucket, Key="p/snapshots/half/files/1.dat", Body=b"x")
    store = open_store(f"s3://{s3_bucket}/p", aws_endpoint_url=moto_endpoint)
    write_snapshot(store, "whole", {"1.dat": b"y"})
    assert store.list_ids() == ["whole"]
    assert store.sweep_staging() == ["half"]
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert all("/half/" not in key for key in keys)


def test_s3_uses_sse_kms_when_configured(s3_bucket, moto_endpoint):
    import boto3

    kms: Any = boto3.client("kms", endpoint_url=moto_endpoint)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    store = open_store(f"s3://{s3_bucket}/enc", aws_endpoint_url=moto_endpoint, kms_key_id=key_id)
    write_snapshot(store, "e1", {"1.dat": b"secret rows"})
    client: Any = boto3.client("s3", endpoint_url=moto_endpoint)
    for key in ("enc/snapshots/e1/files/1.dat", f"enc/snapshots/e1/{MANIFEST_NAME}"):
        head = client.head_object(Bucket=s3_bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert key_id in head["SSEKMSKeyId"]


def test_s3_endpoint_that_does_not_answer_is_a_clear_store_error(tmp_path):
    # A closed port on loopback: connection refused, fast and local.
    store = S3Store("bucket", "p", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StoreError, match="s3://bucket/p"):
        store.list_ids()


def test_s3_missing_bucket_is_a_store_error(moto_endpoint):
    store = open_store("s3://no-such-bucket-here/x", aws_endpoint_url=moto_endpoint)
    with pytest.raises(StoreError, match="no-such-bucket-here"):
        store.list_ids()


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("/var/snapshots", DirectoryStore),
        ("relative/dir", DirectoryStore),
        ("file:///var/snap%20shots", DirectoryStore),
        ("s3://bucket/prefix/deeper", S3Store),
        ("s3://bucket", S3Store),
    ],
)
def test_store_uris(uri, kind, moto_endpoint):
    store = open_store(uri, aws_endpoint_url=moto_endpoint)
    assert isinstance(store, kind)


@pytest.mark.parametrize("uri", ["", "   ", "gs://bucket/x", "s3://", "file://remotehost/x"])
def test_bad_store_uris_are_refused(uri):
    with pytest.raises(StoreError):
        open_store(uri)


def test_file_uri_decodes_percent_escapes(tmp_path):
    store = open_store("file://" + str(tmp_path / "a b").replace(" ", "%20"))
    assert isinstance(store, DirectoryStore)
    assert store.root == tmp_path / "a b"


def test_listing_a_store_that_does_not_exist_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_store(str(tmp_path / "nope")).list_ids()


def test_records_live_beside_a_snapshot_and_need_one(store):
    write_snapshot(store, "r1", {"a": b"1"})
    store.put_record("r1", "verify-1.json", b"{}")
    store.put_record("r1", "verify-2.json", b"[]")
    store.put_record("r1", "verify-1.json", b'{"again": 1}')  # replaced, atomically
    assert store.records("r1") == {"verify-1.json": b'{"again": 1}', "verify-2.json": b"[]"}
    with pytest.raises(SnapshotNotFound):
        store.put_record("nope", "x.json", b"{}")
    with pytest.raises(StoreError, match="invalid artifact file name"):
        store.put_record("r1", "../escape.json", b"{}")


def test_s3_begin_refuses_a_missing_bucket_before_anything_is_written(moto_endpoint):
    # A HEAD on a key in a missing bucket is a 404, read as "no snapshot yet":
    # snapshot create dumped the whole database before the first upload failed.
    store = open_store("s3://rollgate-no-such-bucket/p", aws_endpoint_url=moto_endpoint)
    with pytest.raises(StoreError, match="bucket rollgate-no-such-bucket does not exist"):
        store.begin("20260101T000000Z-abcdef")
