"""The whole audit: exit codes, the tamper-evident log (with Object Lock on S3), the CLI."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from core.errors import CannotRun
from db.throwaway import ThrowawayPostgres
from infra import outputs
from release.audit import AUDIT_LOG, AuditOptions, Thresholds, run_audit
from rollback import ledger
from rollback.snapshot import create_snapshot
from rollback.store import open_store
from rollgate.commands.audit import load_stack_outputs
from tests.audit.moto_stack import build_stack, scheduled_task_environment
from tests.rollgate.conftest import run


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    return path


def statuses(report: Any) -> dict[str, str]:
    return {c.check: c.status.value for c in report.checks}


def test_a_healthy_stack_passes_every_check_and_is_logged(
    migrated_dsn: str, server: ThrowawayPostgres, store_dir: Path, moto_endpoint: str
) -> None:
    store = open_store(str(store_dir))
    create_snapshot(migrated_dsn, store, slot=False)
    stack_name = f"test-{secrets.token_hex(3)}"
    cloudwatch: Any = boto3.client("cloudwatch", endpoint_url=moto_endpoint)
    cloudwatch.put_metric_data(
        Namespace=outputs.METRIC_NAMESPACE,
        MetricData=[
            {
                "MetricName": outputs.METRIC_WEBHOOK_REJECTED,
                "Dimensions": [{"Name": outputs.METRIC_DIMENSION_STACK, "Value": stack_name}],
                "Value": value,
                "Unit": "Count",
            }
            for value in (2.0, 5.0)
        ],
    )
    report = run_audit(
        AuditOptions(
            dsn=migrated_dsn,
            store=store,
            aws_endpoint_url=moto_endpoint,
            # Neither appUrl nor the web container port: no target for the API probe.
            stack_outputs={
                name: value
                for name, value in build_stack(moto_endpoint).items()
                if name != outputs.WEB_CONTAINER_PORT
            },
            server=server,
            stack_name=stack_name,
            thresholds=Thresholds(adversarial_examples=3),
        )
    )
    # No app URL and no web container port: the API probe says why it did not run.
    assert statuses(report) == {
        "schema_drift": "passed",
        "restore_drill": "passed",
        "adversarial_input": "passed",
        "api_probe": "not_run",
        "queue_health": "passed",
        "security_posture": "passed",
        "integrity": "passed",
    }
    assert report.exit_code == 2  # not run is never a pass
    assert "appUrl" in report.not_run[0].summary
    assert "webContainerPort" in report.not_run[0].summary
    assert report.metrics_sent == 5  # with the drilled snapshot's size (restore time per GB)
    assert report.stack_outputs_source is None  # given by the caller, not loaded
    assert report.metrics["webhook_rejected"] == 7.0  # the trend's leading indicator
    entries = ledger.read(store, AUDIT_LOG)
    assert len(entries) == 1
    assert entries[0].entry_sha256 == report.log_entry_sha256
    assert entries[0].body["checks"][1]["metrics"]["restore_seconds"] > 0


def test_a_failed_check_wins_over_one_that_did_not_run(
    migrated_dsn: str, server: ThrowawayPostgres, store_dir: Path
) -> None:
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE orders DROP CONSTRAINT orders_order_details_is_object")
    report = run_audit(
        AuditOptions(
            dsn=migrated_dsn,
            store=str(store_dir),
            server=server,
            thresholds=Thresholds(adversarial_examples=3),
        )
    )
    assert statuses(report)["restore_drill"] == "not_run"  # no snapshot in the store
    assert statuses(report)["adversarial_input"] == "failed"
    assert statuses(report)["schema_drift"] == "failed"  # the dropped check is drift too
    assert report.exit_code == 1
    assert report.metrics["failures"] == 2


@pytest.mark.slow  # three audits, each starting its own throwaway Postgres
def test_the_cli_audits_then_verify_log_names_a_tampered_entry(
    migrated_dsn: str,
    server: ThrowawayPostgres,
    store_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        outputs.ENV_STACK_OUTPUTS,
        outputs.ENV_QUEUE_URL,
        outputs.ENV_DLQ_URL,
        outputs.ENV_ARTIFACT_BUCKET,
        outputs.ENV_DB_INSTANCE_ID,
    ):
        monkeypatch.delenv(name, raising=False)
    for _ in range(2):
        code, out, _ = run(
            capsys, "audit", "--dsn", migrated_dsn, "--store", str(store_dir), "--json", "-q"
        )
        assert code == 2  # no snapshot, no stack: some checks could not run
        result = json.loads(out)["result"]
        assert "restore_drill" in result["not_run"]
    code, out, _ = run(capsys, "audit", "--dsn", migrated_dsn, "--store", str(store_dir), "-q")
    assert code == 2
    assert "NOT RUN  restore_drill: no snapshot" in out
    assert "PASS     integrity" in out
    assert "audit INCOMPLETE" in out
    assert "stack outputs from none" in out  # no file, no $ROLLGATE_STACK_OUTPUTS
    code, out, _ = run(capsys, "audit", "verify-log", "--store", str(store_dir))
    assert code == 0 and "3 entries" in out

    first = store_dir / "logs" / AUDIT_LOG / "00000001.json"
    entry = json.loads(first.read_text())
    entry["body"]["failed"] = []
    entry["body"]["exit_code"] = 0
    first.write_text(json.dumps(entry))
    code, out, _ = run(capsys, "audit", "verify-log", "--store", str(store_dir), "--json")
    assert code == 1
    error = json.loads(out)
    assert "00000001.json" in json.dumps(error)


def test_audit_log_entries_are_object_locked_when_the_bucket_has_object_lock(
    moto_endpoint: str,
) -> None:
    s3: Any = boto3.client("s3", endpoint_url=moto_endpoint)
    bucket = f"rollgate-locked-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    locked = open_store(f"s3://{bucket}/rollgate", aws_endpoint_url=moto_endpoint)
    entry = ledger.append(locked, AUDIT_LOG, {"ok": True})
    head = s3.head_object(Bucket=bucket, Key=f"rollgate/logs/{AUDIT_LOG}/{entry.name}")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert "ObjectLockRetainUntilDate" in head

    plain_bucket = f"rollgate-plain-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=plain_bucket)
    plain = open_store(f"s3://{plain_bucket}", aws_endpoint_url=moto_endpoint)
    entry = ledger.append(plain, AUDIT_LOG, {"ok": True})
    head = s3.head_object(Bucket=plain_bucket, Key=f"logs/{AUDIT_LOG}/{entry.name}")
    assert "ObjectLockMode" not in head
    assert ledger.verify_chain(plain, AUDIT_LOG).entries == 1


def test_stack_outputs_file_must_be_a_json_object(
    tmp_path: Path, store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "outputs.json"
    bad.write_text("[1, 2]")
    code, _, err = run(
        capsys,
        "audit",
        "--dsn",
        "postgresql://a@127.0.0.1:1/a",
        "--store",
        str(store_dir),
        "--stack-outputs",
        str(bad),
    )
    assert code == 2 and "JSON object" in err
    assert outputs.APP_URL == "appUrl"


@pytest.mark.slow  # starts its own throwaway Postgres
def test_the_scheduled_task_form_reads_libpq_variables_and_the_bucket(
    migrated_dsn: str,
    moto_endpoint: str,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`rollgate audit --json` as infra runs it: PG* variables, no DSN, no --store."""
    params = psycopg.conninfo.conninfo_to_dict(migrated_dsn)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("ROLLGATE_STORE", raising=False)
    for name, key in (
        ("PGHOST", "host"),
        ("PGPORT", "port"),
        ("PGDATABASE", "dbname"),
        ("PGUSER", "user"),
        ("PGPASSWORD", "password"),
    ):
        if params.get(key):
            monkeypatch.setenv(name, str(params[key]))
    monkeypatch.setenv(outputs.ENV_ARTIFACT_BUCKET, s3_bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    # What infra/audit.py puts in the task definition: the stack's resource identifiers.
    monkeypatch.setenv(
        outputs.ENV_STACK_OUTPUTS, scheduled_task_environment(build_stack(moto_endpoint))
    )
    code, out, _ = run(capsys, "audit", "--json", "-q")
    result = json.loads(out)["result"]
    assert code == 1, result
    assert result["failed"] == ["api_probe"]
    assert result["checks"][0]["status"] == "passed"  # schema drift ran against PG*
    assert result["log_entry"].startswith(f"s3://{s3_bucket}/logs/audit/")
    # Issue 12's gap: on the schedule these were "not run" (no stack outputs).
    checks = {c["check"]: c for c in result["checks"]}
    assert checks["security_posture"]["status"] == "passed", checks["security_posture"]
    assert checks["queue_health"]["status"] == "passed", checks["queue_health"]
    assert len(checks["security_posture"]["findings"]) >= 12
    assert result["stack_outputs_source"] == f"${outputs.ENV_STACK_OUTPUTS}"
    # The API probe looks for a web task inside the VPC (the task cannot reach the public
    # load balancer): the stack's web service runs none, a real finding, so the audit fails.
    assert checks["api_probe"]["status"] == "failed", checks["api_probe"]
    assert "no RUNNING task" in checks["api_probe"]["summary"]
    # Still not run: the restore drill (no snapshot in this store).
    assert set(result["not_run"]) == {"restore_drill"}


def test_the_stack_outputs_file_wins_over_the_environment(
    tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = build_stack(moto_endpoint)
    monkeypatch.setenv(outputs.ENV_STACK_OUTPUTS, scheduled_task_environment(stack))
    given = tmp_path / "outputs.json"
    given.write_text(json.dumps({outputs.APP_URL: "https://app.example"}))
    assert load_stack_outputs(given) == (
        {outputs.APP_URL: "https://app.example"},
        f"--stack-outputs {given}",
    )
    from_environment, source = load_stack_outputs(None)
    assert source == "$ROLLGATE_STACK_OUTPUTS"
    assert from_environment == json.loads(scheduled_task_environment(stack))
    monkeypatch.delenv(outputs.ENV_STACK_OUTPUTS)
    monkeypatch.setenv(outputs.ENV_QUEUE_URL, stack[outputs.QUEUE_URL])
    partial, source = load_stack_outputs(None)
    assert partial == {outputs.QUEUE_URL: stack[outputs.QUEUE_URL]}
    assert "partial" in source


@pytest.mark.parametrize("value", ["{not json", "[1, 2]"])
def test_a_malformed_stack_outputs_variable_cannot_run(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(outputs.ENV_STACK_OUTPUTS, value)
    with pytest.raises(CannotRun, match=r"\$ROLLGATE_STACK_OUTPUTS"):
        load_stack_outputs(None)
