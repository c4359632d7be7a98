"""Readiness: database, queue and the schema range this release declares."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from app import schema
from db.migrations import BUNDLED_MIGRATIONS, load_migrations
from db.runner import MigrationRunner
from tests.app.conftest import AppProcess, Queues, env_for, free_port, http_get

StartApp = Callable[..., AppProcess]


def migrated_to(dsn: str, version: int) -> str:
    with MigrationRunner(dsn, load_migrations(BUNDLED_MIGRATIONS)) as runner:
        runner.migrate(target=version)
    return dsn


def check(dsn: str) -> schema.SchemaState:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return schema.check_schema(conn)


def test_the_release_needs_every_bundled_migration() -> None:
    bundled = [(m.version, m.label) for m in load_migrations(BUNDLED_MIGRATIONS)]
    assert list(schema.REQUIRED_MIGRATIONS) == bundled


@pytest.mark.slow
def test_ready_on_the_current_schema_and_not_on_the_seed_incidents_schema(
    make_database: Callable[..., str],
    migrated_dsn: str,
    queues: Queues,
    start_app: StartApp,
    tmp_path: pytest.TempPathFactory,
) -> None:
    current = start_app("web", env_for(migrated_dsn, queues, tmp_path))  # type: ignore[arg-type]
    status, body = http_get(current.url + "/readyz")
    assert status == 200, body
    assert body["checks"]["schema"]["version"] == schema.MIN_SCHEMA_VERSION

    # The seed's incident: the app ran against a schema without ai_model.
    old = migrated_to(make_database(), 1)
    stale = start_app("web", env_for(old, queues, tmp_path))  # type: ignore[arg-type]
    status, body = http_get(stale.url + "/readyz")
    assert status == 503
    assert body["ready"] is False
    assert body["checks"]["database"]["ok"] is True
    assert "missing 0002_add_ai_model" in body["checks"]["schema"]["message"]
    # Liveness is not readiness: the process is alive.
    assert http_get(stale.url + "/healthz")[0] == 200


@pytest.mark.slow
def test_not_ready_when_the_queue_is_unreachable(
    migrated_dsn: str, queues: Queues, start_app: StartApp, tmp_path: pytest.TempPathFactory
) -> None:
    env = env_for(migrated_dsn, queues, tmp_path)  # type: ignore[arg-type]
    env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    web = start_app("web", env)
    status, body = http_get(web.url + "/readyz", timeout=30)
    assert status == 503
    assert body["checks"]["queue"]["ok"] is False
    assert body["checks"]["schema"]["ok"] is True


def test_reads_rollgate_schema_migrations_after_the_move(migrated_dsn: str) -> None:
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('rollgate.schema_migrations')").fetchone() == (None,):
            conn.execute("CREATE SCHEMA IF NOT EXISTS rollgate")
            conn.execute("ALTER TABLE public.schema_migrations SET SCHEMA rollgate")
        # Someone else's table of the legacy name must not be read instead.
        conn.execute("CREATE TABLE public.schema_migrations (version text PRIMARY KEY)")
        conn.execute("INSERT INTO public.schema_migrations VALUES ('20240101000000')")
        assert schema.history_table(conn) == "rollgate.schema_migrations"
    assert check(migrated_dsn).ok


def test_a_foreign_schema_migrations_table_is_not_rollgates(empty_dsn: str) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.schema_migrations (version text PRIMARY KEY)")
    state = check(empty_dsn)
    assert not state.ok
    assert state.message.startswith("no Rollgate migration history")


def test_a_schema_newer_than_the_release_supports_is_not_ready(migrated_dsn: str) -> None:
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        table = schema.history_table(conn)
        assert table is not None
        conn.execute(
            f"INSERT INTO {table} (version, name, state, up_sha256, down_sha256, verify_sha256, "
            "applied_by) SELECT %s, 'future', 'applied', '', '', '', 'test'",
            (schema.MAX_SCHEMA_VERSION + 1,),
        )
    state = check(migrated_dsn)
    assert not state.ok
    assert "newer than this release supports" in state.message


def test_a_half_applied_migration_is_not_ready(migrated_dsn: str) -> None:
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        table = schema.history_table(conn)
        conn.execute(f"UPDATE {table} SET state = 'applying' WHERE version = 5")
    state = check(migrated_dsn)
    assert not state.ok
    assert "half-applied" in state.message
