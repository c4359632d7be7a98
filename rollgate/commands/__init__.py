"""One module per command group; each verb is a plain function returning an ``Outcome``.

Verbs never print. They return what happened (``result``, for ``--json``)
and how to say it to a person (``text``); ``rollgate.cli`` chooses which to
print. Progress on long work goes through ``Options.progress`` to stderr.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

from core.errors import CannotRun
from db.config import ProjectConfig


@dataclass(frozen=True)
class Options:
    """Global options, resolved once (flags, then environment, then defaults)."""

    dsn: str | None
    migrations_dir: Path
    schema_path: Path
    config: ProjectConfig = field(default_factory=ProjectConfig)
    progress: Callable[[str], None] = field(default=lambda message: None)
    # Asks a person to confirm a destructive step; False when nobody can answer.
    confirm: Callable[[str], bool] = field(default=lambda question: False)

    def require_dsn(self) -> str:
        if not self.dsn:
            raise CannotRun(
                "no database given: pass --dsn postgresql://..., set DATABASE_URL, "
                "or set libpq's PGHOST (or PGSERVICE)"
            )
        return self.dsn


@dataclass(frozen=True)
class Outcome:
    """What a verb did: an exit code (0 or 1), a JSON-able result and human text."""

    exit_code: int
    result: dict[str, Any]
    text: str


#: libpq variables named in the conninfo built from the environment. PGPASSWORD is
#: left out on purpose: libpq (and pg_dump) read it from the environment themselves,
#: so it never becomes part of a string that could be printed.
_LIBPQ_ENVIRONMENT = {
    "PGSERVICE": "service",
    "PGHOST": "host",
    "PGPORT": "port",
    "PGDATABASE": "dbname",
    "PGUSER": "user",
    "PGSSLMODE": "sslmode",
    "PGSSLROOTCERT": "sslrootcert",
}


def libpq_environment_dsn(environ: Mapping[str, str]) -> str | None:
    """A conninfo from libpq's PG* variables when PGHOST or PGSERVICE is set, else None.

    The ECS migrate and audit tasks get PGHOST, PGPORT, PGDATABASE, PGUSER,
    PGPASSWORD, PGSSLMODE and PGSSLROOTCERT instead of a URL (infra.tasks). Only an
    explicit host or service opts in: a bare PGUSER must not silently mean the local
    socket's database. The values are spelled out (rather than the empty conninfo)
    so the DSN is never an empty string that reads as "no database".
    """
    if not (environ.get("PGHOST") or environ.get("PGSERVICE")):
        return None
    return make_conninfo(
        **{key: environ[name] for name, key in _LIBPQ_ENVIRONMENT.items() if environ.get(name)}
    )
