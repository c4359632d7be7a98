""" "No traceback, no secret" as properties of the CLI, over generated inputs.

Hypothesis generates DSNs of every shape (URL with any scheme, keyword form,
query-string passwords; valid or broken) around passwords that hold the
marker ProbeSecret9 amid random special characters, and file names (odd
unicode, newlines, undecodable bytes, very long, missing, FIFOs, the wrong
kind of file) for --migrations, --schema and --config. The CLI runs
in-process through ``rollgate.cli.main``; a few cases also run as real
processes. Every run must exit 1 or 2, print no traceback, leave no password
fragment in stdout, stderr or crash files, and under --json print exactly
one JSON document.

Every host is a loopback address or a socket directory that does not exist,
and PGHOSTADDR pins any host name libpq might still see to 127.0.0.1: these
runs send no traffic off the machine.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollgate.cli import main
from tests.rollgate.conftest import ROOT, UNREACHABLE

MARKER = "ProbeSecret9"
FRAGMENTS = (MARKER, "ProbeSecret", "Secret9")

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Characters that break naive parsing: URL and conninfo syntax, quotes,
# escapes, whitespace, non-ASCII and an undecodable byte as argv carries it.
SPECIALS = "@:/?#[]%'\"\\=&, \t\n+;!$~é€😀\u00a0\udcff"
specials = st.text(alphabet=SPECIALS, max_size=4)
passwords = st.builds(lambda before, after: before + MARKER + after, specials, specials)


@st.composite
def url_dsns(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["postgresql", "postgres", "mysql", "POSTGRESQL", "pg"]))
    password = draw(passwords)
    if draw(st.booleans()):
        password = quote(password.encode("utf-8", "surrogateescape"), safe="")
    user = draw(st.sampled_from(["u", "app", "", "me%40corp"]))
    host = draw(st.sampled_from(["127.0.0.1:1", "[::1]:1", "[::1", "", "%ZZ", "127.0.0.1:x"]))
    tail = draw(st.sampled_from(["/x", "/x?host=/nonexistent", "/x?connect_timeout=2", "", "/"]))
    return f"{scheme}://{user}:{password}@{host}{tail}"


@st.composite
def keyword_dsns(draw: st.DrawFn) -> str:
    password = draw(passwords)
    key = draw(st.sampled_from(["password", "PASSWORD", "sslpassword", "password "]))
    value = draw(
        st.sampled_from(
            [
                password,  # bare: spaces and quotes break it
                "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'",  # libpq-quoted
                "'" + password,  # unterminated
                password.replace(" ", "\\ "),  # backslash-escaped spaces
            ]
        )
    )
    host = draw(st.sampled_from(["host=/nonexistent", "host=127.0.0.1 port=1", ""]))
    parts = [host, f"{key}= {value}", draw(st.sampled_from(["", "dbname=x", "user=u"]))]
    return " ".join(draw(st.permutations(parts)))


@st.composite
def query_dsns(draw: st.DrawFn) -> str:
    password = draw(passwords)
    if draw(st.booleans()):
        password = quote(password.encode("utf-8", "surrogateescape"), safe="")
    return f"postgresql://u@127.0.0.1:1/x?sslmode=disable&password={password}"


dsns = st.one_of(url_dsns(), keyword_dsns(), query_dsns())
verbs = st.sampled_from(
    [["db", "status"], ["db", "migrate", "--dry-run"], ["sample", "--size", "1MB"]]
)


@pytest.fixture
def crash_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "crashes"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    # Any host name libpq still sees is never looked up: loopback, port 1.
    monkeypatch.setenv("PGHOSTADDR", "127.0.0.1")
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "2")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    yield directory


def check_run(code: int, out: str, err: str, crash_dir: Path, *, as_json: bool) -> None:
    crashes = [path.read_text(errors="replace") for path in crash_dir.iterdir()]
    assert code in {1, 2}, err
    assert "Traceback" not in out + err
    for text in (out, err, *crashes):
        for fragment in FRAGMENTS:
            assert fragment not in text, f"{fragment!r} leaked: {text}"
    if as_json:
        document = json.loads(out)  # exactly one document: trailing text fails here
        assert document["ok"] is False and document["exit_code"] == code


@PROPERTY_SETTINGS
@given(
    dsn=dsns, verb=verbs, through=st.sampled_from(["--dsn", "--dsn=", "env"]), as_json=st.booleans()
)
def test_no_dsn_prints_a_password_or_a_traceback(
    capsys: pytest.CaptureFixture[str],
    crash_dir: Path,
    *,
    dsn: str,
    verb: list[str],
    through: str,
    as_json: bool,
) -> None:
    argv = [*verb, *(["--json"] if as_json else [])]
    with pytest.MonkeyPatch.context() as patch:
        if through == "env":
            patch.setenv("DATABASE_URL", dsn)
        elif through == "--dsn":
            argv += ["--dsn", dsn]
        else:
            argv.append(f"--dsn={dsn}")
        capsys.readouterr()
        code = main(argv)
        out, err = capsys.readouterr()
    check_run(code, out, err, crash_dir, as_json=as_json)


@PROPERTY_SETTINGS
@given(dsn=dsns, option=st.sampled_from(["--dns", "--dsn-url", "--password"]))
def test_a_mistyped_option_never_echoes_the_dsn(
    capsys: pytest.CaptureFixture[str], crash_dir: Path, dsn: str, option: str
) -> None:
    capsys.readouterr()
    code = main(["--json", "db", "status", f"{option}={dsn}"])
    out, err = capsys.readouterr()
    check_run(code, out, err, crash_dir, as_json=True)


# --- file names ---------------------------------------------------------------

name_characters = st.characters(
    codec="utf-8", exclude_characters="/\x00", categories=["L", "M", "N", "P", "S", "Z", "Cc"]
)
file_names = st.one_of(
    st.text(name_characters, min_size=1, max_size=40),
    st.text(name_characters, min_size=1, max_size=5).map(lambda s: s + "\n"),
    st.text(name_characters, min_size=1, max_size=5).map(lambda s: s + "\udcff"),
    st.integers(256, 5000).map(lambda n: "n" * n),  # longer than a file name may be
)
_fresh = itertools.count()


def make_path(base: Path, name: str, kind: str) -> Path:
    """``name`` under a fresh folder of ``base``, made into ``kind`` where it can be."""
    folder = base / f"case{next(_fresh)}"
    folder.mkdir()
    path = folder / name
    try:
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "directory":
            path.mkdir()
        elif kind == "file":
            path.write_bytes(b"\xff\xfe junk = [\n")
        elif kind == "symlink-loop":
            path.symlink_to(path)
    except OSError:
        pass  # too long to create: it stays a name that does not exist
    return path


@PROPERTY_SETTINGS
@given(
    name=file_names,
    kind=st.sampled_from(["missing", "fifo", "directory", "file", "symlink-loop"]),
    option=st.sampled_from(["--migrations", "--schema", "--config"]),
    as_json=st.booleans(),
)
def test_odd_file_names_exit_cleanly(
    capsys: pytest.CaptureFixture[str],
    crash_dir: Path,
    tmp_path: Path,
    *,
    name: str,
    kind: str,
    option: str,
    as_json: bool,
) -> None:
    path = make_path(tmp_path, name, kind)
    argv = ["db", "status", option, str(path), "--dsn", UNREACHABLE]
    capsys.readouterr()
    code = main(argv + (["--json"] if as_json else []))
    out, err = capsys.readouterr()
    check_run(code, out, err, crash_dir, as_json=as_json)


# --- a handful of real processes ----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        ([b"--json", b"db", b"status"], {b"DATABASE_URL": b"postgresql://u:a@ProbeSecret9\xff@/x"}),
        ([b"db", b"status", b"--dsn", b"host=/nonexistent password='ProbeSecret9 \xff"], {}),
        ([b"--json", b"sample", b"--dsn=mysql://u:%ZZProbeSecret9@127.0.0.1:1/x"], {}),
        (
            [
                b"db",
                b"status",
                b"--schema",
                b"/nonexistent/\xff\nx",
                b"--dsn",
                b"host=/nonexistent",
            ],
            {},
        ),
        ([b"--json", b"db", b"status", b"--config", b"n" * 5000], {}),
    ],
    ids=[
        "env-at-undecodable",
        "keyword-unterminated",
        "scheme-percent",
        "odd-schema",
        "long-config",
    ],
)
def test_real_processes_hold_the_same_properties(
    argv: list[bytes], env: dict[bytes, bytes], tmp_path: Path
) -> None:
    environment = {**os.environb, b"PYTHONPATH": str(ROOT).encode(), b"TMPDIR": bytes(tmp_path)}
    result = subprocess.run(
        [sys.executable.encode(), b"-m", b"rollgate", *argv],
        capture_output=True,
        cwd=ROOT,
        env={**environment, **env},
        timeout=60,
        check=False,
    )
    out = result.stdout.decode("utf-8", "replace")
    err = result.stderr.decode("utf-8", "replace")
    check_run(result.returncode, out, err, tmp_path, as_json=b"--json" in argv)
