"""The stack config: one typed, validated object; bad config fails at program start, by key."""

from __future__ import annotations

import pulumi
import pytest

from infra.config import (
    CONFIG_KEYS,
    DEFAULT_POSTGRES_MAJOR,
    InvalidConfig,
    parse_config,
)
from tests.infra.harness import REPO_ROOT, run_program, stack_config

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/rollgate"
DIGEST = "sha256:" + "0" * 64
CERT = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"


def dev(**overrides: str) -> dict[str, str]:
    return {"environment": "dev", "image": f"{ECR}:main", **overrides}


def prod(**overrides: str) -> dict[str, str]:
    return {"environment": "prod", "image": f"{ECR}@{DIGEST}", "certificateArn": CERT, **overrides}


def problems(raw: dict[str, str], stack: str = "dev") -> tuple[str, ...]:
    with pytest.raises(InvalidConfig) as caught:
        parse_config(raw, stack=stack)
    return caught.value.problems


def test_example_stacks_are_valid() -> None:
    assert parse_config(stack_config("dev"), stack="dev").environment == "dev"
    assert parse_config(stack_config("prod"), stack="prod").is_prod


def test_default_engine_is_the_postgres_major_rollgate_tests_against() -> None:
    assert DEFAULT_POSTGRES_MAJOR == 18
    config = parse_config(dev(), stack="dev")
    assert config.database.engine_version == "18"
    assert config.database.parameter_group_family == "postgres18"


def test_engine_version_comes_from_config() -> None:
    config = parse_config(dev(dbEngineVersion="17.4"), stack="dev")
    assert config.database.engine_version == "17.4"
    assert config.database.parameter_group_family == "postgres17"


def test_safe_defaults() -> None:
    dev_config = parse_config(dev(), stack="dev")
    assert dev_config.database.deletion_protection
    assert dev_config.database.backup_retention_days >= 7
    prod_config = parse_config(prod(), stack="prod")
    assert prod_config.database.multi_az
    assert prod_config.database.deletion_protection
    assert prod_config.service.web_desired_count >= 2


@pytest.mark.parametrize(
    ("raw", "stack", "key", "fragment"),
    [
        (
            dev(dbInstanceClas="db.t4g.micro"),
            "dev",
            "rollgate:dbInstanceClas",
            "did you mean rollgate:dbInstanceClass",
        ),
        (
            prod(dbDeletionProtection="false"),
            "prod",
            "rollgate:dbDeletionProtection",
            "must be true in prod",
        ),
        (dev(dbInstanceClass="t4g.large"), "dev", "rollgate:dbInstanceClass", "db.<family>.<size>"),
        (dev(dbInstanceClass="db.m7g"), "dev", "rollgate:dbInstanceClass", "db.<family>.<size>"),
        (
            dev(dbInstanceClass="db.t4g.micro"),
            "dev",
            "rollgate:dbInstanceClass",
            "Performance Insights",
        ),
        (
            dev(dbBackupRetentionDays="3"),
            "dev",
            "rollgate:dbBackupRetentionDays",
            "between 7 and 35",
        ),
        (
            dev(dbBackupRetentionDays="36"),
            "dev",
            "rollgate:dbBackupRetentionDays",
            "between 7 and 35",
        ),
        (dev(logRetentionDays="10"), "dev", "rollgate:logRetentionDays", "must be one of"),
        (prod(image=f"{ECR}:v1.2.3"), "prod", "rollgate:image", "pinned by digest"),
        (dev(image=ECR), "dev", "rollgate:image", "no tag or digest"),
        (dev(image=f"{ECR}@sha256:abc"), "dev", "rollgate:image", "64 lowercase hex"),
        (dev(image="ghcr.io/acme/rollgate:main"), "dev", "rollgate:image", "must be in ECR"),
        (prod(dbMultiAz="false"), "prod", "rollgate:dbMultiAz", "must be true in prod"),
        (prod(certificateArn=""), "prod", "rollgate:certificateArn", "required in prod"),
        (
            dev(certificateArn="arn:aws:iam::1:server-certificate/x"),
            "dev",
            "rollgate:certificateArn",
            "ACM",
        ),
        (prod(webDesiredCount="1"), "prod", "rollgate:webDesiredCount", "at least 2"),
        (dev(environment="staging"), "dev", "rollgate:environment", "dev or prod"),
        ({"image": f"{ECR}:main"}, "dev", "rollgate:environment", "required"),
        (dev(), "prod", "rollgate:environment", "looks like production"),
        (dev(azCount="1"), "dev", "rollgate:azCount", "between 2 and 4"),
        (dev(vpcCidr="10.0.0.0/8"), "dev", "rollgate:vpcCidr", "/16 to /20"),
        (dev(vpcCidr="8.8.0.0/16"), "dev", "rollgate:vpcCidr", "private"),
        (dev(vpcCidr="not-a-cidr"), "dev", "rollgate:vpcCidr", "IPv4 network"),
        (dev(natGateways="some"), "dev", "rollgate:natGateways", "none, per-az, single"),
        (dev(dbMultiAz="yes"), "dev", "rollgate:dbMultiAz", "true or false"),
        (dev(dbAllocatedStorageGb="lots"), "dev", "rollgate:dbAllocatedStorageGb", "whole number"),
        (
            dev(dbAllocatedStorageGb="200", dbMaxAllocatedStorageGb="100"),
            "dev",
            "rollgate:dbMaxAllocatedStorageGb",
            ">=",
        ),
        (dev(dbEngineVersion="latest"), "dev", "rollgate:dbEngineVersion", "18 or 18.1"),
        (dev(dbEngineVersion="12"), "dev", "rollgate:dbEngineVersion", ">= 14"),
        (dev(dbUsername="postgres"), "dev", "rollgate:dbUsername", "reserved"),
        (dev(dbName="rollgate-db"), "dev", "rollgate:dbName", "PostgreSQL identifier"),
        (dev(webCpu="512", webMemory="512"), "dev", "rollgate:webMemory", "not a Fargate size"),
        (dev(workerCpu="300"), "dev", "rollgate:workerCpu", "on Fargate"),
        (
            dev(workerMinCount="5", workerMaxCount="2"),
            "dev",
            "rollgate:workerMaxCount",
            ">= workerMinCount",
        ),
        (
            dev(workerTimeoutSeconds="30000"),
            "dev",
            "rollgate:workerTimeoutSeconds",
            "between 10 and 21600",
        ),
        (dev(queueRetentionDays="14"), "dev", "rollgate:queueRetentionDays", "between 1 and 13"),
        (
            dev(queueMaxReceiveCount="0"),
            "dev",
            "rollgate:queueMaxReceiveCount",
            "between 1 and 1000",
        ),
        (
            dev(auditIntervalMinutes="5"),
            "dev",
            "rollgate:auditIntervalMinutes",
            "between 15 and 720",
        ),
        (dev(healthCheckPath="healthz"), "dev", "rollgate:healthCheckPath", "absolute URL path"),
        (dev(), "production-eu", "stack name", "1-10 characters"),
    ],
)
def test_invalid_config_names_the_key(
    raw: dict[str, str], stack: str, key: str, fragment: str
) -> None:
    found = problems(raw, stack)
    assert any(p.startswith(key) and fragment in p for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        prod(
            dbDeletionProtection="false",
            dbInstanceClass="big",
            dbBackupRetentionDays="1",
            image=f"{ECR}:v1",
            typo="1",
        )
    )
    keys = {p.split(":")[1].split(" ")[0] for p in found}
    assert {
        "dbDeletionProtection",
        "dbInstanceClass",
        "dbBackupRetentionDays",
        "image",
        "typo",
    } <= keys


def test_error_message_lists_keys_and_how_to_fix() -> None:
    with pytest.raises(InvalidConfig) as caught:
        parse_config(prod(dbDeletionProtection="false"), stack="prod")
    message = str(caught.value)
    assert "stack 'prod'" in message
    assert "  - rollgate:dbDeletionProtection: must be true in prod" in message
    assert "pulumi config set" in message
    # A ValueError for Python, a RunError for Pulumi: the CLI prints the message, no traceback.
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, pulumi.RunError)


def test_every_key_is_documented() -> None:
    docs = (REPO_ROOT / "docs" / "infra.md").read_text()
    missing = [key for key in CONFIG_KEYS if f"`{key}`" not in docs]
    assert not missing, f"docs/infra.md does not describe {missing}"


def test_visibility_timeout_is_derived_from_the_worker_timeout() -> None:
    assert (
        parse_config(dev(workerTimeoutSeconds="120"), stack="dev").queue.visibility_timeout_seconds
        == 240
    )
    assert (
        parse_config(dev(workerTimeoutSeconds="900"), stack="dev").queue.visibility_timeout_seconds
        == 1800
    )


def test_invalid_config_fails_the_program_before_any_resource() -> None:
    with pytest.raises(InvalidConfig, match="rollgate:dbDeletionProtection"):
        run_program(prod(dbDeletionProtection="false"), "prod")


def test_unknown_key_fails_the_program() -> None:
    with pytest.raises(InvalidConfig, match="rollgate:dbPasword: unknown key"):
        run_program(dev(dbPasword="x"), "dev")
