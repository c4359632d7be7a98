"""Post-deploy: what the suite reads from the live stack (``pulumi stack output --json``).

Only reads, plus one tagged message through the queue that the check deletes
again. The database is reached as the read-only audit role, whose credentials
come from the Secrets Manager secret the stack names (``dbAuditSecretArn``);
libpq's ``PGSSLMODE`` / ``PGSSLROOTCERT`` apply (production: verify-full).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from psycopg.conninfo import make_conninfo

from core.errors import CannotRun
from infra import outputs

#: The message attribute that marks the smoke suite's round-trip message.
SMOKE_TAG_ATTRIBUTE = "rollgate-smoke"
REQUIRED = (
    outputs.APP_URL,
    outputs.DB_ADDRESS,
    outputs.DB_PORT,
    outputs.DB_NAME,
    outputs.DB_AUDIT_SECRET_ARN,
    outputs.QUEUE_URL,
    outputs.DLQ_URL,
    outputs.DLQ_ARN,
)


@dataclass(frozen=True)
class StackOutputs:
    """The outputs the post-deploy checks use, by infra/outputs.py's names."""

    values: dict[str, Any]
    source: str

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


def read_stack_outputs(path: str) -> StackOutputs:
    """Parse ``pulumi stack output --json`` from ``path`` (``-``: stdin); refuse missing names."""
    source = "stdin" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        values = json.loads(text)
    except OSError as exc:
        raise CannotRun(f"cannot read stack outputs from {source}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CannotRun(
            f"stack outputs in {source} are not JSON ({exc}): pass `pulumi stack output --json`"
        ) from exc
    if not isinstance(values, dict):
        raise CannotRun(f"stack outputs in {source} must be a JSON object")
    missing = [name for name in REQUIRED if name not in values]
    if missing:
        raise CannotRun(f"stack outputs in {source} lack {', '.join(missing)}")
    secret = [name for name in REQUIRED if values[name] == "[secret]"]
    if secret:
        raise CannotRun(f"{', '.join(secret)} shown as [secret]: use --show-secrets")
    return StackOutputs(values, source)


def audit_dsn(stack: StackOutputs, endpoint_url: str | None, region: str) -> str:
    """A DSN for the read-only audit role, from its Secrets Manager secret."""
    client = boto3.client("secretsmanager", region_name=region, endpoint_url=endpoint_url)
    secret = json.loads(
        client.get_secret_value(SecretId=stack[outputs.DB_AUDIT_SECRET_ARN])["SecretString"]
    )
    return make_conninfo(
        host=str(stack[outputs.DB_ADDRESS]),
        port=str(stack[outputs.DB_PORT]),
        dbname=str(stack[outputs.DB_NAME]),
        user=secret["username"],
        password=secret["password"],
        options="-c default_transaction_read_only=on",
        application_name="rollgate-smoke",
        connect_timeout="10",
    )
