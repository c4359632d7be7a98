"""Fixtures for the gate and the rehearsal: reuse the rollback ones (moto, logical WAL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.migrations import BUNDLED_MIGRATIONS, load_migrations
from db.runner import MigrationRunner
from release.scenarios import load_scenario, materialize
from tests.rollback.conftest import (  # noqa: F401 (fixtures, re-exported for this directory)
    logical_server,
    make_logical_database,
    moto_endpoint,
    s3_bucket,
)


@pytest.fixture
def production_dsn(make_logical_database) -> str:  # noqa: F811 (the imported fixture)
    """A database at the bundled migrations (release N), with a few rows of each kind."""
    dsn = make_logical_database()
    with MigrationRunner(dsn, load_migrations(BUNDLED_MIGRATIONS)) as runner:
        runner.migrate()
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO public.customers (name, email) VALUES ('Ada', 'ada@example.com')")
        conn.execute(
            "INSERT INTO public.payment_events (stripe_event_id, event_type, amount_minor, "
            "currency) SELECT 'evt_' || g, 'charge.succeeded', g * 100, 'usd' "
            "FROM generate_series(1, 20) g"
        )
        conn.execute(
            "INSERT INTO public.execution_tasks (status, payload) "
            "SELECT 'succeeded', jsonb_build_object('n', g) FROM generate_series(1, 10) g"
        )
    return dsn


def scenario_migrations(name: str, tmp_path: Path) -> Path:
    return materialize(load_scenario(name), tmp_path / f"migrations-{name}")
