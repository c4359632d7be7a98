"""``rollgate snapshot``: the verbs end to end, their exit codes and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from rollgate.cli import main
from tests.rollback.test_snapshot import SHOP


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def shop_dsn(make_database) -> str:
    dsn = make_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SHOP)
    return dsn


def test_create_list_show_verify_and_a_refused_restore(capsys, shop_dsn, tmp_path: Path):
    store = str(tmp_path / "store")
    code, out, _ = run(
        capsys,
        "--json",
        "snapshot",
        "create",
        "--no-slot",
        "--dsn",
        shop_dsn,
        "--store",
        store,
        "--release-commit",
        "abc123",
        "--app-image",
        "app@sha256:00",
    )
    assert code == 0
    snapshot_id = json.loads(out)["result"]["id"]

    code, out, _ = run(capsys, "snapshot", "list", "--store", store)
    assert code == 0 and snapshot_id in out and "NOT VERIFIED" in out

    code, out, _ = run(capsys, "snapshot", "verify", snapshot_id, "--store", store)
    assert code == 0 and "VERIFIED" in out

    code, out, _ = run(capsys, "--json", "snapshot", "show", snapshot_id, "--store", store)
    shown = json.loads(out)["result"]
    assert shown["manifest"]["release"]["bundle_commit"] == "abc123"
    assert shown["verification"]["ok"] is True
    assert shown["manifest"]["checksum_method"] == "row-hash-v2"
    code, out, _ = run(capsys, "snapshot", "show", snapshot_id, "--store", store)
    assert code == 0 and "(checksums row-hash-v2)" in out

    code, out, _ = run(
        capsys, "snapshot", "restore", snapshot_id, "--store", store, "--dsn", shop_dsn, "--dry-run"
    )
    assert code == 0 and "nothing has been changed" in out
    # No terminal to confirm on: refused, exit 1, nothing changed.
    code, _, err = run(
        capsys, "snapshot", "restore", snapshot_id, "--store", store, "--dsn", shop_dsn
    )
    assert code == 1 and "not confirmed" in err

    code, out, _ = run(capsys, "snapshot", "prune", "--store", store, "--keep", "1", "--dry-run")
    assert code == 0 and "would delete 0 snapshot(s)" in out


def test_unknown_snapshot_and_bad_store(capsys, tmp_path: Path):
    store = tmp_path / "store"
    store.mkdir()
    code, _, err = run(capsys, "snapshot", "show", "20260101T000000Z-000000", "--store", str(store))
    assert code == 1 and "no snapshot 20260101T000000Z-000000" in err
    code, _, err = run(capsys, "snapshot", "list", "--store", "gs://elsewhere/x")
    assert code == 2 and "unsupported store" in err
    code, _, err = run(capsys, "snapshot", "show", "../../etc", "--store", str(store))
    assert code == 2 and "invalid snapshot id" in err and "Traceback" not in err
