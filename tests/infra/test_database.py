"""Database: RDS PostgreSQL, encrypted with its own key, private, backed up, observable."""

from __future__ import annotations

import json

from tests.infra.harness import ProgramRun

INSTANCE = "aws:rds/instance:Instance"


def instance(run: ProgramRun) -> dict[str, object]:
    return run.one(INSTANCE).inputs


def test_engine_is_postgres_from_config(run: ProgramRun) -> None:
    db = instance(run)
    assert db["engine"] == "postgres"
    assert db["engineVersion"] == "18"
    params = run.one("aws:rds/parameterGroup:ParameterGroup")
    assert params.inputs["family"] == "postgres18"
    assert db["allowMajorVersionUpgrade"] is False


def test_engine_version_override_moves_the_parameter_family(variant: ProgramRun) -> None:
    assert instance(variant)["engineVersion"] == "17"
    params = variant.one("aws:rds/parameterGroup:ParameterGroup")
    assert params.inputs["family"] == "postgres17"
    values = {p["name"]: p["value"] for p in params.inputs["parameters"]}
    assert values["log_min_duration_statement"] == "250"


def test_storage_is_encrypted_with_the_components_own_key(run: ProgramRun) -> None:
    db = run.one(INSTANCE)
    key = run.one("aws:kms/key:Key", "-db-key")
    assert db.inputs["storageEncrypted"] is True
    for prop in ("kmsKeyId", "performanceInsightsKmsKeyId", "masterUserSecretKmsKeyId"):
        assert db.property_dependencies[prop] == [key.urn], prop
    assert key.inputs["enableKeyRotation"] is True
    assert run.parent_of(key) is run.parent_of(db)


def test_not_publicly_accessible(run: ProgramRun) -> None:
    assert instance(run)["publiclyAccessible"] is False


def test_backups_final_snapshot_and_tags(run: ProgramRun) -> None:
    db = instance(run)
    assert db["backupRetentionPeriod"] >= 7  # type: ignore[operator]
    assert db["skipFinalSnapshot"] is False
    assert db["finalSnapshotIdentifier"] == f"rollgate-{run.stack}-final"
    assert db["copyTagsToSnapshot"] is True
    assert db["deleteAutomatedBackups"] is False


def test_master_password_is_managed_by_rds(run: ProgramRun) -> None:
    db = instance(run)
    assert db["manageMasterUserPassword"] is True
    assert "password" not in db
    assert "passwordWo" not in db
    for resource in run.resources:
        text = json.dumps(resource.inputs).lower()
        assert '"password":' not in text, resource.name
    assert run.exports["dbSecretArn"].startswith("arn:aws:secretsmanager:")


def test_parameter_group_forces_tls_and_logs_slow_statements(run: ProgramRun) -> None:
    params = run.one("aws:rds/parameterGroup:ParameterGroup")
    values = {p["name"]: p["value"] for p in params.inputs["parameters"]}
    assert values["rds.force_ssl"] == "1"
    assert values["log_min_duration_statement"] == "500"
    assert run.one(INSTANCE).property_dependencies["parameterGroupName"] == [params.urn]


def test_performance_insights_and_log_exports(run: ProgramRun) -> None:
    db = run.one(INSTANCE)
    assert db.inputs["performanceInsightsEnabled"] is True
    assert set(db.inputs["enabledCloudwatchLogsExports"]) == {"postgresql", "upgrade"}
    groups = {g.inputs["name"]: g for g in run.of_type("aws:cloudwatch/logGroup:LogGroup")}
    for log in ("postgresql", "upgrade"):
        group = groups[f"/aws/rds/instance/rollgate-{run.stack}/{log}"]
        assert group.urn in db.depends_on  # exists (with a retention) before RDS creates it
        assert group.inputs["retentionInDays"] > 0


def test_prod_is_multi_az_deletion_protected_and_protected(prod: ProgramRun) -> None:
    db = prod.one(INSTANCE)
    assert db.inputs["multiAz"] is True
    assert db.inputs["deletionProtection"] is True
    assert db.protect is True
    assert db.inputs["applyImmediately"] is False


def test_dev_is_single_az_but_still_deletion_protected(dev: ProgramRun) -> None:
    db = dev.one(INSTANCE)
    assert db.inputs["multiAz"] is False
    assert db.inputs["deletionProtection"] is True
    assert db.protect is False


def test_dev_may_opt_out_of_deletion_protection_and_into_multi_az(variant: ProgramRun) -> None:
    assert instance(variant)["deletionProtection"] is False
    assert instance(variant)["multiAz"] is True
