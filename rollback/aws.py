"""One way to make a boto3 client, so a bad endpoint is a usage problem, not a crash.

botocore refuses some endpoints that are not URLs (``--aws-endpoint-url``,
or ``$AWS_ENDPOINT_URL``, which it also reads on its own) with a bare
``ValueError`` while the client is built (an internal error, exit 3), and
others only at the first request, with a message naming neither source.
Every client the rollback layer makes goes through ``make_client``, which
checks the endpoint first (``is_endpoint_url``, also the CLI's option type)
and refuses it with ``CannotRun`` naming both.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

from core.errors import CannotRun

ENDPOINT_FORM = "http(s)://HOST[:PORT], e.g. http://127.0.0.1:5000"


def is_endpoint_url(text: str) -> bool:
    """Whether ``text`` is an endpoint botocore can call: http(s)://HOST[:PORT][/PATH]."""
    parsed = urlparse(text)
    try:
        return (
            parsed.scheme in ("http", "https")
            and bool(parsed.hostname)
            and (parsed.port or 0) >= 0  # reading the port checks its range
        )
    except ValueError:  # a port that is not a number, or out of range
        return False


def make_client(service: str, endpoint_url: str | None, config: Any) -> Any:
    """``boto3.client(service, ...)``; ``CannotRun`` when the endpoint is unusable."""
    import boto3

    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    if endpoint is not None and not is_endpoint_url(endpoint):
        raise CannotRun(
            f"cannot use the AWS endpoint {endpoint!r} (--aws-endpoint-url or "
            f"$AWS_ENDPOINT_URL) for {service}: expected {ENDPOINT_FORM}"
        )
    return boto3.client(service, endpoint_url=endpoint, config=config)
