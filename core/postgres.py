"""Connecting to PostgreSQL, and never letting a password into a message."""

from __future__ import annotations

import re
from typing import Any

import psycopg

from core.errors import DatabaseUnreachable

_PASSWORD_IN_URL = re.compile(r"(://[^:/@]*:)[^@]*@")
_PASSWORD_IN_KEYWORDS = re.compile(r"(password\s*=\s*)(\S+)", re.IGNORECASE)


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced, safe for messages and logs."""
    return _PASSWORD_IN_KEYWORDS.sub(r"\1***", _PASSWORD_IN_URL.sub(r"\1***@", dsn))


def connect(dsn: str, *, application_name: str = "rollgate") -> psycopg.Connection[Any]:
    """An autocommit connection, or ``DatabaseUnreachable`` with a redacted DSN."""
    try:
        conn = psycopg.connect(
            dsn, autocommit=True, application_name=application_name, connect_timeout=10
        )
    except psycopg.OperationalError as exc:
        # psycopg puts the cause and the hint on separate, tab-indented lines.
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DatabaseUnreachable(
            f"cannot connect to {redact_dsn(dsn)}: {reason}",
            details={"dsn": redact_dsn(dsn)},
        ) from exc
    except psycopg.ProgrammingError as exc:
        reason = " ".join(str(exc).split())
        raise DatabaseUnreachable(f"invalid DSN {redact_dsn(dsn)}: {reason}") from exc
    return conn
