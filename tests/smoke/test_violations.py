"""Each smoke check, shown failing on a seeded violation, and reporting it clearly.

Every test runs the real suite (``run_smoke``: pytest in a subprocess) on the
embedded backend, selecting the checks it is about with ``-k``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from smoke.run import SmokeReport
from tests.smoke.conftest import Extra, outcome

pytestmark = pytest.mark.slow

Seeded = Callable[[Extra], Path]
Smoke = Callable[..., SmokeReport]


def test_the_bundled_release_passes_and_writes_every_report(smoke: Smoke) -> None:
    report = smoke(select="not test_app")
    assert report.exit_code == 0, report.summary
    assert report.summary["ok"] is True
    assert report.summary["backend"] == "embedded"
    assert report.summary["reversibility"]["data_lost"] == []
    suite = ET.parse(report.junit_xml).getroot()  # noqa: S314 (pytest wrote it)
    assert int(suite.find("testsuite").get("tests")) > 0  # type: ignore[union-attr]
    assert "Rollgate smoke (pre-deploy): passed" in report.markdown_summary.read_text()


def test_a_migration_that_breaks_the_canonical_contract_fails(seeded: Seeded, smoke: Smoke) -> None:
    migrations = seeded(
        {
            "0006_add_customer_nickname": (
                "ALTER TABLE public.customers ADD COLUMN nickname text;",
                "ALTER TABLE public.customers DROP COLUMN nickname;",
                "SELECT nickname FROM public.customers WHERE false;",
            )
        }
    )
    report = smoke(migrations, select="canonical")
    assert report.exit_code == 1
    check = outcome(report, "test_catalog_equals_the_canonical_schema")
    assert check["outcome"] == "failed"
    assert "nickname" in check["message"] and "schema.sql" in check["message"]


def test_a_down_migration_deleting_undeclared_rows_fails(seeded: Seeded, smoke: Smoke) -> None:
    # The DELETE hides in a DO block, where the destructive-revert classifier cannot see it.
    migrations = seeded(
        {
            "0006_tidy_orders": (
                "SELECT 1;",
                "DO $$ BEGIN DELETE FROM public.orders WHERE id % 2 = 0; END $$;",
                "SELECT 1;",
            )
        }
    )
    report = smoke(migrations, select="reverting")
    assert report.exit_code == 1
    check = outcome(report, "test_reverting_restores_the_starting_catalog_and_data")
    assert check["outcome"] == "failed"
    assert "do not declare" in check["message"] and "public.orders" in check["message"]
    lost = report.summary["data_lost_on_revert"]
    assert [(item["table"], item["declared"]) for item in lost] == [("public.orders", False)]


def test_a_declared_destructive_revert_is_reported_not_failed(seeded: Seeded, smoke: Smoke) -> None:
    # The down drops a column its up added and then filled from existing rows:
    # declared, so it is reported, and the start's data is back after the revert.
    migrations = seeded(
        {
            "0006_add_customer_nickname": (
                "ALTER TABLE public.customers ADD COLUMN nickname text;\n"
                "UPDATE public.customers SET nickname = name;",
                "ALTER TABLE public.customers DROP COLUMN nickname;",
                "SELECT nickname FROM public.customers WHERE false;",
            )
        }
    )
    report = smoke(migrations, select="reverting")
    assert report.exit_code == 0, report.summary["checks"]
    declared = report.summary["reversibility"]["declared_destructive"]
    assert declared == {"public.customers": ["nickname"]}


def test_a_migration_holding_access_exclusive_past_the_budget_fails(
    seeded: Seeded, smoke: Smoke
) -> None:
    migrations = seeded(
        {
            "0006_lock_customers": (
                "LOCK TABLE public.customers IN ACCESS EXCLUSIVE MODE;\nSELECT pg_sleep(1.5);",
                "SELECT 1;",
                "SELECT 1;",
            )
        }
    )
    report = smoke(migrations, select="lock_budget", lock_budget_seconds=0.5)
    assert report.exit_code == 1
    check = outcome(report, "test_migrations_block_writers_within_the_lock_budget")
    assert check["outcome"] == "failed"
    assert "0006_lock_customers" in check["message"]
    assert "AccessExclusiveLock on customers" in check["message"]
    (lock,) = [m for m in report.summary["locks"] if m["migration"] == "0006_lock_customers"]
    assert lock["within_budget"] is False and lock["longest"]["seconds"] > 0.5


def test_an_app_that_never_becomes_ready_fails(seeded: Seeded, smoke: Smoke) -> None:
    # Two steps past what this release knows (it accepts up to one, expand/contract):
    # the real app's readiness refuses the schema, so /readyz answers 503, never 200
    # (the timeout leaves room for a slow start on a busy machine).
    noop = ("SELECT 1;", "SELECT 1;", "SELECT 1;")
    migrations = seeded({"0006_noop_one": noop, "0007_noop_two": noop})
    report = smoke(
        migrations,
        from_version=4,
        select="readyz and current",
        ready_timeout_seconds=25.0,
    )
    assert report.exit_code == 1
    check = outcome(report, "test_readyz_answers[current]")
    assert check["outcome"] == "failed"
    assert "did not answer /readyz with 200 within 25s" in check["message"]
    assert "503" in check["message"]


def test_a_poison_message_that_never_reaches_the_dlq_fails(smoke: Smoke) -> None:
    report = smoke(select="poison and current", queue_redrive=False, dlq_timeout_seconds=8.0)
    assert report.exit_code == 1
    check = outcome(report, "test_a_poison_message_reaches_the_dlq[current]")
    assert check["outcome"] == "failed"
    assert "no RedrivePolicy" in check["message"]


@pytest.mark.docker
def test_a_previous_app_that_breaks_on_the_new_schema_is_not_backward_compatible(
    seeded: Seeded, smoke: Smoke, app_image: str
) -> None:
    # The contract step of a rename: the previous release's image (which writes
    # execution_tasks.ai_model) runs against a schema where the column is gone.
    migrations = seeded(
        {
            "0006_rename_ai_model": (
                "ALTER TABLE public.execution_tasks RENAME COLUMN ai_model TO model_name;",
                "ALTER TABLE public.execution_tasks RENAME COLUMN model_name TO ai_model;",
                "SELECT model_name FROM public.execution_tasks WHERE false;",
            )
        }
    )
    report = smoke(migrations, select="previous", previous_app_image=app_image)
    assert report.exit_code == 1
    n1 = report.summary["n_minus_1"]
    assert n1["checked"] is True and n1["compatible"] is False
    assert "NOT backward compatible" in n1["verdict"]
    assert any(
        "test_a_task_runs_through_queue_and_worker[previous]" in k for k in n1["failed_checks"]
    )
    assert report.summary["app"]["previous"] == {"kind": "container", "image": app_image}
    assert "NOT backward compatible" in report.markdown_summary.read_text()
