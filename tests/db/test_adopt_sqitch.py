"""Adopting a real sqitch project: lint baseline, destructive reverts and db baseline.

The migrations are sqitch's own tutorial project, sqitchers/sqitch-intro
(deploy/, revert/ and verify/ of appschema, users and lists), converted by hand
as docs/adoption.md describes; tests/fixtures/sqitch_flipr/SOURCE.md maps each
file to its source.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg

from db.baseline import baseline
from db.check import run_check
from db.config import CatalogScope
from db.destructive import DROP_SCHEMA, DROP_TABLE, classify_reverts
from db.migrations import load_migrations
from db.runner import MigrationRunner
from db.throwaway import ThrowawayPostgres

FLIPR = Path(__file__).resolve().parents[1] / "fixtures" / "sqitch_flipr"
MIGRATIONS = FLIPR / "migrations"


def test_sqitch_reverts_are_expected_destructive_reverts() -> None:
    reverts = classify_reverts(load_migrations(MIGRATIONS))

    assert [(r.migration, r.kind, r.target, r.expected, r.loses_data) for r in reverts] == [
        ("0001_appschema", DROP_SCHEMA, "flipr", True, True),
        ("0002_users", DROP_TABLE, "flipr.users", True, True),
        ("0003_lists", DROP_TABLE, "flipr.lists", True, True),
    ]


def test_db_check_with_a_lint_baseline_on_the_converted_project() -> None:
    report = run_check(MIGRATIONS, FLIPR / "schema.sql", lint_since=2)

    assert report.ok, report.to_dict()
    lint = report.lint
    assert [p.name for p in lint.skipped_files] == [
        f"{label}.{kind}.sql"
        for label in ("0001_appschema", "0002_users")
        for kind in ("down", "up", "verify")
    ]
    assert lint.files_checked == 3
    # sqitch's revert/lists.sql drops what deploy/lists.sql created: not a finding.
    assert [(f.file.name, f.rule) for f in lint.expected_drops] == [
        ("0003_lists.down.sql", "ban-drop-table")
    ]
    destructive = report.to_dict()["destructive_reverts"]
    assert [entry["migration"] for entry in destructive] == [
        "0001_appschema",
        "0002_users",
        "0003_lists",
    ]
    assert destructive[2]["affected"] == [{"table": "flipr.lists", "columns": None}]


def test_a_database_sqitch_deployed_is_baselined_once_its_registry_is_gone(
    make_database: Callable[..., str], server: ThrowawayPostgres
) -> None:
    # Production, as sqitch left it: each deploy script in its own
    # transaction, and sqitch's registry in the schema `sqitch`.
    dsn = make_database()
    migrations = load_migrations(MIGRATIONS)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for migration in migrations:
            conn.execute(f"BEGIN;\n{migration.up.text}\nCOMMIT;".encode())
        conn.execute("CREATE SCHEMA sqitch")
        conn.execute("CREATE TABLE sqitch.changes (change_id text PRIMARY KEY, change text)")
    # Every schema is compared by default: sqitch's registry is not the project's.
    refused = baseline(dsn, server, migrations, 3)
    assert not refused.recorded
    described = [d.describe() for d in refused.differences]
    assert described == ["schema sqitch: unexpected"]  # its tables are named under it

    # A project that narrows the comparison to its own schema is baselined...
    narrowed = baseline(
        dsn, server, migrations, 3, scope=CatalogScope(schemas=("flipr",)), dry_run=True
    )
    assert narrowed.differences == ()

    # ...and so is one that archives and drops the registry.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA sqitch CASCADE")
    report = baseline(dsn, server, migrations, 3)
    assert report.recorded, [d.describe() for d in report.differences]
    with MigrationRunner(dsn, migrations) as runner:
        assert runner.status().current == 3
        assert runner.migrate().executed == ()
