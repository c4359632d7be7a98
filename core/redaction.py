"""A process-wide registry of secrets, and scrubbing them out of anything printed.

Messages are built so that they never hold a password (targets are described
by host, port, database and user only). This registry is the second line of
defence: whatever the process learns is secret (a DSN's password, the DSN
string itself, ``PGPASSWORD``) is registered once, early, and every message,
JSON document and crash file passes through ``scrub`` before it is written.
A library's error text that echoes its input, a ``repr`` in a traceback or an
argparse complaint about a mistyped option then cannot carry the secret out.

Each secret is registered together with the spellings it takes on its way
into text: percent-encoded and -decoded (URLs), Python ``repr`` escapes
(tracebacks, ``{value!r}`` messages), JSON escapes, libpq's backslash
quoting, and the backslash form a terminal shows for undecodable bytes.

Values shorter than ``MIN_SECRET_LENGTH`` are not scrubbed from free text:
replacing every "ab" in a message would destroy it and hide nothing. Such
passwords are kept out by construction only (no message quotes a DSN).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

MIN_SECRET_LENGTH = 4
MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Remember ``value`` (and the ways it gets spelled) as never to be printed."""
    global _pattern  # noqa: PLW0603 - one registry per process, on purpose
    spellings = {form for form in _spellings(value) if len(form) >= MIN_SECRET_LENGTH}
    with _lock:
        if spellings - _secrets:
            _secrets.update(spellings)
            _pattern = None


def forget_secrets() -> None:
    """Empty the registry (for tests that need a clean process state)."""
    global _pattern  # noqa: PLW0603
    with _lock:
        _secrets.clear()
        _pattern = None


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    pattern = _current_pattern()
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def scrub_data(value: Any) -> Any:
    """A copy of a JSON-like structure with every string (keys too) scrubbed."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_data(key): scrub_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_data(item) for item in value]
    return value


def holds_secret(text: str) -> bool:
    """Whether ``text`` still contains a registered secret."""
    pattern = _current_pattern()
    return pattern is not None and pattern.search(text) is not None


def _current_pattern() -> re.Pattern[str] | None:
    global _pattern  # noqa: PLW0603
    with _lock:
        if _pattern is None and _secrets:
            # Longest first, so a secret is masked whole before any part of it.
            ordered = sorted(_secrets, key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(secret) for secret in ordered))
        return _pattern


def _spellings(value: str) -> set[str]:
    forms = {value, value.strip()}
    # A URL carries the encoded form; the parsed value is the decoded one.
    for decoded in (unquote(value, errors="surrogateescape"), unquote_plus(value)):
        forms.add(decoded)
    for form in list(forms):
        raw = form.encode("utf-8", "surrogateescape")
        forms.add(quote(raw, safe=""))
        forms.add(quote_plus(raw, safe=""))
        forms.add(repr(form)[1:-1])
        forms.add(json.dumps(form)[1:-1])
        forms.add(json.dumps(form, ensure_ascii=False)[1:-1])
        # How a stream with errors="backslashreplace" shows it (UTF-8 or ASCII).
        forms.add(form.encode("utf-8", "backslashreplace").decode("utf-8"))
        forms.add(form.encode("ascii", "backslashreplace").decode("ascii"))
        forms.add(raw.decode("utf-8", "replace"))
        forms.add(raw.decode("latin-1"))
        # libpq keyword quoting: backslash before ' and \.
        forms.add(re.sub(r"(['\\])", r"\\\1", form))
    return forms
