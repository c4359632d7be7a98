"""Schemathesis over the app's own OpenAPI schema, against the running web process:
no input makes it answer 5xx, and every rejection is a 4xx with a ``detail`` that says why."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from tests.app.conftest import AppProcess

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 60


def rejections_explain_themselves(_ctx: Any, response: Any, _case: Any) -> bool | None:
    """A 4xx carries a non-empty JSON ``detail`` string."""
    if 400 <= response.status_code < 500 and response.status_code not in (404, 405):
        body = response.json()
        assert isinstance(body.get("detail"), str), body
        assert body["detail"], body
    return None


def test_no_input_gets_a_server_error(
    app_env: dict[str, str], start_app: Callable[..., AppProcess]
) -> None:
    web = start_app("web", app_env)
    schema = schemathesis.openapi.from_url(web.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert {op.path for op in operations} >= {"/tasks", "/webhooks/stripe", "/roi", "/readyz"}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: Any) -> None:
                case.call_and_validate(checks=[not_a_server_error, rejections_explain_themselves])

            try:
                fuzz()
            except Unsatisfiable:
                # An operation without inputs (GET /healthz) has no invalid input to send.
                assert mode == GenerationMode.NEGATIVE, operation.path
                assert not operation.query and not operation.body, operation.path
