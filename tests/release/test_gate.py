"""The gate's verdicts on real Postgres, with the S3 store on moto.

Go needs every step passed; a failing step is no-go (exit 1) and stops the
gate; a step that could not run is inconclusive (exit 2), never go.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from core.sizes import parse_size
from db.migrations import BUNDLED_SCHEMA, load_migrations
from db.sample import generate_sample
from db.schemafile import generate_schema
from release.apps import DEFAULT_APP_IMAGE
from release.gate import (
    GATE_LOG,
    GO,
    INCONCLUSIVE,
    NO_GO,
    STEPS,
    GateOptions,
    GateReport,
    StepResult,
    record_report,
    run_gate,
    smoke_available,
    write_report,
)
from release.scenarios import load_scenario, release_n_version
from rollback import ledger
from rollback.store import open_store
from tests.release.conftest import scenario_migrations

REPO = Path(__file__).resolve().parents[2]


def _options(dsn, store, migrations, tmp_path, **overrides) -> GateOptions:
    values = {
        "dsn": dsn,
        "store": store,
        "migrations_dir": migrations,
        "schema_path": BUNDLED_SCHEMA,
        "stack": "dev",
        "stack_dir": REPO,
        "report_dir": tmp_path / "report",
    }
    values.update(overrides)
    return GateOptions(**values)


def _slots(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT slot_name FROM pg_replication_slots")]


def test_a_partial_gate_is_never_go(production_dsn, tmp_path) -> None:
    store = open_store(str(tmp_path / "store"))
    migrations = scenario_migrations("healthy", tmp_path)
    report = run_gate(_options(production_dsn, store, migrations, tmp_path, steps=("static",)))
    assert report.step("static").status == "passed"
    assert report.verdict == INCONCLUSIVE
    assert report.exit_code == 2


def test_a_step_that_cannot_run_makes_the_gate_inconclusive(production_dsn, tmp_path) -> None:
    store = open_store(str(tmp_path / "store"))
    migrations = scenario_migrations("healthy", tmp_path)
    report = run_gate(
        _options(production_dsn, store, migrations, tmp_path, stack="nosuch", steps=("static",))
    )
    static = report.step("static")
    assert static.status == "inconclusive"
    assert "Pulumi.nosuch.yaml" in static.findings[0]
    assert report.verdict == INCONCLUSIVE


def test_an_undeclared_data_loss_in_a_down_is_no_go_before_any_snapshot(
    production_dsn, tmp_path
) -> None:
    store = open_store(str(tmp_path / "store"))
    migrations = scenario_migrations("destructive-down", tmp_path)
    report = run_gate(_options(production_dsn, store, migrations, tmp_path))
    assert report.verdict == NO_GO and report.exit_code == 1
    assert "delete public.payment_events" in report.step("static").findings[0]
    assert [s.status for s in report.steps[1:]] == ["skipped"] * 4
    assert store.list_ids() == []  # failed closed: nothing else ran


def test_gate_reports_are_hash_chained_in_the_store(production_dsn, tmp_path) -> None:
    store = open_store(str(tmp_path / "store"))
    migrations = scenario_migrations("healthy", tmp_path)
    first = run_gate(_options(production_dsn, store, migrations, tmp_path, steps=("static",)))
    second = run_gate(_options(production_dsn, store, migrations, tmp_path, steps=("static",)))
    entries = ledger.read(store, GATE_LOG)
    assert [e.entry_sha256 for e in entries] == [first.entry_sha256, second.entry_sha256]
    assert entries[1].previous_sha256 == entries[0].entry_sha256
    assert entries[0].body["verdict"] == INCONCLUSIVE
    assert ledger.verify_chain(store, GATE_LOG).to_dict()
    # Rewriting an old verdict breaks the chain.
    path = next((tmp_path / "store").rglob(entries[0].name))
    body = json.loads(path.read_text())
    body["body"]["verdict"] = GO
    path.write_text(json.dumps(body))
    with pytest.raises(ledger.ChainBroken):
        ledger.verify_chain(store, GATE_LOG)


@pytest.mark.slow
def test_a_healthy_release_passes_every_step_it_can_run(
    production_dsn, s3_bucket, moto_endpoint, logical_server, tmp_path
) -> None:
    store = open_store(f"s3://{s3_bucket}/rollgate", aws_endpoint_url=moto_endpoint)
    with psycopg.connect(production_dsn, autocommit=True) as conn:
        # The smoke suite's planner check needs a table big enough for an index to win.
        generate_sample(conn, parse_size("10MB"))
    migrations = scenario_migrations("healthy", tmp_path)
    # The schema N+1 builds (the smoke suite, when installed, compares the catalog with it).
    schema = tmp_path / "schema.sql"
    schema.write_text(generate_schema(logical_server, load_migrations(migrations)))
    report = run_gate(
        _options(
            production_dsn,
            store,
            migrations,
            tmp_path,
            schema_path=schema,
            aws_endpoint_url=moto_endpoint,
        )
    )
    statuses = {s.name: s.status for s in report.steps}
    assert statuses["static"] == statuses["snapshot"] == statuses["verify"] == "passed"
    assert statuses["budget"] == "passed"
    if smoke_available():
        assert report.verdict == GO and report.exit_code == 0
        # The suite ran on the copy verify restored, from the checksums the revert summed.
        prepared = report.step("rehearse").details["smoke"]["summary"]["prepared"]
        assert any("no second restore" in note for note in prepared["notes"])
        assert any("start checksums from" in note for note in prepared["notes"])
        assert "restore_snapshot" not in prepared["timings_seconds"]
    else:
        assert statuses["rehearse"] == "inconclusive"
        assert report.verdict == INCONCLUSIVE and report.exit_code == 2
    apps = report.step("rehearse").details["apps"]
    assert apps["new_app"]["ok"] and apps["previous_app"]["ok"]
    assert report.step("budget").details["n_minus_1_compatible"] is True
    assert report.snapshot_id in store.list_ids()
    assert report.summary_path is not None and "Rollgate gate" in report.summary_path.read_text()
    # The rehearsal ran on a restored copy: the target is still at release N.
    with psycopg.connect(production_dsn) as conn:
        version = conn.execute("SELECT max(version) FROM rollgate.schema_migrations").fetchone()
    assert version == (release_n_version(),)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scenario", "failing_step", "finding"),
    [
        ("lock-past-budget", "rehearse", "blocked writers of public.execution_tasks"),
        ("app-not-ready", "rehearse", "the new app release is not ready"),
        ("incompatible-schema", "rehearse", "release N's app cannot run on the new schema"),
        ("leaky-down", "rehearse", "the revert left the catalog different"),
    ],
)
def test_each_broken_release_is_no_go(
    production_dsn, tmp_path, scenario, failing_step, finding
) -> None:
    store = open_store(str(tmp_path / "store"))
    loaded = load_scenario(scenario)
    report = run_gate(
        _options(
            production_dsn,
            store,
            scenario_migrations(scenario, tmp_path),
            tmp_path,
            new_app_env=loaded.new_app_env,
            lock_budget_seconds=loaded.lock_budget_seconds or 5.0,
        )
    )
    assert report.verdict == NO_GO and report.exit_code == 1
    step = report.step(failing_step)
    assert step.status == "failed"
    assert any(finding in f for f in step.findings), step.findings
    # Nothing rolls out after a no-go, so the snapshot's slot is not kept pinning WAL.
    assert _slots(production_dsn) == []


def _a_go_report() -> GateReport:
    """A report whose every step passed, as the gate's last step leaves it."""
    return GateReport(
        verdict=GO,
        steps=[StepResult(name, status="passed") for name in STEPS],
        started_at="2026-11-30T00:00:00+00:00",
        seconds=1.0,
        target={},
        allow_incompatible=False,
    )


def test_a_go_that_cannot_be_recorded_is_inconclusive_and_still_reported(tmp_path) -> None:
    store = open_store(str(tmp_path / "store"))
    (tmp_path / "store" / "logs").mkdir(parents=True)
    (tmp_path / "store" / "logs" / GATE_LOG).write_text("")  # the log cannot be written
    report = _a_go_report()
    record_report(report, store)
    write_report(report, tmp_path / "report")
    assert report.verdict == INCONCLUSIVE and report.exit_code == 2
    assert report.entry_sha256 is None
    assert "could not be recorded" in (report.ledger_error or "")
    written = json.loads((tmp_path / "report" / "gate-report.json").read_text())
    assert written["verdict"] == INCONCLUSIVE and written["ledger_error"]
    assert "Not recorded" in (tmp_path / "report" / "gate-summary.md").read_text()


def test_a_recorded_go_stays_go(tmp_path) -> None:
    store = open_store(str(tmp_path / "store"))
    report = _a_go_report()
    record_report(report, store)
    assert report.verdict == GO and report.entry_sha256 and report.ledger_error is None


@pytest.mark.slow
@pytest.mark.docker
def test_the_app_checks_run_both_releases_from_their_image_and_catch_an_n_minus_1_break(
    production_dsn, tmp_path
) -> None:
    """With images and Docker, the new and the previous web run as containers."""
    store = open_store(str(tmp_path / "store"))
    report = run_gate(
        _options(
            production_dsn,
            store,
            scenario_migrations("incompatible-schema", tmp_path),
            tmp_path,
            app_image=DEFAULT_APP_IMAGE,
            previous_app_image=DEFAULT_APP_IMAGE,
        )
    )
    assert report.verdict == NO_GO
    apps = report.step("rehearse").details["apps"]
    assert {release: r["runs_as"] for release, r in apps["runs_as"].items()} == {
        "new": f"container {DEFAULT_APP_IMAGE}",
        "previous": f"container {DEFAULT_APP_IMAGE}",
    }
    # Ready (the containers reached the database), then broken by the renamed column.
    assert apps["previous_app"]["readiness"]["ready"] is True
    assert not apps["previous_app"]["ok"]
    assert "POST /tasks answered 500" in apps["previous_app"]["reason"]
    assert "cannot run on the new schema" in " ".join(report.step("rehearse").findings)


@pytest.mark.slow
def test_a_given_image_that_cannot_run_is_inconclusive_not_replaced_by_processes(
    production_dsn, tmp_path
) -> None:
    # Rehearsing this checkout's code in place of the release's image would be a pass for
    # code that is not being shipped.
    store = open_store(str(tmp_path / "store"))
    report = run_gate(
        _options(
            production_dsn,
            store,
            scenario_migrations("healthy", tmp_path),
            tmp_path,
            app_image="rollgate/app:no-such-tag",
        )
    )
    rehearse = report.step("rehearse")
    assert rehearse.status == "inconclusive"
    assert any("rollgate/app:no-such-tag" in f for f in rehearse.findings), rehearse.findings
    assert "apps" not in rehearse.details  # refused before any app or migration ran
    assert report.verdict == INCONCLUSIVE and report.exit_code == 2
