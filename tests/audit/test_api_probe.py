"""The API probe against the real web process: healthy, then with a view dropped under it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from release.audit.api import api_probe
from release.audit.model import NotRunnable, Status
from tests.app.conftest import AppProcess

pytestmark = pytest.mark.slow


def test_the_live_api_passes_then_fails_when_a_read_breaks(
    app_env: dict[str, str], start_app: Callable[..., AppProcess], migrated_dsn: str
) -> None:
    web = start_app("web", app_env)
    healthy = api_probe(web.url, examples=5)
    assert healthy.status is Status.PASSED, healthy.summary
    # The report names what it probed: here the stack's appUrl, as before.
    assert f"probed appUrl {web.url} from the stack outputs" in healthy.summary
    names = {f.name for f in healthy.findings}
    assert "schemathesis GET /roi" in names and "POST /tasks" in names
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("DROP VIEW roi_customer_daily, roi_daily")
    broken = api_probe(web.url, examples=5)
    assert broken.status is Status.FAILED
    failed: Any = {f.name for f in broken.findings if not f.ok}
    assert "GET /roi?from=2026-01-01&to=2026-01-07" in failed
    assert "schemathesis GET /roi" in failed


def test_no_app_url_means_not_run() -> None:
    with pytest.raises(NotRunnable, match="appUrl"):
        api_probe(None)
