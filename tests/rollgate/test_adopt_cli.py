"""``db check`` with a lint baseline and destructive reverts, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from db.check import run_check
from db.migrations import BUNDLED_MIGRATIONS, BUNDLED_SCHEMA
from rollgate import render
from rollgate.cli import main
from tests.db.conftest import write_migration_set

# 0001 predates the lint (an `integer` squawk objects to); both downs drop
# exactly what their ups created.
HISTORY = {
    "0001_create_t": (
        "CREATE TABLE t (id bigint PRIMARY KEY, n integer NOT NULL);",
        "DROP TABLE t;",
        "SELECT id, n FROM t WHERE false;",
    ),
    "0002_add_t_note": (
        "ALTER TABLE t ADD COLUMN note text;",
        "ALTER TABLE t DROP COLUMN note;",
        "SELECT note FROM t WHERE false;",
    ),
}
SCHEMA = "CREATE TABLE t (id bigint PRIMARY KEY, n integer NOT NULL, note text);\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_migration_set(tmp_path / "migrations", HISTORY)
    (tmp_path / "schema.sql").write_text(SCHEMA)
    return tmp_path


def test_lint_since_skips_migrations_in_production_and_says_why(
    capsys: pytest.CaptureFixture[str], project: Path
) -> None:
    code, out, _ = run(
        capsys,
        "--json",
        "db",
        "check",
        "--migrations",
        str(project / "migrations"),
        "--schema",
        str(project / "schema.sql"),
        "--lint-since",
        "1",
    )
    lint = json.loads(out)["result"]["lint"]
    assert code == 0, out
    assert lint["lint_since"] == 1 and lint["files_checked"] == 3
    assert lint["skipped"]["files"] == 3
    assert "lint baseline 0001" in lint["skipped"]["reason"]
    # 0002's down drops the column its up added: set aside, not a finding.
    assert [d["rule"] for d in lint["expected_drops"]] == ["ban-drop-column"]


def test_lint_since_comes_from_rollgate_toml_and_the_flag_overrides_it(
    capsys: pytest.CaptureFixture[str], project: Path
) -> None:
    config = project / "rollgate.toml"
    config.write_text('schema = "schema.sql"\nmigrations = "migrations"\n[lint]\nsince = 1\n')

    code, out, _ = run(capsys, "db", "check", "--config", str(config))
    assert code == 0, out
    assert "skipped 3 file(s): migrations at or below the lint baseline 0001" in out

    code, out, _ = run(capsys, "db", "check", "--config", str(config), "--lint-since", "0")
    assert code == 1
    assert "0001_create_t.up.sql:1:" in out and "prefer-bigint-over-int" in out
    # The down files' drops are destructive reverts, never lint failures.
    assert "ban-drop" not in out.split("destructive reverts")[0]
    assert "0001_create_t: loses public.t" in out
    assert "0002_add_t_note: loses public.t(note)" in out


def test_db_check_reports_the_bundles_destructive_reverts() -> None:
    report = run_check(BUNDLED_MIGRATIONS, BUNDLED_SCHEMA)
    assert report.ok

    by_migration = {entry["migration"]: entry for entry in report.to_dict()["destructive_reverts"]}
    assert by_migration["0002_add_ai_model"]["affected"] == [
        {"table": "public.execution_tasks", "columns": ["ai_model"]}
    ]
    assert by_migration["0001_create_base_tables"]["affected"] == [
        {"table": f"public.{name}", "columns": None}
        for name in ("payment_events", "execution_tasks", "orders", "customers")
    ]
    assert by_migration["0003_add_task_outbox"]["affected"] == [
        {"table": "public.task_outbox", "columns": None},
        {"table": "public.execution_tasks", "columns": ["lease_expires_at", "idempotency_key"]},
    ]
    # 0004 only drops views: schema, no data.
    assert not by_migration["0004_create_roi_views"]["loses_data"]
    assert all(by_migration[label]["loses_data"] for label in list(by_migration)[:3])

    text = render.check(report)
    assert "destructive reverts: 3 migration(s) lose data" in text
    assert "0004_create_roi_views: schema only, no data lost" in text
    assert "0002_add_ai_model: loses public.execution_tasks(ai_model)" in text
    assert "drop column public.execution_tasks.ai_model (its up created it;" in text


def test_db_baseline_refuses_a_mismatch_then_records_a_match(
    capsys: pytest.CaptureFixture[str], empty_dsn: str, tmp_path: Path
) -> None:
    directory = write_migration_set(tmp_path / "migrations", HISTORY)
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, n integer NOT NULL, extra text)")
    args = ["db", "baseline", "--dsn", empty_dsn, "--migrations", str(directory)]

    code, out, _ = run(capsys, *args, "--version", "1")
    assert code == 1
    assert out.startswith("baseline REFUSED: the live database differs from what 0001_create_t")
    assert "column public.t.extra: unexpected" in out and "nothing was recorded" in out

    code, out, _ = run(capsys, "--json", *args, "--version", "7")
    assert code == 2 and "no migration has that version" in out

    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE t DROP COLUMN extra")
    code, out, _ = run(capsys, "--json", *args, "--version", "1")
    result = json.loads(out)["result"]
    assert code == 0 and result["recorded"] and result["migrations"] == ["0001_create_t"]

    code, out, _ = run(capsys, "db", "migrate", "--dsn", empty_dsn, "--migrations", str(directory))
    assert code == 0 and "migrate: 0001 -> 0002" in out and "applied 0002_add_t_note" in out
