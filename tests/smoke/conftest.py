"""Seeded violations for the smoke suite: the bundled migrations plus one bad step.

``seeded(...)`` writes a migrations directory holding every bundled migration
and the given extra ones; ``smoke(...)`` runs the real suite on it through
``run_smoke`` (a ``python -m pytest smoke`` subprocess) on the embedded
backend with a small sample, and returns the report.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from db.migrations import BUNDLED_MIGRATIONS
from smoke.run import SmokeOptions, SmokeReport, run_smoke

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "db/schema.sql"

# label -> (up, down, verify)
Extra = dict[str, tuple[str, str, str]]


@pytest.fixture
def seeded(tmp_path: Path) -> Callable[[Extra], Path]:
    def write(extra: Extra) -> Path:
        directory = tmp_path / "migrations"
        shutil.copytree(BUNDLED_MIGRATIONS, directory)
        for label, (up, down, verify) in extra.items():
            for kind, text in (("up", up), ("down", down), ("verify", verify)):
                (directory / f"{label}.{kind}.sql").write_text(text + "\n")
        return directory

    return write


@pytest.fixture
def smoke(tmp_path: Path) -> Callable[..., SmokeReport]:
    def run(migrations: Path = BUNDLED_MIGRATIONS, **options: Any) -> SmokeReport:
        options.setdefault("backend", "embedded")
        options.setdefault("sample_size", "2MB")
        return run_smoke(
            SmokeOptions(
                migrations=migrations,
                schema=options.pop("schema", SCHEMA),
                output_dir=tmp_path / "report",
                **options,
            )
        )

    return run


def outcome(report: SmokeReport, check: str) -> dict[str, Any]:
    """The summary entry of the one check whose node id ends with ``check``."""
    found = [v for k, v in report.summary["checks"].items() if k.endswith(check)]
    assert len(found) == 1, (check, sorted(report.summary["checks"]))
    entry: dict[str, Any] = found[0]
    return entry


@pytest.fixture(scope="session")
def app_image() -> str:
    """The app image (built by app/image/build.sh when missing), as tests/app uses it."""
    from tests.app.test_image import IMAGE

    present = subprocess.run(
        ["docker", "image", "inspect", IMAGE], capture_output=True, check=False
    )
    if present.returncode != 0:
        subprocess.run(["bash", str(REPO / "app/image/build.sh")], check=True, timeout=900)
    return IMAGE
