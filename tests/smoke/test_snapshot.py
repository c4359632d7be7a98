"""``--snapshot ID --store DIR``: the suite starts from a restored rollback snapshot."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from core.postgres import connect
from db.migrations import BUNDLED_MIGRATIONS, load_migrations
from db.runner import MigrationRunner
from db.sample import generate_sample
from db.throwaway import ThrowawayPostgres, create_database, drop_database
from db.throwaway.attached import handoff
from smoke.run import SmokeReport
from tests.conftest import MakeDatabase
from tests.smoke.conftest import REPO

pytestmark = pytest.mark.slow


def test_the_suite_starts_from_a_restored_snapshot(
    make_database: MakeDatabase, tmp_path: Path, smoke: Callable[..., SmokeReport]
) -> None:
    dsn = make_database()
    with MigrationRunner(dsn, load_migrations(BUNDLED_MIGRATIONS)) as runner:
        runner.migrate(target=3)
    with connect(dsn) as conn:
        generate_sample(conn, 1024 * 1024)
        customers = conn.execute("SELECT count(*) FROM public.customers").fetchone()
    store = tmp_path / "store"
    created = subprocess.run(
        [sys.executable, "-m", "rollgate", "--json", "--dsn", dsn, "snapshot", "create"]  # noqa: RUF005
        + ["--store", str(store), "--no-slot"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    snapshot_id = json.loads(created.stdout)["result"]["id"]

    report = smoke(snapshot=snapshot_id, store=str(store), select="not test_app")
    assert report.exit_code == 0, report.summary["checks"]
    prepared = report.summary["prepared"]
    assert prepared["start_version"] == 3
    assert prepared["applied"] == ["0004_create_roi_views", "0005_grant_service_roles"]
    assert prepared["sample"] is None
    assert f"started from snapshot {snapshot_id} (schema version 0003)" in prepared["notes"]
    assert customers is not None and customers[0] > 0


def test_the_suite_starts_from_a_database_handed_over_and_drops_only_its_clone(
    server: ThrowawayPostgres, tmp_path: Path, smoke: Callable[..., SmokeReport]
) -> None:
    # What the gate does: the copy it verified, owned by the RDS-like role, on its server.
    name = f"handed_{secrets.token_hex(3)}"
    dsn = create_database(server, name, owner=True)
    try:
        with MigrationRunner(dsn, load_migrations(BUNDLED_MIGRATIONS)) as runner:
            runner.migrate(target=3)
        with connect(dsn) as conn:
            generate_sample(conn, 1024 * 1024)
        report = smoke(database=name, server_handoff=handoff(server), select="not test_app")
        assert report.exit_code == 0, report.summary["checks"]
        prepared = report.summary["prepared"]
        assert prepared["start_version"] == 3
        assert prepared["applied"] == ["0004_create_roi_views", "0005_grant_service_roles"]
        assert not {"restore_snapshot", "sample"} & set(prepared["timings_seconds"])
        assert any("no second restore" in note for note in prepared["notes"])
        # Borrowed, not owned: the server still runs, and only the suite's clone is gone.
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        assert name in names and f"{name}_revert" not in names
    finally:
        drop_database(server, name)


def test_a_start_database_without_its_server_is_refused(
    tmp_path: Path, smoke: Callable[..., SmokeReport]
) -> None:
    # Set by hand, without the gate's handoff: the suite could not run (pytest's exit 1
    # with an error in setup, reported as such), never a pass.
    report = smoke(database="gate_copy", server_handoff="{}", select="test_schema")
    assert report.exit_code != 0
    text = json.dumps(report.summary)
    assert "does not describe a throwaway server" in text
