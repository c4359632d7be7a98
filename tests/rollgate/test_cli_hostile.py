"""Hostile input to the command line: each case is a class of bad input, refused cleanly.

The promise under test (README "The command line"): bad input gets a message
and exit 1 or 2, never a traceback (exit 3), and ``--json`` prints exactly one
document whose ``exit_code`` is the process's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rollgate.cli import main
from tests.rollback.test_snapshot import SHOP


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    """Exit code, the one JSON document on stdout, and stderr."""
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    document = json.loads(out)  # exactly one document: json.loads refuses trailing data
    assert document["exit_code"] == code
    return code, document, err


@pytest.fixture(scope="module")
def snapshot_store(tmp_path_factory: pytest.TempPathFactory, server: Any) -> tuple[Path, str]:
    """A directory store holding one real snapshot of a small database (taken once)."""
    from db.throwaway import create_database

    dsn = create_database(server, "hostile_shop")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SHOP)
    store = tmp_path_factory.mktemp("hostile") / "store"
    assert main(["snapshot", "create", "--store", str(store), "--dsn", dsn, "--quiet"]) == 0
    (snapshot_id,) = [entry.name for entry in (store / "snapshots").iterdir()]
    return store, snapshot_id


def forge_manifest(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit a manifest the way an attacker would: with a fresh, matching self-hash."""
    data = json.loads(path.read_text())
    data.pop("manifest_sha256")
    edit(data)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    data["manifest_sha256"] = hashlib.sha256(canonical).hexdigest()
    path.write_text(json.dumps(data, sort_keys=True, indent=2))


def _set(*keys: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        target: Any = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


# Each is valid JSON with a matching self-hash but the wrong shape; the first
# ones crashed list/show/verify with a TypeError (exit 3) before the fix.
FORGED = {
    "file size not a number": _set("files", 0, "size", value="big"),
    "file sha256 null": _set("files", 0, "sha256", value=None),
    "file name escapes": _set("files", 0, "name", value="../../../etc/passwd"),
    "file size negative": _set("files", 0, "size", value=-1),
    "rows a boolean": _set("tables", 0, "rows", value=True),
    "schema version text": _set("release", "schema_version", value="x"),
    "timing not seconds": _set("timings", "dump", value="slow"),
    "created_at a number": _set("created_at", value=5),
    "id of another snapshot": _set("id", value="20200101T000000Z-000000"),
    "id with path separators": _set("id", value="../evil"),
}


@pytest.mark.parametrize("verb", ["show", "verify"])
@pytest.mark.parametrize("forgery", list(FORGED), ids=list(FORGED))
def test_a_forged_manifest_of_the_wrong_shape_is_corrupt_not_a_crash(
    capsys, snapshot_store, tmp_path: Path, forgery: str, verb: str
):
    store, snapshot_id = snapshot_store
    copy = tmp_path / "store"
    forge_manifest(_copy_store(store, snapshot_id, copy) / "manifest.json", FORGED[forgery])

    code, document, _ = run_json(capsys, "snapshot", verb, snapshot_id, "--store", str(copy))
    assert code == 1, document
    assert document["error"]["type"] == "CorruptSnapshot"
    assert "manifest.json" in document["error"]["message"]

    code, document, _ = run_json(capsys, "snapshot", "list", "--store", str(copy))
    assert code == 0, document
    (entry,) = document["result"]["snapshots"]
    assert "manifest.json" in entry["problem"]


def _copy_store(store: Path, snapshot_id: str, destination: Path) -> Path:
    """A store beside ``store`` with its manifest copied and its files linked (cheap)."""
    snapshot = destination / "snapshots" / snapshot_id
    snapshot.mkdir(parents=True)
    (snapshot / "manifest.json").write_bytes(
        (store / "snapshots" / snapshot_id / "manifest.json").read_bytes()
    )
    (snapshot / "files").symlink_to(store / "snapshots" / snapshot_id / "files")
    return snapshot


# A verification record decides what prune keeps and what restore trusts; each
# of these crashed list/show (exit 3) or counted as a verification.
RECORDS = {
    "a list": "[1]",
    "a string": '"verified"',
    "ok as text": json.dumps(
        {"ok": "yes", "snapshot": "{id}", "verified_at": "2026-01-01", "backend": "embedded"}
    ),
    "of another snapshot": json.dumps(
        {
            "ok": True,
            "snapshot": "20200101T000000Z-000000",
            "verified_at": "2026-01-01T00:00:00+00:00",
            "backend": "embedded",
            "restore_seconds": 1.0,
        }
    ),
}


@pytest.mark.parametrize("record", list(RECORDS), ids=list(RECORDS))
def test_a_verification_record_of_the_wrong_shape_proves_nothing(
    capsys, snapshot_store, tmp_path: Path, record: str
):
    store, snapshot_id = snapshot_store
    copy = tmp_path / "store"
    snapshot = _copy_store(store, snapshot_id, copy)
    (snapshot / "records").mkdir()
    (snapshot / "records" / "verification-2026-01-01T000000Z.json").write_text(
        RECORDS[record].replace("{id}", snapshot_id)
    )

    code, document, _ = run_json(capsys, "snapshot", "list", "--store", str(copy))
    assert code == 0, document
    (entry,) = document["result"]["snapshots"]
    assert entry["verified"] is False
    code, document, _ = run_json(capsys, "snapshot", "show", snapshot_id, "--store", str(copy))
    assert code == 0, document
    assert document["result"]["verification"] is None


# Log bodies with a valid hash chain but a shape no Rollgate writes (the chain
# proves nothing was edited after writing, not who wrote it): each crashed its
# reader with exit 3 before ledger.read_as.
LOG_BODIES = {
    "release schema version text": ("releases", {"schema_version": "x", "services": {}}),
    "release services a list": ("releases", {"schema_version": 5, "services": []}),
    "release commit a number": (
        "releases",
        {"schema_version": 5, "commit": 7, "services": {"cluster": "c", "services": {}}},
    ),
    "rollback start fingerprint a list": ("rollback-starts", {"fingerprint": ["a"]}),
    "finished rollback without a plan": ("rollbacks", {"plan": 5}),
}


@pytest.mark.parametrize("case", list(LOG_BODIES), ids=list(LOG_BODIES))
def test_a_log_entry_of_the_wrong_shape_is_a_broken_log_not_a_crash(
    capsys, monkeypatch, tmp_path: Path, empty_dsn: str, case: str
):
    from rollback import ledger
    from rollback.store import open_store

    log, body = LOG_BODIES[case]
    store = tmp_path / "store"
    store.mkdir()
    ledger.append(open_store(str(store)), log, body)
    # rollback run reads the rollback logs before it calls AWS (a dead loopback port).
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "hostile")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hostile")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")

    verbs = [["release", "list"], ["rollback", "plan"]] if log == "releases" else []
    for verb in [*verbs, ["rollback", "run"]]:
        code, document, _ = run_json(capsys, *verb, "--store", str(store), "--dsn", empty_dsn)
        assert code == 1, (verb, document)
        assert document["error"]["type"] == "ChainBroken"
        assert "00000001.json" in document["error"]["message"]


def _without_aws_region(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "hostile")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hostile")


# (the setting, what botocore calls its failure)
AWS_SETUPS = {
    "no region": ({}, "NoRegionError"),
    "malformed region": ({"AWS_DEFAULT_REGION": "not/a/region"}, "InvalidRegionError"),
    "missing profile": (
        {"AWS_DEFAULT_REGION": "us-east-1", "AWS_PROFILE": "no-such-profile"},
        "ProfileNotFound",
    ),
}


@pytest.mark.parametrize("setup", list(AWS_SETUPS), ids=list(AWS_SETUPS))
def test_an_aws_setup_that_cannot_reach_aws_is_exit_2_not_a_crash(
    capsys, monkeypatch, tmp_path: Path, empty_dsn: str, setup: str
):
    environment, expected = AWS_SETUPS[setup]
    _without_aws_region(monkeypatch, tmp_path)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    store = tmp_path / "store"
    store.mkdir()
    argv = ["rollback", "run", "--store", str(store), "--dsn", empty_dsn]
    code, document, _ = run_json(capsys, *argv)
    assert code == 2, document
    assert expected in document["error"]["message"]
    assert "AWS_DEFAULT_REGION" in document["error"]["message"]


@pytest.mark.parametrize("endpoint", ["notaurl", "http://", "ftp://127.0.0.1", "http://h:99999"])
def test_an_endpoint_that_is_not_a_url_is_refused_as_usage(
    capsys, monkeypatch, tmp_path: Path, endpoint: str
):
    _without_aws_region(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # As the option, on every verb that takes it...
    for verb in (["snapshot", "list"], ["release", "list"]):
        argv = [*verb, "--store", "s3://bucket/p", "--aws-endpoint-url", endpoint]
        code, document, _ = run_json(capsys, *argv)
        assert code == 2, (verb, document)
        assert "--aws-endpoint-url" in document["error"]["message"]
    # ...and from the environment, which botocore also reads on its own.
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    for verb in (["snapshot", "list"], ["release", "list"]):
        code, document, _ = run_json(capsys, *verb, "--store", "s3://bucket/p")
        assert code == 2, (verb, document)
        assert "AWS_ENDPOINT_URL" in document["error"]["message"]


# libpq reads these on every connection, the throwaway servers' included: a
# malformed one crashed db check (PGCONNECT_TIMEOUT: psycopg's ProgrammingError),
# stopped the embedded server (PGPORT) or read like a lost connection (PGSSLMODE).
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PGCONNECT_TIMEOUT", "soon"),
        ("PGPORT", "abc"),
        ("PGPORT", "5432,70000"),
        ("PGSSLMODE", "bogus"),
        ("PGTARGETSESSIONATTRS", "leader"),
    ],
)
def test_a_malformed_libpq_variable_is_named_before_any_work(
    empty_dsn: str, capsys, monkeypatch, variable: str, value: str
):
    monkeypatch.setenv(variable, value)
    for verb in (["db", "check"], ["db", "status", "--dsn", empty_dsn]):
        code, document, _ = run_json(capsys, *verb)
        assert code == 2, (verb, document)
        assert f"${variable}" in document["error"]["message"], document


def test_an_interrupt_that_a_library_cleanup_turns_into_its_own_error_is_still_130(capsys):
    # SIGTERM during the checksum read: psycopg, unwinding its pipeline, raised
    # "cannot exit pipeline mode while busy", and the run reported a lost
    # connection (exit 2) instead of an interrupt (seen with snapshot create).
    from rollgate.error_handler import Interrupted, run_guarded

    def interrupted_in_a_pipeline() -> int:
        try:
            raise Interrupted()
        finally:
            raise psycopg.OperationalError("cannot exit pipeline mode while busy")

    code = run_guarded(interrupted_in_a_pipeline, command_name="snapshot create", as_json=True)
    document = json.loads(capsys.readouterr().out)
    assert code == document["exit_code"] == 130
    assert "interrupted" in document["error"]["message"]
    assert "pipeline" in document["error"]["message"]


def test_library_warnings_go_through_the_scrubber(tmp_path: Path):
    # psycopg logs "error ignored in rollback on <connection ...>" when a run is
    # interrupted mid-query; Python printed it raw on stderr, past the scrubber.
    import subprocess
    import sys

    script = (
        "import logging\n"
        "from core.redaction import register_secret\n"
        "from rollgate.error_handler import run_guarded\n"
        "register_secret('hunter2-secret')\n"
        "def command():\n"
        "    logging.getLogger('psycopg').warning('error ignored on dsn password=hunter2-secret')\n"
        "    return 0\n"
        "raise SystemExit(run_guarded(command, command_name='x', as_json=False))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert "error ignored" in done.stderr
    assert "hunter2-secret" not in done.stderr


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_results_that_cannot_be_written_are_exit_2_not_a_traceback(tmp_path: Path, as_json):
    # stdout on a full disk: the text run crashed (exit 3 and a crash file for
    # a finished command), the --json run printed a raw traceback.
    import subprocess
    import sys

    store = tmp_path / "store"
    store.mkdir()
    argv = ["snapshot", "list", "--store", str(store), *(["--json"] if as_json else [])]
    with Path("/dev/full").open("w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "rollgate", *argv],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parents[2],
        )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "rollgate-crash" not in done.stderr
    assert "could not write the output to stdout: No space left on device" in done.stderr


@pytest.mark.parametrize(
    "value",
    ["img\rFAILED: forged line", "red\x1b[31m", "evil\u202etxt", "bell\x07"],
    ids=["carriage return", "escape", "bidi override", "bell"],
)
def test_an_argument_with_a_control_character_is_refused_before_anything_runs(
    capsys, tmp_path: Path, value: str
):
    # It was stored in the manifest and printed raw: a forged FAILED line, or
    # an escape sequence the terminal obeyed.
    store = tmp_path / "store"
    argv = ["snapshot", "create", "--store", str(store), "--release-commit", value]
    code, document, _ = run_json(capsys, *argv)
    assert code == 2, document
    assert "control character" in document["error"]["message"]
    assert not store.exists()


def test_control_characters_from_a_store_print_escaped(capsys, snapshot_store, tmp_path: Path):
    store, snapshot_id = snapshot_store
    copy = tmp_path / "store"
    manifest = _copy_store(store, snapshot_id, copy) / "manifest.json"
    forge_manifest(manifest, _set("database", value="shop\x1b[2J\u202e"))
    assert main(["snapshot", "show", snapshot_id, "--store", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert "shop\\x1b[2J\\u202e" in out
