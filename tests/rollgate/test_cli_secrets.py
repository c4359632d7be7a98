"""No byte of a password in any output or crash file, for any DSN shape, valid or not.

Rows a, b and t of issue 6: every DSN below once printed its password (or
crashed with exit 3). They now exit 2 naming what is wrong, through --dsn and
through DATABASE_URL, with and without --json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rollgate.conftest import ROOT, run

MARKER = "ProbeSecret9"
FRAGMENTS = (MARKER, "Probe", "Secret9", "Hunter2", "Wrong")

LEAKY_DSNS = [
    pytest.param("mysql://u:ProbeSecret9@127.0.0.1/db", id="other-scheme"),
    pytest.param("mysqll://u:ProbeSecret9@127.0.0.1/x", id="typo-scheme"),
    pytest.param("postgresql://u:ProbeSecret9@[::1", id="unbalanced-ipv6"),
    pytest.param("postgresql://u:ProbeSecret9%ZZ@/x", id="bad-percent-escape"),
    pytest.param("postgresql://u:Hunter2@Wrong@/x", id="at-in-password"),
    pytest.param("postgresql://u:a@ProbeSecret9@/x?host=/nonexistent", id="at-then-host"),
    pytest.param("postgresql://u:Probe/Secret9@127.0.0.1:1/x", id="slash-in-password"),
    pytest.param("postgresql://u:Probe:Secret9#?@127.0.0.1:1/x", id="colon-hash-question"),
    pytest.param("postgresql://u:Probe Secret9@127.0.0.1:1/x", id="space-in-url"),
    pytest.param("postgresql://u:'Probe\"Secret9@[::1", id="quotes-in-url"),
    pytest.param("postgresql://u:ProbeSecret9é€@127.0.0.1:1/x", id="non-ascii"),
    pytest.param("postgresql://u@127.0.0.1:1/x?password=ProbeSecret9", id="query-password"),
    pytest.param("host=127.0.0.1 port=1 password='Hunter2 Wrong'", id="quoted-keyword"),
    pytest.param("host=127.0.0.1 port=1 password=Hunter2\\ Wrong", id="escaped-space"),
    pytest.param("host=127.0.0.1 port=1 password=Hunter2 Wrong", id="unquoted-space"),
    pytest.param("host=127.0.0.1 PASSWORD = ProbeSecret9", id="upper-case-key"),
    pytest.param("host=/tmp password=ProbeSecret9\udcff", id="undecodable-byte"),
]


@pytest.fixture
def crash_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Crash files land here, so a test can read every one written."""
    directory = tmp_path / "crashes"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    yield directory


def assert_no_secret(*outputs: str, crash_dir: Path | None = None) -> None:
    """No traceback in what was printed, and no password fragment there or in crash files."""
    crashes = [path.read_text() for path in crash_dir.iterdir()] if crash_dir else []
    for text in outputs:
        assert "Traceback" not in text
    for text in (*outputs, *crashes):
        for fragment in FRAGMENTS:
            assert fragment not in text, f"{fragment!r} leaked in: {text}"


@pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
@pytest.mark.parametrize("through", ["--dsn", "DATABASE_URL"])
@pytest.mark.parametrize("dsn", LEAKY_DSNS)
def test_no_dsn_shape_prints_its_password(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    crash_dir: Path,
    *,
    dsn: str,
    through: str,
    as_json: bool,
) -> None:
    argv = ["db", "status"] + (["--json"] if as_json else [])
    if through == "--dsn":
        argv += ["--dsn", dsn]
    else:
        monkeypatch.setenv("DATABASE_URL", dsn)
    code, out, err = run(capsys, *argv)
    assert code == 2, err
    assert_no_secret(out, err, crash_dir=crash_dir)
    if as_json:
        payload = json.loads(out)
        assert payload["exit_code"] == 2 and payload["error"]["message"]
    else:
        assert err.startswith("FAILED: ")


def test_an_undecodable_byte_in_the_dsn_exits_2_not_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "db", "status", "--dsn", "host=/tmp password=x\udcff")
    assert code == 2
    assert "FAILED: invalid DSN: character 21 is a byte that is not valid UTF-8" in err


def test_a_mistyped_option_holding_a_dsn_is_not_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--json", "db", "status", "--dns=postgresql://u:ProbeSecret9@h/x")
    assert code == 2
    assert "unrecognized arguments: ***" in err
    assert_no_secret(out, err)


def test_a_crash_file_never_holds_the_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, crash_dir: Path
) -> None:
    import rollgate.commands.db as db_commands

    dsn = "postgresql://app:ProbeSecret9@127.0.0.1:1/app"

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"simulated bug while holding {dsn!r} and {MARKER}")

    monkeypatch.setattr(db_commands, "load_migrations", explode)
    code, out, err = run(capsys, "db", "status", "--dsn", dsn)
    assert code == 3
    (crash_file,) = crash_dir.iterdir()
    crash = crash_file.read_text()
    assert "RuntimeError: simulated bug while holding '***' and ***" in crash
    assert MARKER not in crash and MARKER not in out + err


def test_pgpassword_is_scrubbed_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, crash_dir: Path
) -> None:
    import rollgate.commands.db as db_commands

    monkeypatch.setenv("PGPASSWORD", MARKER)

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"it was {os.environ['PGPASSWORD']}")

    monkeypatch.setattr(db_commands, "load_migrations", explode)
    code, out, err = run(capsys, "db", "status", "--dsn", "host=127.0.0.1 port=1")
    assert code == 3 and "it was ***" in err
    assert_no_secret(out, err, crash_dir=crash_dir)


@pytest.mark.parametrize(
    "argv",
    [
        [b"--dsn", b"host=/tmp password=ProbeSecret9\xff", b"db", b"status"],
        [b"--json", b"--dsn", b"postgresql://u:Probe\xffSecret9@[::1", b"db", b"status"],
        [b"--dsn", b"mysql://u:ProbeSecret9@127.0.0.1/x", b"sample", b"--json"],
        [b"db", b"status", b"--dsn", b"postgresql://u:a@ProbeSecret9@/x?host=/nonexistent"],
    ],
    ids=["undecodable-keyword", "undecodable-url-json", "scheme-json", "at-in-password"],
)
def test_real_processes_with_raw_bytes_in_argv(argv: list[bytes], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable.encode(), b"-m", b"rollgate", *argv],
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)},
        timeout=60,
        check=False,
    )
    out = result.stdout.decode("utf-8", "replace")
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, err
    assert_no_secret(out, err, crash_dir=tmp_path)
    if b"--json" in argv:
        assert json.loads(out)["exit_code"] == 2
