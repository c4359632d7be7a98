"""Why infra/ is type-checked: a nested typo sails through the mocks, mypy stops it.

CI runs ``mypy infra`` (strict, against pulumi-aws's typed ``*Args``/``*ArgsDict``).
This test shows the gap that closes on a fixture outside infra/.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.infra.harness import REPO_ROOT, run_program

FIXTURE = REPO_ROOT / "tests" / "infra" / "typecheck" / "nested_typo.py"


def test_mocks_accept_a_nested_typo() -> None:
    run = run_program({}, "typo", program_path=FIXTURE)
    service = run.one("aws:ecs/service:Service")
    assert service.inputs["deploymentCircuitBreaker"] == {"enable": True, "rolback": True}


@pytest.mark.slow
def test_mypy_rejects_the_nested_typo() -> None:
    """Cold, mypy reads all of pulumi-aws (about a minute); with CI's cache, about a second."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(FIXTURE)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    assert "nested_typo.py:5: error" in result.stdout
    assert "[call-overload]" in result.stdout
