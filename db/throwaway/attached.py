"""A throwaway server that another process started, handed over for a while.

The gate restores and verifies a snapshot on its throwaway server, then runs
the smoke suite (a subprocess, so a crashing check cannot take the gate down)
on that very copy: a second server and a second restore would double the
gate's cost on a large database. ``handoff(server)`` describes the server in
one JSON string, which travels in an environment variable, never in argv,
because it holds the server's (throwaway, random) passwords; ``attach()``
turns it back into a ``ThrowawayPostgres`` in the other process.

The attached side does not own the server: ``close()`` leaves it running,
and the databases it created go when the owner stops the server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

from core.errors import CannotRun

#: The environment variable a handoff travels in.
HANDOFF_VARIABLE = "ROLLGATE_THROWAWAY_HANDOFF"
_FIELDS = ("backend", "major_version", "superuser_dsn", "owner_dsn", "client_bin")


def handoff(server: Any) -> str:
    """``server`` (a ``ThrowawayPostgres``) as the JSON string ``attach`` reads."""
    try:
        client_bin = str(server.client_bin())
    except CannotRun:
        client_bin = ""
    return json.dumps(
        {
            "backend": server.backend,
            "major_version": server.major_version,
            "superuser_dsn": server.dsn("postgres"),
            "owner_dsn": server.owner_dsn("postgres"),
            "client_bin": client_bin,
        }
    )


@dataclass
class AttachedPostgres:
    """A ``ThrowawayPostgres`` whose server someone else started and will stop."""

    backend: str
    major_version: int
    superuser_dsn: str = field(repr=False)
    owner_base_dsn: str = field(repr=False)
    client_bin_path: str
    warnings: list[str] = field(default_factory=list)

    def dsn(self, dbname: str = "postgres") -> str:
        return make_conninfo(self.superuser_dsn, dbname=dbname)

    def owner_dsn(self, dbname: str) -> str:
        return make_conninfo(self.owner_base_dsn, dbname=dbname)

    def client_bin(self) -> Path:
        if not self.client_bin_path:
            raise CannotRun("the attached throwaway server came without client tools")
        return Path(self.client_bin_path)

    def close(self) -> None:
        """Nothing to stop: the process that started the server stops it."""

    def __enter__(self) -> AttachedPostgres:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def attach(described: str) -> AttachedPostgres:
    """The server ``handoff`` described; ``CannotRun`` when the description is unusable."""
    try:
        data = json.loads(described)
        values = {name: data[name] for name in _FIELDS}
        major = int(values["major_version"])
    except (ValueError, TypeError, KeyError) as exc:
        raise CannotRun(
            f"{HANDOFF_VARIABLE} does not describe a throwaway server ({type(exc).__name__}); "
            "it is set by the gate, not by hand"
        ) from None
    return AttachedPostgres(
        backend=str(values["backend"]),
        major_version=major,
        superuser_dsn=str(values["superuser_dsn"]),
        owner_base_dsn=str(values["owner_dsn"]),
        client_bin_path=str(values["client_bin"]),
    )
