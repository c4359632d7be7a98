"""Audit fixtures: reuse the moto server of tests/rollback (one session-wide server)."""

from tests.app.conftest import app_env, queues, start_app  # noqa: F401 (fixtures)
from tests.rollback.conftest import (  # noqa: F401 (fixtures)
    logical_server,
    make_logical_database,
    moto_endpoint,
    s3_bucket,
)
