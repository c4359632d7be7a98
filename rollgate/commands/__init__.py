"""One module per command group; each verb is a plain function returning an ``Outcome``.

Verbs never print. They return what happened (``result``, for ``--json``)
and how to say it to a person (``text``); ``rollgate.cli`` chooses which to
print. Progress on long work goes through ``Options.progress`` to stderr.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import CannotRun
from db.config import ProjectConfig


@dataclass(frozen=True)
class Options:
    """Global options, resolved once (flags, then environment, then defaults)."""

    dsn: str | None
    migrations_dir: Path
    schema_path: Path
    config: ProjectConfig = field(default_factory=ProjectConfig)
    progress: Callable[[str], None] = field(default=lambda message: None)
    # Asks a person to confirm a destructive step; False when nobody can answer.
    confirm: Callable[[str], bool] = field(default=lambda question: False)

    def require_dsn(self) -> str:
        if not self.dsn:
            raise CannotRun("no database given: pass --dsn postgresql://... or set DATABASE_URL")
        return self.dsn


@dataclass(frozen=True)
class Outcome:
    """What a verb did: an exit code (0 or 1), a JSON-able result and human text."""

    exit_code: int
    result: dict[str, Any]
    text: str
