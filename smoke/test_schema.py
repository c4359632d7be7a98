"""Migrations apply with the production runner, within the lock budget, and the
result is exactly the canonical schema, with every verify script passing."""

from __future__ import annotations

import pytest

from core.postgres import connect
from db.catalog import diff_catalogs, read_catalog
from db.contract import canonical_catalog
from db.errors import MigrationFailed
from db.sqlfile import execute_script
from smoke.prepare import Prepared


def test_pending_migrations_apply(prepared: Prepared) -> None:
    if prepared.migrate_error:
        pytest.fail(f"the runner could not apply {prepared.migrate_error}", pytrace=False)


def test_migrations_block_writers_within_the_lock_budget(prepared: Prepared) -> None:
    over = [m.describe() for m in prepared.locks if not m.within_budget]
    if over:
        pytest.fail(
            "writers would be blocked past the budget: "
            + "; ".join(over)
            + ". Split the migration (NOT VALID + VALIDATE, CONCURRENTLY, batches) or "
            "raise --lock-budget if the outage is acceptable",
            pytrace=False,
        )


def test_catalog_equals_the_canonical_schema(
    prepared: Prepared, pytestconfig: pytest.Config
) -> None:
    schema = pytestconfig.getoption("--smoke-schema")
    canonical = canonical_catalog(prepared.server, schema)
    with connect(prepared.dsn) as conn:
        live = read_catalog(conn)
    differences = diff_catalogs(canonical, live)
    if differences:
        shown = "; ".join(str(d.describe()) for d in differences[:10])
        pytest.fail(
            f"the migrated database differs from {schema} in {len(differences)} place(s): "
            f"{shown}. Make the migrations and the schema file agree (`rollgate db check`)",
            pytrace=False,
        )


def test_verify_scripts_pass(prepared: Prepared) -> None:
    problems = []
    with connect(prepared.dsn) as conn:
        applied = {m.version for m in prepared.applied}
        for migration in prepared.migrations:
            if migration.version > prepared.start_version and migration.version not in applied:
                continue
            try:
                with conn.transaction(force_rollback=True):
                    execute_script(conn, migration.verify)
            except MigrationFailed as exc:
                problems.append(f"{migration.label}: {exc.message}")
    if problems:
        pytest.fail("verify scripts failed: " + "; ".join(problems), pytrace=False)
