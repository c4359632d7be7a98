"""The live app's API, probed without writing.

GET endpoints must answer (``/healthz``, ``/readyz``, ``/roi`` with a valid
range) and malformed input must be refused with a 4xx before anything is
written: a POST whose body fails validation, a webhook without a signature,
an inverted ``/roi`` range. A 5xx, or a 2xx to bad input, fails the check.

Beyond that fixed set, Schemathesis reads the app's OpenAPI schema and
generates positive and negative inputs for every GET operation (reads only:
generated POST bodies could be valid and write, so POSTs get only the fixed
malformed cases above); no GET may answer 5xx.
"""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from typing import Any

from infra import outputs
from release.audit.model import CheckResult, Finding, NotRunnable, verdict

#: (method, path, body, expectation): "2xx" must succeed, "4xx" must be refused.
PROBES: tuple[tuple[str, str, bytes | None, str], ...] = (
    ("GET", outputs.APP_HEALTH_PATH, None, "2xx"),
    ("GET", outputs.APP_READY_PATH, None, "2xx"),
    ("GET", "/roi?from=2026-01-01&to=2026-01-07", None, "2xx"),
    ("GET", "/roi?from=2026-01-07&to=2026-01-01", None, "4xx"),
    ("GET", "/roi?from=not-a-date&to=2026-01-01", None, "4xx"),
    ("POST", "/tasks", b'{"payload": [1, 2, 3], "unexpected": true', "4xx"),
    ("POST", "/tasks", b"[]", "4xx"),
    ("POST", "/webhooks/stripe", b'{"type": "charge.succeeded"}', "4xx"),
)


def api_probe(app_url: str | None, timeout: float = 10.0, examples: int = 10) -> CheckResult:
    """Send the fixed probe set to ``app_url``; every answer must be as expected."""
    if not app_url:
        raise NotRunnable(f"no {outputs.APP_URL} in the stack outputs: no app to probe")
    if not app_url.startswith(("http://", "https://")):
        raise NotRunnable(f"{outputs.APP_URL} {app_url!r} is not an http(s) URL")
    findings = []
    for method, path, body, expected in PROBES:
        request = urllib.request.Request(  # noqa: S310 (http(s) checked above)
            app_url.rstrip("/") + path,
            data=body,
            method=method,
            headers={"content-type": "application/json"} if body is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
        except (urllib.error.URLError, OSError) as exc:
            raise NotRunnable(f"{app_url} did not answer {method} {path}: {exc}") from None
        ok = str(status).startswith(expected[0])
        findings.append(Finding(f"{method} {path}", ok, f"answered {status}, expected {expected}"))
    findings += _schemathesis_gets(app_url, examples)
    return verdict(
        "api_probe",
        findings,
        f"{len(PROBES)} read-only and malformed-input probes answered as expected",
    )


def _schemathesis_gets(app_url: str, examples: int) -> list[Finding]:
    """Schema-driven probes of every GET operation; a 5xx is a failed finding."""
    try:
        import schemathesis
    except ImportError:
        return [Finding("schemathesis", True, "not installed: only the fixed probes ran")]
    try:
        schema = schemathesis.openapi.from_url(app_url.rstrip("/") + "/openapi.json")
    except Exception as exc:
        raise NotRunnable(f"cannot read {app_url}/openapi.json: {exc}") from None
    findings = []
    for result in schema.get_all_operations():
        outcome: Any = result
        if not hasattr(outcome, "ok"):  # Err: an operation the schema describes badly
            findings.append(Finding("openapi schema", False, f"invalid operation: {outcome.err()}"))
            continue
        operation = outcome.ok()
        if operation.method.upper() != "GET":
            continue
        server_errors = _server_errors(operation, app_url, examples)
        findings.append(
            Finding(
                f"schemathesis GET {operation.path}",
                not server_errors,
                f"server errors: {'; '.join(server_errors[:3])}"
                if server_errors
                else f"no 5xx in {2 * examples} generated requests at most",
            )
        )
    return findings


def _server_errors(operation: Any, app_url: str, examples: int) -> list[str]:
    """Positive and negative generated requests to one GET operation; the 5xx answers."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation.modes import GenerationMode

    errors: list[str] = []

    def probe_with(mode: Any) -> None:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def probe(case: Any) -> None:
            response = case.call(base_url=app_url.rstrip("/"), timeout=10)
            if response.status_code >= 500:
                errors.append(
                    f"{response.status_code} for {case.formatted_path} {case.query or ''}"
                )

        with contextlib.suppress(Unsatisfiable):  # no inputs: nothing invalid to send
            probe()

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        probe_with(mode)
    return errors
