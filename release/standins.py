"""Local stand-ins for what only a deployed stack has, so the post-deploy suite can run.

The post-deploy smoke suite (``smoke/test_post_deploy.py``) reads the stack's
outputs and checks the app over TLS and the database as the read-only audit
role. On one machine these stand in for the cloud's parts:

* ``make_certificates``: a CA and a server certificate it signs (ACM's part);
* ``TlsFront``: HTTPS on 127.0.0.1 in front of the app's ``http://`` URL (the
  load balancer's listener), for as long as the ``with`` block runs;
* ``create_audit_role``: the read-only audit role, made by the project's own
  bootstrap (``db.roles``, what ``rollgate db bootstrap-roles`` runs);
* ``publish_audit_secret``: its credentials as the Secrets Manager secret the
  stack names (``dbAuditSecretArn``; JSON ``username``, ``password``);
* ``stack_outputs``: the outputs the suite reads, by ``infra.outputs`` names.

The password is registered with ``core.redaction`` and travels only into the
secret and the role's SCRAM verifier: never into a file or a message.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import secrets
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.errors import CannotRun
from core.redaction import register_secret
from db.roles import READER_GROUP, RoleOutcome, ServiceRole, bootstrap_roles
from infra import outputs
from release import apps

#: The certificates live a day: long enough for any rehearsal, useless once leaked.
CERTIFICATE_LIFETIME = datetime.timedelta(days=1)
#: Headers that belong to one connection, not to the request a proxy forwards (RFC 9110 7.6.1).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


@dataclass(frozen=True)
class Certificates:
    """PEM files: the CA (the bundle a client trusts) and the server's certificate and key."""

    ca: Path
    certificate: Path
    key: Path


def make_certificates(
    directory: Path, names: Sequence[str], *, ca_name: str = "Rollgate stand-in CA"
) -> Certificates:
    """A fresh CA, and a certificate it signs for ``names`` (DNS names or IP addresses)."""
    if not names:
        raise ValueError("a server certificate needs at least one name")
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    # A few minutes' grace either side of now: clocks of client and server may differ.
    valid_from, valid_to = now - datetime.timedelta(minutes=5), now + CERTIFICATE_LIFETIME
    ca_key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(issuer)
        .issuer_name(issuer)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files.key.touch(mode=0o600)
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class _FrontServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: tuple[str, int], context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        # The handshake happens on the first read, in the request's own thread: a client
        # that never finishes it cannot stall the accept loop.
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that rejects the certificate (the check working) is not the front's
        # error; the client reports it. Tracebacks on stderr would only be noise.
        pass


class _ProxyHandler(BaseHTTPRequestHandler):
    """TLS in, plain HTTP to the app: what the load balancer's listener does."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def _forward(self) -> None:
        host, port = cast(_FrontServer, self.server).upstream
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["X-Forwarded-Proto"] = "https"
        headers["X-Forwarded-For"] = self.client_address[0]
        upstream = http.client.HTTPConnection(host, port, timeout=30)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            status, reply_headers, payload = response.status, response.getheaders(), response.read()
        except OSError as exc:
            # What an ALB answers when its target does not.
            status, reply_headers = 502, [("Content-Type", "text/plain")]
            payload = f"the app at http://{host}:{port} did not answer: {exc}".encode()
        finally:
            upstream.close()
        self.send_response(status)
        for name, value in reply_headers:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class TlsFront:
    """HTTPS on 127.0.0.1 that proxies to ``upstream_url`` (``http://HOST:PORT``).

    Use as a context manager; ``url`` is ``https://<host>:<port>``, where ``host``
    is the name clients use (one of the certificate's names, or not: a test of
    the client's name check).
    """

    def __init__(
        self, upstream_url: str, certificates: Certificates, *, host: str = "localhost"
    ) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise CannotRun(
                f"the TLS front needs the app's http://HOST:PORT URL, not {upstream_url}"
            )
        self.upstream = (parts.hostname, parts.port)
        self.certificates = certificates
        self.host = host
        self._server: _FrontServer | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the TLS front is not running: use it in a with block")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def __enter__(self) -> TlsFront:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificates.certificate, self.certificates.key)
        self._server = _FrontServer(self.upstream, context)
        threading.Thread(
            target=self._server.serve_forever, name="rollgate-tls-front", daemon=True
        ).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def new_password() -> str:
    """A generated password, registered with ``core.redaction`` before anyone can print it."""
    password = secrets.token_urlsafe(24)
    register_secret(password)
    return password


def create_audit_role(dsn: str, name: str, password: str) -> RoleOutcome:
    """The read-only audit role (a member of ``rollgate_reader``), by the project's bootstrap.

    ``dsn`` connects as the schema's owner, as ``rollgate db bootstrap-roles`` does.
    """
    register_secret(password)
    role = ServiceRole(
        purpose="audit",
        name=name,
        password=password,
        group=READER_GROUP,
        user_variable=outputs.SECRET_DB_AUDIT_USER,
        password_variable=outputs.SECRET_DB_AUDIT_PASSWORD,
    )
    return bootstrap_roles(dsn, (role,)).roles[0]


def publish_audit_secret(
    endpoint: str, *, username: str, password: str, name: str = "rollgate/db-audit"
) -> str:
    """Store the audit role's credentials as the stack's JSON secret; return its ARN.

    Publishing again under the same name replaces the value (a rotated password).
    """
    client = apps.aws_client("secretsmanager", endpoint)
    value = json.dumps({"username": username, "password": password})
    try:
        return str(client.create_secret(Name=name, SecretString=value)["ARN"])
    except client.exceptions.ResourceExistsException:
        return str(client.put_secret_value(SecretId=name, SecretString=value)["ARN"])


def stack_outputs(
    *,
    app_url: str,
    dsn: str,
    audit_secret_arn: str,
    endpoint: str,
    queue_url: str,
    dlq_url: str,
) -> dict[str, Any]:
    """The outputs the post-deploy suite reads (``smoke.postdeploy.REQUIRED``), and their kin.

    The database's address, port and name are what the server reports for ``dsn``.
    """
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        address, port, database = conn.info.host, conn.info.port, conn.info.dbname
    sqs = apps.aws_client("sqs", endpoint)

    def arn(url: str) -> str:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attributes["Attributes"]["QueueArn"])

    return {
        outputs.APP_URL: app_url,
        outputs.DB_ENDPOINT: f"{address}:{port}",
        outputs.DB_ADDRESS: address,
        outputs.DB_PORT: int(port),
        outputs.DB_NAME: database,
        outputs.DB_AUDIT_SECRET_ARN: audit_secret_arn,
        outputs.QUEUE_URL: queue_url,
        outputs.QUEUE_ARN: arn(queue_url),
        outputs.DLQ_URL: dlq_url,
        outputs.DLQ_ARN: arn(dlq_url),
    }
