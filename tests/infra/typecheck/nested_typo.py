"""A nested typo mocks accept and mypy rejects (see test_typecheck.py). Not imported by infra."""

import pulumi_aws as aws

aws.ecs.Service(
    "typo",
    cluster="cluster",
    deployment_circuit_breaker={"enable": True, "rolback": True},
)
