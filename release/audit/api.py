"""The live app's API, probed without writing.

GET endpoints must answer (``/healthz``, ``/readyz``, ``/roi`` with a valid
range) and malformed input must be refused with a 4xx before anything is
written: a POST whose body fails validation, a webhook without a signature,
an inverted ``/roi`` range. A 5xx, or a 2xx to bad input, fails the check.
(Schemathesis drives the same schema-derived cases in the app's own test
suite; here a fixed, non-writing set keeps the scheduled audit side-effect free.)
"""

from __future__ import annotations

import urllib.error
import urllib.request

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


def api_probe(app_url: str | None, timeout: float = 10.0) -> CheckResult:
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
    return verdict(
        "api_probe",
        findings,
        f"{len(PROBES)} read-only and malformed-input probes answered as expected",
    )
