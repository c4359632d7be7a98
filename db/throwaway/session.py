"""Which test session a throwaway server belongs to, and what a session left behind.

Two test runs (two CI jobs, two developers) can share one machine. Each run of
``scripts/run-tests`` exports ``ROLLGATE_TEST_SESSION=<random id>``; every
throwaway server started under it carries the id:

* embedded: in its data directory's name, ``embedded-<pid>-<token>-s<session>``;
* docker: as the container label ``rollgate.session=<session>``.

The leftover check at the end of the run asks only about its own session, so
another run's servers, alive and busy, never fail it::

    python -m db.throwaway.session leftovers <session>   # exit 1 if any, listed
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from core.errors import CannotRun

SESSION_ENV = "ROLLGATE_TEST_SESSION"
LABEL_SESSION = "rollgate.session"

_SESSION = re.compile(r"^[a-z0-9]{1,32}$")
# embedded-<owner pid>-<token>[-s<session>]
EMBEDDED_DIRECTORY = re.compile(r"^embedded-(?P<pid>\d+)-[0-9a-f]+(?:-s(?P<session>[a-z0-9]+))?$")


def current_session() -> str | None:
    """The session id from ``$ROLLGATE_TEST_SESSION``, or None outside a test session."""
    value = os.environ.get(SESSION_ENV, "").strip()
    if not value:
        return None
    if not _SESSION.match(value):
        raise CannotRun(
            f"{SESSION_ENV}={value!r} is not a session id: use 1-32 lower-case letters and digits"
        )
    return value


def embedded_directory_name(pid: int, token: str, session: str | None) -> str:
    """The data directory name of an embedded server (see ``EMBEDDED_DIRECTORY``)."""
    return f"embedded-{pid}-{token}" + (f"-s{session}" if session else "")


def session_of_directory(name: str) -> str | None:
    """The session an embedded data directory belongs to, or None."""
    match = EMBEDDED_DIRECTORY.match(name)
    return match["session"] if match else None


def embedded_leftovers(session: str, root: Path | None = None) -> list[Path]:
    """Data directories of embedded servers started under ``session``."""
    if root is None:
        from db.throwaway.embedded import THROWAWAY_ROOT

        root = THROWAWAY_ROOT
    if not root.is_dir():
        return []
    return sorted(entry for entry in root.iterdir() if session_of_directory(entry.name) == session)


def docker_leftovers(session: str) -> list[str]:
    """Names of containers (running or not) started under ``session``."""
    from db.throwaway.docker import LABEL_THROWAWAY, connect_docker

    client = connect_docker()
    try:
        containers = client.containers.list(
            all=True,
            filters={"label": [f"{LABEL_THROWAWAY}=1", f"{LABEL_SESSION}={session}"]},
        )
        return sorted(str(container.name) for container in containers)
    finally:
        client.close()


def leftovers(session: str, *, docker: bool = True, root: Path | None = None) -> list[str]:
    """Everything ``session`` left behind: data directories, then containers."""
    found = [str(path) for path in embedded_leftovers(session, root)]
    if docker:
        found += [f"container {name}" for name in docker_leftovers(session)]
    return found


def main(argv: Sequence[str]) -> int:
    """``leftovers <session> [--no-docker]``: list them on stderr; exit 1 if any."""
    if len(argv) < 2 or argv[0] != "leftovers" or not _SESSION.match(argv[1]):
        usage = "usage: python -m db.throwaway.session leftovers <session> [--no-docker]"
        print(usage, file=sys.stderr)
        return 2
    found = leftovers(argv[1], docker="--no-docker" not in argv[2:])
    if found:
        print(
            f"test session {argv[1]} left throwaway servers or containers behind:", file=sys.stderr
        )
        for item in found:
            print(f"  {item}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
