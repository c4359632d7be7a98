"""Fixtures for core tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.redaction import forget_secrets


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    """Each test starts and ends with an empty secret registry (it is process-wide)."""
    forget_secrets()
    yield
    forget_secrets()
