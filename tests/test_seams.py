"""Facts that two packages must agree on, held together where both can be seen."""

from __future__ import annotations

import tomllib
from pathlib import Path

from db.throwaway import TARGET_POSTGRES_MAJOR
from infra.audit import AUDIT_LOG_NAME
from infra.config import DEFAULT_POSTGRES_MAJOR
from release.audit import AUDIT_LOG


def test_rds_default_engine_is_the_major_version_the_tests_run_against() -> None:
    # The throwaway servers (embedded and docker) run TARGET_POSTGRES_MAJOR;
    # production must default to the same major or the tests prove nothing.
    assert DEFAULT_POSTGRES_MAJOR == TARGET_POSTGRES_MAJOR


def test_the_audit_roles_log_prefix_is_the_audits_log() -> None:
    # infra may not import release: the audit task role's s3:PutObject prefix
    # (logs/<name>/*) must still name the log `rollgate audit` appends to.
    assert AUDIT_LOG_NAME == AUDIT_LOG


def test_the_tools_image_installs_the_rollgate_console_script() -> None:
    # The migrate and audit tasks run `rollgate ...` (infra: toolsImage); the
    # tools image installs the project's wheel, whose console script is that command.
    root = Path(__file__).resolve().parents[1]
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["rollgate"] == "rollgate.cli:main"
    dockerfile = (root / "tools" / "Dockerfile").read_text()
    assert "test -x /opt/rollgate/bin/rollgate" in dockerfile
    build = (root / "tools" / "image" / "build.sh").read_text()
    assert 'echo "rollgate" > "$context/requirements.txt"' in build
