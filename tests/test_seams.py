"""Facts that two packages must agree on, held together where both can be seen."""

from __future__ import annotations

from db.throwaway import TARGET_POSTGRES_MAJOR
from infra.config import DEFAULT_POSTGRES_MAJOR


def test_rds_default_engine_is_the_major_version_the_tests_run_against() -> None:
    # The throwaway servers (embedded and docker) run TARGET_POSTGRES_MAJOR;
    # production must default to the same major or the tests prove nothing.
    assert DEFAULT_POSTGRES_MAJOR == TARGET_POSTGRES_MAJOR
