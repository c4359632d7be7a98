"""The stack config: one typed, validated object; bad config fails at program start, by key."""

from __future__ import annotations

import pulumi
import pytest

from infra.config import (
    CONFIG_KEYS,
    DEFAULT_POSTGRES_MAJOR,
    InvalidConfig,
    aws_name_problem,
    derived_name_problems,
    derived_names,
    parse_config,
    region_problems,
)
from tests.infra.harness import REPO_ROOT, run_program, stack_config

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/rollgate"
DIGEST = "sha256:" + "0" * 64
CERT = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"


def dev(**overrides: str) -> dict[str, str]:
    return {"environment": "dev", "image": f"{ECR}:main", **overrides}


def prod(**overrides: str) -> dict[str, str]:
    return {
        "environment": "prod",
        "image": f"{ECR}@{DIGEST}",
        "toolsImage": f"{ECR}@sha256:{'1' * 64}",
        "certificateArn": CERT,
        "domainName": "rollgate.example.com",
        **overrides,
    }


def problems(raw: dict[str, str], stack: str = "dev") -> tuple[str, ...]:
    with pytest.raises(InvalidConfig) as caught:
        parse_config(raw, stack=stack)
    return caught.value.problems


def test_example_stacks_are_valid() -> None:
    assert parse_config(stack_config("dev"), stack="dev").environment == "dev"
    assert parse_config(stack_config("prod"), stack="prod").is_prod


def test_tools_image_defaults_to_a_tag_in_images_repository_in_dev() -> None:
    assert parse_config(dev(), stack="dev").service.tools_image == f"{ECR}:tools-main"
    explicit = parse_config(dev(toolsImage=f"{ECR}@{DIGEST}"), stack="dev")
    assert explicit.service.task_tools_image == f"{ECR}@{DIGEST}"


@pytest.mark.parametrize(
    ("raw", "stack", "fragment"),
    [
        ({k: v for k, v in prod().items() if k != "toolsImage"}, "prod", "required in prod"),
        (prod(toolsImage=f"{ECR}:tools-v1"), "prod", "pinned by digest"),
        (dev(image=f"{ECR}@{DIGEST}"), "dev", "required when image is pinned by digest"),
        (dev(toolsImage=f"{ECR}@sha256:abc"), "dev", "64 lowercase hex"),
        (dev(toolsImage=f"{ECR}-tools:main"), "dev", "must be in image's repository"),
        (dev(toolsImage="ghcr.io/acme/rollgate:tools"), "dev", "must be in ECR"),
    ],
)
def test_tools_image_follows_the_image_rules(
    raw: dict[str, str], stack: str, fragment: str
) -> None:
    found = problems(raw, stack)
    assert any(p.startswith("rollgate:toolsImage") and fragment in p for p in found), found


def test_default_engine_is_the_postgres_major_rollgate_tests_against() -> None:
    assert DEFAULT_POSTGRES_MAJOR == 18
    config = parse_config(dev(), stack="dev")
    assert config.database.engine_version == "18"
    assert config.database.parameter_group_family == "postgres18"


def test_engine_version_comes_from_config() -> None:
    config = parse_config(
        dev(dbEngineVersion="17.4", dbAutoMinorVersionUpgrade="false"), stack="dev"
    )
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
            "at least 10 % above",
        ),
        # Issue 9 #11: RDS rejects a ceiling less than 10 % above the allocated storage.
        (
            dev(dbAllocatedStorageGb="100", dbMaxAllocatedStorageGb="105"),
            "dev",
            "rollgate:dbMaxAllocatedStorageGb",
            "must be >= 110",
        ),
        (
            dev(dbAllocatedStorageGb="100", dbMaxAllocatedStorageGb="100"),
            "dev",
            "rollgate:dbMaxAllocatedStorageGb",
            "at least 10 % above",
        ),
        # Issue 9 #13: a pinned minor with minor upgrades on breaks the next `up`.
        (dev(dbEngineVersion="18.1"), "dev", "rollgate:dbEngineVersion", "pins a minor version"),
        # Issue 9 #5: without protection the whole task timeout must fit the stop timeout.
        (
            dev(workerTaskProtection="false"),
            "dev",
            "rollgate:workerTimeoutSeconds",
            "stop timeout",
        ),
        # Issue 9 #6: a certificate names a domain; appUrl must use it.
        (prod(domainName=""), "prod", "rollgate:domainName", "required with certificateArn"),
        (dev(domainName="Rollgate.Example"), "dev", "rollgate:domainName", "DNS name"),
        (dev(hostedZoneId="Z123"), "dev", "rollgate:hostedZoneId", "needs domainName"),
        (
            dev(domainName="a.example.com", hostedZoneId="zone-1"),
            "dev",
            "rollgate:hostedZoneId",
            "Route 53 zone id",
        ),
        (
            dev(wafWebAclArn="arn:aws:wafv2:eu-west-1:123456789012:global/webacl/x/y"),
            "dev",
            "rollgate:wafWebAclArn",
            "regional WAFv2",
        ),
        (
            dev(webDesiredCount="5", webMaxCount="3"),
            "dev",
            "rollgate:webMaxCount",
            ">= webDesiredCount",
        ),
        (dev(webRequestsPerTarget="0"), "dev", "rollgate:webRequestsPerTarget", "between"),
        (dev(rtoSeconds="10"), "dev", "rollgate:rtoSeconds", "between 60 and 86400"),
        (dev(dbAppUsername="rollgate"), "dev", "rollgate:dbAppUsername", "three different"),
        (dev(dbAuditUsername="rds-audit"), "dev", "rollgate:dbAuditUsername", "identifier"),
        # Issue 9 #12: names derived from the stack name must be valid AWS names.
        (dev(), "ab-", "stack name", "RDS instance identifier 'rollgate-ab-' must not end"),
        (dev(), "a--b", "stack name", "two consecutive hyphens"),
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


@pytest.mark.parametrize(
    ("allocated", "expected_max"), [("20", 100), ("95", 105), ("100", 110), ("1000", 1100)]
)
def test_default_storage_ceiling_is_valid_for_rds(allocated: str, expected_max: int) -> None:
    """Issue 9 #11: max(100, allocated) gave 100/100 and 95/100, which RDS rejects."""
    config = parse_config(dev(dbAllocatedStorageGb=allocated), stack="dev").database
    assert config.max_allocated_storage_gb == expected_max
    assert config.max_allocated_storage_gb * 10 >= config.allocated_storage_gb * 11


def test_pinned_minor_is_accepted_with_minor_upgrades_off() -> None:
    config = parse_config(
        dev(dbEngineVersion="18.1", dbAutoMinorVersionUpgrade="false"), stack="dev"
    )
    assert config.database.engine_version == "18.1"
    assert not config.database.auto_minor_version_upgrade


def test_worker_timeout_beyond_the_stop_timeout_needs_protection() -> None:
    protected = parse_config(dev(workerTimeoutSeconds="300"), stack="dev").queue
    assert protected.worker_task_protection
    assert protected.worker_stop_timeout_seconds == 120
    assert protected.worker_protection_minutes == 5
    short = parse_config(
        dev(workerTimeoutSeconds="120", workerTaskProtection="false"), stack="dev"
    ).queue
    assert short.worker_stop_timeout_seconds == 120


@pytest.mark.parametrize(
    ("name", "kind", "fragment"),
    [
        ("rollgate-x-", "rds", "end with a hyphen"),
        ("1rollgate", "rds", "starting with a letter"),
        ("r" * 64, "rds", "1-63"),
        ("rollgate_x", "rds", "letters, digits or hyphens"),
        ("Rollgate-bucket", "s3", "lowercase"),
        ("rollgate..bucket", "s3", "'..'"),
        ("192.168.1.1", "s3", "IP address"),
        ("ab", "s3", "3-63"),
        ("b" * 64, "s3", "3-63"),
        ("-rollgate-alb", "elb", "not starting or ending with a hyphen"),
        ("rollgate-alb-", "elb", "not starting or ending with a hyphen"),
        ("a" * 33, "elb", "1-32"),
        ("internal-rollgate", "elb", "internal-"),
    ],
)
def test_aws_naming_rules(name: str, kind: str, fragment: str) -> None:
    problem = aws_name_problem(name, kind)
    assert problem is not None and fragment in problem, problem


def test_every_name_derived_from_the_stack_name_is_checked() -> None:
    names = derived_names("rollgate", "prod")
    assert {kind for _, kind in names.values()} == {"rds", "s3", "elb"}
    assert all(aws_name_problem(name, kind) is None for name, kind in names.values())
    assert derived_name_problems("rollgate", "abcdefghij") == []


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        # Issue 9 #14: without NAT the endpoints reach only this region's ECR.
        (
            dev(image="123456789012.dkr.ecr.us-east-1.amazonaws.com/rollgate:main"),
            "rollgate:image",
            "in us-east-1, but the stack is in eu-west-1 without NAT",
        ),
        (
            prod(certificateArn=CERT.replace("eu-west-1", "us-east-1")),
            "rollgate:certificateArn",
            "in its own region",
        ),
    ],
)
def test_config_the_region_rules_out(raw: dict[str, str], key: str, fragment: str) -> None:
    stack = raw["environment"]
    config = parse_config(raw, stack=stack)
    found = region_problems(config, "eu-west-1")
    assert any(p.startswith(key) and fragment in p for p in found), found
    with pytest.raises(InvalidConfig, match=key):
        run_program(raw, stack)  # the mocked account is in eu-west-1


def test_an_image_from_another_region_is_fine_with_nat() -> None:
    raw = dev(
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/rollgate:main", natGateways="single"
    )
    assert region_problems(parse_config(raw, stack="dev"), "eu-west-1") == []


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
