"""Directories a command writes its reports to: checked before the work, not after.

A gate or a rehearsal runs for minutes; finding out at the end that its
``--report-dir`` is a file, sits under a file, or is on a read-only disk
would lose the report of work already done. Commands call
``writable_directory`` first, and a bad location is a usage problem (exit 2)
that names the option, never a traceback.
"""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path

from core.errors import CannotRun


def writable_directory(path: Path, what: str) -> Path:
    """``path``, created if missing, once a file could be written in it; else ``CannotRun``."""
    probe = path / f".rollgate-probe-{secrets.token_hex(4)}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CannotRun(f"cannot write {what} in {path}: {reason}") from None
    finally:
        # The probe may never have been written (the directory is not one).
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
    return path
