"""Stack outputs: exactly the shared names, no secret material, importable without Pulumi."""

from __future__ import annotations

import json
import subprocess
import sys

from infra import outputs
from tests.infra.harness import REPO_ROOT, ProgramRun


def test_program_exports_exactly_the_shared_output_names(run: ProgramRun) -> None:
    assert set(run.exports) == outputs.ALL_OUTPUTS


def test_outputs_hold_no_secret_material(run: ProgramRun) -> None:
    text = json.dumps(run.exports).lower()
    assert "password" not in text
    assert run.exports[outputs.DB_SECRET_ARN].startswith("arn:aws:secretsmanager:")


def test_outputs_are_what_smoke_and_rollback_need(run: ProgramRun) -> None:
    assert run.exports[outputs.DB_INSTANCE_ID] == f"rollgate-{run.stack}"
    assert run.exports[outputs.DB_ENDPOINT].endswith(":5432")
    assert run.exports[outputs.QUEUE_URL].startswith("https://sqs.")
    assert run.exports[outputs.WEB_DEPLOYMENT_ALARMS] == [f"rollgate-{run.stack}-http-5xx-rate"]
    for name in (
        outputs.CLUSTER_NAME,
        outputs.WEB_SERVICE_NAME,
        outputs.WORKER_SERVICE_NAME,
        outputs.ARTIFACT_BUCKET,
    ):
        assert isinstance(run.exports[name], str)
        assert run.exports[name]


def test_shared_constant_modules_do_not_import_pulumi() -> None:
    code = (
        "import sys, infra.outputs, infra.tagging; "
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('pulumi', 'pulumi_aws')]; "
        "sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=False)
    assert result.returncode == 0, "infra.outputs / infra.tagging must stay free of pulumi imports"
