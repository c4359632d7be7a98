"""Session-wide Postgres for the test suite.

One throwaway server per backend per session. Tests never share a database:
``make_database`` hands out fresh ones (optionally cloned from a template) and
drops them afterwards, pass or fail.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable, Iterator

import pytest

from db.migrations import BUNDLED_MIGRATIONS, load_migrations
from db.runner import MigrationRunner
from db.throwaway import (
    ThrowawayPostgres,
    create_database,
    drop_database,
    mark_as_template,
    start_throwaway,
)

# Loopback only, and no reaper image (it cannot be pulled): fixtures clean up.
os.environ.setdefault("TC_HOST", "127.0.0.1")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

MakeDatabase = Callable[..., str]


@pytest.fixture(scope="session")
def embedded_server() -> Iterator[ThrowawayPostgres]:
    with start_throwaway("embedded") as server:
        yield server


@pytest.fixture(scope="session")
def docker_server() -> Iterator[ThrowawayPostgres]:
    with start_throwaway("docker") as server:
        yield server


@pytest.fixture(scope="session")
def server(embedded_server: ThrowawayPostgres) -> ThrowawayPostgres:
    """The default throwaway server (embedded)."""
    return embedded_server


@pytest.fixture(
    scope="session",
    params=["embedded", pytest.param("docker", marks=pytest.mark.docker)],
)
def each_server(request: pytest.FixtureRequest) -> ThrowawayPostgres:
    """Runs the test once per backend: embedded, then docker."""
    server: ThrowawayPostgres = request.getfixturevalue(f"{request.param}_server")
    return server


_counter = itertools.count()


def _database_factory(server: ThrowawayPostgres) -> Iterator[MakeDatabase]:
    created: list[str] = []

    def make(template: str | None = None) -> str:
        name = f"t{next(_counter)}_{secrets.token_hex(3)}"
        dsn = create_database(server, name, template=template)
        created.append(name)
        return dsn

    yield make
    for name in created:
        drop_database(server, name)


@pytest.fixture
def make_database(server: ThrowawayPostgres) -> Iterator[MakeDatabase]:
    """Factory: ``make_database(template=None) -> dsn`` of a fresh database."""
    yield from _database_factory(server)


@pytest.fixture
def make_database_on(each_server: ThrowawayPostgres) -> Iterator[MakeDatabase]:
    """Like ``make_database`` but on every backend in turn."""
    yield from _database_factory(each_server)


@pytest.fixture
def empty_dsn(make_database: MakeDatabase) -> str:
    """DSN of a fresh, empty database on the default server."""
    return make_database()


MIGRATED_TEMPLATE = "rollgate_migrated_template"


def _migrated_template(server: ThrowawayPostgres) -> str:
    """Migrate once per session with the real runner; tests clone it (pytest-postgresql style)."""
    dsn = create_database(server, MIGRATED_TEMPLATE)
    with MigrationRunner(dsn, load_migrations(BUNDLED_MIGRATIONS)) as runner:
        runner.migrate()
    mark_as_template(server, MIGRATED_TEMPLATE)
    return MIGRATED_TEMPLATE


@pytest.fixture(scope="session")
def migrated_template(server: ThrowawayPostgres) -> str:
    return _migrated_template(server)


@pytest.fixture
def migrated_dsn(make_database: MakeDatabase, migrated_template: str) -> str:
    """DSN of a fresh database with every bundled migration applied (a template clone)."""
    return make_database(template=migrated_template)
