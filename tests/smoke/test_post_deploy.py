"""``rollgate smoke --post-deploy`` against a local stand-in for the live stack.

The stack (``release.standins``, as the rehearsal builds it): the real app
(``python -m app web``) on a migrated database, behind a local HTTPS front (the
ALB's part) whose certificate a CA generated here signs for ``localhost``;
moto's SQS queue with its DLQ, and moto's Secrets Manager holding the
credentials of the read-only audit role that ``db.roles``' bootstrap made.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from release import standins
from smoke.run import SmokeReport
from tests.app.conftest import (  # noqa: F401 (fixtures, re-exported for pytest)
    AppProcess,
    Queues,
    app_env,
    moto_endpoint,
    queues,
    start_app,
)
from tests.smoke.conftest import outcome

pytestmark = pytest.mark.slow

Smoke = Callable[..., SmokeReport]


@pytest.fixture
def stack_outputs(
    app_env: dict[str, str],  # noqa: F811 (the fixture)
    queues: Queues,  # noqa: F811 (the fixture)
    start_app: Callable[..., AppProcess],  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> Iterator[Callable[..., tuple[Path, Path]]]:
    """Factory: start the stand-in stack; return (outputs file, CA bundle)."""
    dsn = app_env["DATABASE_URL"]
    audit_user = f"smoke_audit_{secrets.token_hex(3)}"
    password = standins.new_password()
    standins.create_audit_role(dsn, audit_user, password)
    secret_arn = standins.publish_audit_secret(
        queues.endpoint,
        username=audit_user,
        password=password,
        name=f"rollgate/audit-{secrets.token_hex(3)}",
    )
    web = start_app("web", app_env)

    with contextlib.ExitStack() as fronts:

        def make(
            *, certificate_names: tuple[str, ...] = ("localhost",), host: str = "localhost"
        ) -> tuple[Path, Path]:
            certificates = standins.make_certificates(tmp_path / "tls", certificate_names)
            front = fronts.enter_context(standins.TlsFront(web.url, certificates, host=host))
            values = standins.stack_outputs(
                app_url=front.url,
                dsn=dsn,
                audit_secret_arn=secret_arn,
                endpoint=queues.endpoint,
                queue_url=queues.url,
                dlq_url=queues.dlq_url,
            )
            path = tmp_path / "stack-outputs.json"
            path.write_text(json.dumps(values))
            return path, certificates.ca

        yield make


def test_post_deploy_passes_against_a_healthy_stack(
    stack_outputs: Callable[..., tuple[Path, Path]],
    smoke: Smoke,
    moto_endpoint: str,  # noqa: F811
) -> None:
    path, ca = stack_outputs()
    report = smoke(
        post_deploy=True, stack_outputs=path, ca_bundle=ca, aws_endpoint_url=moto_endpoint
    )
    assert report.exit_code == 0, report.summary["checks"]
    results = report.summary["post_deploy"]
    assert results["readyz"]["status"] == 200
    assert results["schema_version"]["live"] == results["schema_version"]["release"]
    assert results["queue"]["redrive_policy"]["maxReceiveCount"]
    assert results["round_trip"]["received_and_deleted"] is True
    assert report.summary["counts"]["passed"] == 4


def test_post_deploy_verifies_the_tls_name(
    stack_outputs: Callable[..., tuple[Path, Path]],
    smoke: Smoke,
    moto_endpoint: str,  # noqa: F811
) -> None:
    # The certificate names another host: the CA is trusted, the name is not theirs.
    path, ca = stack_outputs(certificate_names=("app.example.internal",))
    report = smoke(
        post_deploy=True,
        stack_outputs=path,
        ca_bundle=ca,
        aws_endpoint_url=moto_endpoint,
        select="tls",
    )
    assert report.exit_code == 1
    check = outcome(report, "test_the_app_is_ready_over_tls")
    assert check["outcome"] == "failed"
    assert "match" in check["message"] or "hostname" in check["message"], check
