"""``--snapshot ID --store DIR``: the suite starts from a restored rollback snapshot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from core.postgres import connect
from db.migrations import BUNDLED_MIGRATIONS, load_migrations
from db.runner import MigrationRunner
from db.sample import generate_sample
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
