"""Fixtures: the real program, run once per example stack under Pulumi mocks."""

from __future__ import annotations

import pytest

from tests.infra.harness import ProgramRun, run_program, stack_config

STACKS = ("dev", "prod")


@pytest.fixture(scope="session")
def dev() -> ProgramRun:
    """`Pulumi.dev.yaml` through the program."""
    return run_program(stack_config("dev"), "dev")


@pytest.fixture(scope="session")
def prod() -> ProgramRun:
    """`Pulumi.prod.yaml` through the program."""
    return run_program(stack_config("prod"), "prod")


#: Non-default values, set on the dev stack, to show each comes from config.
VARIANT = {
    "dbEngineVersion": "17",
    "dbDeletionProtection": "false",
    "dbMultiAz": "true",
    "queueMaxReceiveCount": "9",
    "workerTimeoutSeconds": "60",
    "natGateways": "per-az",
    "dbSlowStatementMs": "250",
}


@pytest.fixture(scope="session")
def variant() -> ProgramRun:
    """The dev stack with `VARIANT` overrides."""
    return run_program({**stack_config("dev"), **VARIANT}, "dev")


@pytest.fixture(params=STACKS)
def run(request: pytest.FixtureRequest) -> ProgramRun:
    """Each example stack in turn: properties that hold for dev and prod alike."""
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def pytest_configure(config: pytest.Config) -> None:
    # pulumi-aws warns, at import, about its own deprecated v6 classes; the program uses none.
    config.addinivalue_line(
        "filterwarnings", "ignore:.*deprecated in favor of.*:DeprecationWarning:pulumi_aws"
    )
