"""Progress on long work: a callback that takes one human-readable line.

Core code reports progress through it and never prints; the CLI decides where
the lines go (stderr, so ``--json`` stdout stays parseable).
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


def silent(message: str) -> None:
    """A ``Progress`` that says nothing."""
