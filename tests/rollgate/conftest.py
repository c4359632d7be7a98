"""Helpers for CLI tests: run ``rollgate.cli.main`` in-process and capture what it printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollgate.cli import main

ROOT = Path(__file__).resolve().parents[2]
# Nothing listens on port 1: connecting fails at once, with the password in the DSN.
UNREACHABLE = "postgresql://app:hunter2@127.0.0.1:1/app"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``rollgate ARGV`` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
