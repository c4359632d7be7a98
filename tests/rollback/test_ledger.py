"""Hash-chained, append-only logs: every kind of tampering is named, races cannot fork."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from rollback.ledger import ChainBroken, append, read, verify_chain
from rollback.store import SnapshotStore, open_store


@pytest.fixture(params=["directory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SnapshotStore:
    if request.param == "directory":
        return open_store(str(tmp_path / "store"))
    bucket = request.getfixturevalue("s3_bucket")
    return open_store(f"s3://{bucket}/x", aws_endpoint_url=request.getfixturevalue("moto_endpoint"))


def entry_path(store: SnapshotStore, name: str) -> Path:
    assert hasattr(store, "root")
    return Path(store.root) / "logs" / "audit" / name


def test_append_chains_and_verifies(store):
    for i in range(3):
        append(store, "audit", {"run": i})
    report = verify_chain(store, "audit")
    entries = read(store, "audit")
    assert report.entries == 3 and report.head_sha256 == entries[-1].entry_sha256
    assert [e.body for e in entries] == [{"run": 0}, {"run": 1}, {"run": 2}]
    assert verify_chain(store, "empty").entries == 0


def test_concurrent_writers_never_fork_the_chain(store):
    errors = []

    def writer(n: int) -> None:
        try:
            for i in range(4):
                append(store, "audit", {"writer": n, "i": i})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert verify_chain(store, "audit").entries == 12


@pytest.mark.parametrize("tamper", ["edit", "remove", "reorder", "rechain-edit", "garbage"])
def test_tampering_is_caught_and_the_first_bad_entry_named(tmp_path, tamper):
    store = open_store(str(tmp_path / "store"))
    for i in range(4):
        append(store, "audit", {"failures": i})
    second, third = entry_path(store, "00000002.json"), entry_path(store, "00000003.json")
    data = json.loads(second.read_text())
    if tamper == "edit":
        data["body"]["failures"] = 0
        second.write_text(json.dumps(data))
        expected = "00000002.json: its content does not match"
    elif tamper == "remove":
        second.unlink()
        expected = "00000003.json: holds sequence 3 where 2 was expected"
    elif tamper == "reorder":
        a, b = second.read_bytes(), third.read_bytes()
        second.write_bytes(b)
        third.write_bytes(a)
        expected = "00000002.json: holds sequence 3 where 2 was expected"
    elif tamper == "rechain-edit":
        # A careful forger recomputes the edited entry's own hash: the next link breaks.
        from rollback.ledger import LogEntry, _hash_of

        data["body"]["failures"] = 0
        entry = LogEntry(**{**data, "entry_sha256": ""})  # file_name is not hashed
        data["entry_sha256"] = _hash_of(entry)
        second.write_text(json.dumps(data))
        expected = "00000003.json: does not chain"
    else:
        second.write_bytes(b"\xff\x00")
        expected = "00000002.json: unreadable"
    with pytest.raises(ChainBroken, match=expected.replace(".", r"\.")):
        verify_chain(store, "audit")
