"""Human sizes ("250MB", "1.5GB") to bytes, with PostgreSQL's units."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from core.errors import CannotRun

_UNITS = {
    "": 1,
    "b": 1,
    "byte": 1,
    "bytes": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?P<unit>[A-Za-z]*)\s*$")
_ACCEPTED_FORMS = (
    "a positive number of bytes with an optional unit B, kB, MB, GB or TB "
    "(case-insensitive, K/M/G/T and KiB/MiB/GiB/TiB also accepted; powers of 1024 "
    "as in PostgreSQL's pg_size_pretty), e.g. 250MB, 1.5GB, 512kB or 1048576"
)


def parse_size(text: str) -> int:
    """Bytes in ``text`` such as "250MB", "1.5GB", "512kB", "250M" or "1048576".

    Units are PostgreSQL's: powers of 1024 (1 MB = 1,048,576 bytes), any case.
    Fractions are allowed with a unit and rounded down to whole bytes.
    Raises ``CannotRun`` for anything else, including zero and negatives.
    """
    match = _SIZE.match(text)
    unit = match["unit"].lower() if match else ""
    if match is None or unit not in _UNITS:
        raise CannotRun(
            f"invalid size {text!r}: expected {_ACCEPTED_FORMS}",
            details={"value": text, "accepted": _ACCEPTED_FORMS},
        )
    try:
        number = Decimal(match["number"])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise CannotRun(f"invalid size {text!r}: expected {_ACCEPTED_FORMS}") from exc
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise CannotRun(
            f"invalid size {text!r}: must be at least one byte; expected {_ACCEPTED_FORMS}",
            details={"value": text, "accepted": _ACCEPTED_FORMS},
        )
    return size
