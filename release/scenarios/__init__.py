"""The releases a rehearsal plays: ``healthy`` (N+1 as it should be) and the broken ones.

Each scenario is a directory of real migration files (the release's new
migrations, numbered after the bundled set) and a ``scenario.json``:
``description``, ``expect`` (``go`` or ``no-go``), optionally
``lock_budget_seconds`` and ``new_app_env`` (settings the new app release
runs with; ``{sqs_endpoint}`` is replaced by the sandbox's SQS endpoint).
``materialize`` writes the bundled migrations plus the scenario's into one
directory, which is what the gate and the runner read. Scenario files are
numbered from ``0005`` meaning "the first migration after release N": they
are renumbered after the bundled set's last version, whatever it is.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import CannotRun
from db.migrations import BUNDLED_MIGRATIONS

SCENARIOS_DIR = Path(__file__).resolve().parent
HEALTHY = "healthy"
#: A scenario's file NNNN_ becomes release N's last version + (NNNN - FIRST_NEW + 1).
FIRST_NEW = 5
_VERSION = re.compile(r"^(\d{4})_")


def release_n_version() -> int:
    """The last bundled migration's version: the schema release N runs on."""
    versions = [
        int(m.group(1))
        for p in BUNDLED_MIGRATIONS.glob("*.up.sql")
        if (m := _VERSION.match(p.name))
    ]
    return max(versions, default=0)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    expect: str
    directory: Path
    lock_budget_seconds: float | None = None
    new_app_env: dict[str, str] = field(default_factory=dict)

    def app_env(self, sqs_endpoint: str) -> dict[str, str]:
        return {k: v.replace("{sqs_endpoint}", sqs_endpoint) for k, v in self.new_app_env.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "expect": self.expect,
            "migrations": sorted(p.name for p in self.directory.glob("*.sql")),
            "lock_budget_seconds": self.lock_budget_seconds,
            "new_app_env": dict(self.new_app_env),
        }


def scenario_names() -> list[str]:
    return sorted(p.parent.name for p in SCENARIOS_DIR.glob("*/scenario.json"))


def load_scenario(name: str) -> Scenario:
    """The scenario ``name``; ``CannotRun`` naming the known ones if there is none."""
    directory = SCENARIOS_DIR / name
    path = directory / "scenario.json"
    if not path.is_file():
        raise CannotRun(
            f"unknown rehearsal scenario {name!r}; choose one of: {', '.join(scenario_names())}"
        )
    data = json.loads(path.read_text())
    budget = data.get("lock_budget_seconds")
    return Scenario(
        name=name,
        description=str(data["description"]),
        expect=str(data["expect"]),
        directory=directory,
        lock_budget_seconds=float(budget) if budget is not None else None,
        new_app_env={str(k): str(v) for k, v in data.get("new_app_env", {}).items()},
    )


def materialize(scenario: Scenario, destination: Path) -> Path:
    """The bundled migrations plus ``scenario``'s, copied into ``destination``; returns it."""
    destination.mkdir(parents=True, exist_ok=True)
    for path in sorted(BUNDLED_MIGRATIONS.glob("*.sql")):
        shutil.copy2(path, destination / path.name)
    shift = release_n_version() + 1 - FIRST_NEW
    for path in sorted(scenario.directory.glob("*.sql")):
        match = _VERSION.match(path.name)
        assert match is not None, path
        version = int(match.group(1)) + shift
        shutil.copy2(path, destination / f"{version:04d}_{path.name[5:]}")
    return destination
