"""core.redaction: a registered secret never survives scrubbing, in any spelling."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from core.redaction import (
    MIN_SECRET_LENGTH,
    holds_secret,
    register_secret,
    scrub,
    scrub_data,
)

SECRET = "pa@ss:w/o'rd é\\\udcff"


@pytest.mark.parametrize(
    "spelling",
    [
        SECRET,
        quote(SECRET.encode("utf-8", "surrogateescape"), safe=""),  # in a URL
        repr(SECRET)[1:-1],  # a {value!r} message, a traceback
        json.dumps(SECRET)[1:-1],  # a JSON document
        json.dumps(SECRET, ensure_ascii=False)[1:-1],
        SECRET.replace("\\", "\\\\").replace("'", "\\'"),  # libpq keyword quoting
        SECRET.encode("utf-8", "backslashreplace").decode("utf-8"),  # a terminal's \udcff
        SECRET.encode("ascii", "backslashreplace").decode("ascii"),  # an ASCII terminal
    ],
)
def test_every_spelling_of_a_secret_is_masked(spelling: str) -> None:
    register_secret(SECRET)
    text = f"before {spelling} after"
    assert scrub(text) == "before *** after"
    assert holds_secret(text) and not holds_secret(scrub(text))


def test_a_registered_percent_encoded_value_is_masked_decoded_too() -> None:
    register_secret("Hunter2%40Wrong")
    assert scrub("password Hunter2@Wrong") == "password ***"


def test_the_longest_secret_is_masked_whole() -> None:
    register_secret("Hunter2")
    register_secret("Hunter2@Wrong")
    assert scrub("x Hunter2@Wrong y") == "x *** y"


def test_short_values_are_not_masked_in_free_text() -> None:
    register_secret("a" * (MIN_SECRET_LENGTH - 1))
    assert scrub("a banana") == "a banana"


def test_structures_are_scrubbed_keys_and_values() -> None:
    register_secret("Hunter2Wrong")
    data = {"Hunter2Wrong": ["x Hunter2Wrong", 3, None, {"k": ("Hunter2Wrong",)}]}
    assert scrub_data(data) == {"***": ["x ***", 3, None, {"k": ["***"]}]}


def test_nothing_registered_changes_nothing() -> None:
    assert scrub("Hunter2 everywhere") == "Hunter2 everywhere"
    assert not holds_secret("Hunter2")
