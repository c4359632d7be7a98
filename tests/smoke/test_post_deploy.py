"""``rollgate smoke --post-deploy`` against a local stand-in for the live stack.

The stack: the real app (``python -m app web``) on a migrated database, behind
a local HTTPS front (the ALB's part) whose certificate a CA generated here
signs for ``localhost``; moto's SQS queue with its DLQ, and moto's Secrets
Manager holding the read-only audit role's credentials.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import secrets
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import boto3
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from psycopg.conninfo import conninfo_to_dict

from infra import outputs
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


def _certificates(directory: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a CA and a server certificate for ``names``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Rollgate smoke test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class _Front(BaseHTTPRequestHandler):
    """The load balancer's part: TLS in front, plain HTTP to the app's port."""

    upstream: ClassVar[int] = 0

    def do_GET(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=10)
        conn.request("GET", self.path)
        response = conn.getresponse()
        body = response.read()
        self.send_response(response.status)
        self.send_header("Content-Type", response.getheader("Content-Type") or "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def https_front(tmp_path: Path) -> Iterator[Callable[[int, list[str]], tuple[int, Path]]]:
    servers: list[ThreadingHTTPServer] = []

    def start(upstream: int, names: list[str]) -> tuple[int, Path]:
        ca, cert, key = _certificates(tmp_path, names)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        handler = type("Front", (_Front,), {"upstream": upstream})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1], ca

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def stack_outputs(
    app_env: dict[str, str],  # noqa: F811 (the fixture)
    queues: Queues,  # noqa: F811 (the fixture)
    start_app: Callable[..., AppProcess],  # noqa: F811 (the fixture)
    https_front: Callable[[int, list[str]], tuple[int, Path]],
    tmp_path: Path,
) -> Callable[..., tuple[Path, Path]]:
    """Factory: start the stand-in stack; return (outputs file, CA bundle)."""
    dsn = app_env["DATABASE_URL"]
    parts = conninfo_to_dict(dsn)
    audit_user = f"smoke_audit_{secrets.token_hex(3)}"
    password = secrets.token_hex(12)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE ROLE {audit_user} LOGIN PASSWORD '{password}' IN ROLE pg_read_all_data"
        )
    secret_arn = boto3.client(
        "secretsmanager", region_name="us-east-1", endpoint_url=queues.endpoint
    ).create_secret(
        Name=f"rollgate/audit-{secrets.token_hex(3)}",
        SecretString=json.dumps({"username": audit_user, "password": password}),
    )["ARN"]
    web = start_app("web", app_env)

    def make(
        *, certificate_names: tuple[str, ...] = ("localhost",), host: str = "localhost"
    ) -> tuple[Path, Path]:
        port, ca = https_front(web.port or 0, list(certificate_names))
        dlq_arn = queues.client.get_queue_attributes(
            QueueUrl=queues.dlq_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        values = {
            outputs.APP_URL: f"https://{host}:{port}",
            outputs.DB_ADDRESS: parts.get("host") or "127.0.0.1",
            outputs.DB_PORT: int(parts.get("port") or 5432),
            outputs.DB_NAME: parts["dbname"],
            outputs.DB_AUDIT_SECRET_ARN: secret_arn,
            outputs.QUEUE_URL: queues.url,
            outputs.DLQ_URL: queues.dlq_url,
            outputs.DLQ_ARN: dlq_arn,
        }
        path = tmp_path / "stack-outputs.json"
        path.write_text(json.dumps(values))
        return path, ca

    return make


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
