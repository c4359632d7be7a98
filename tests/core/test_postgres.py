"""core.postgres: DSNs described without passwords, refused without echoing, secrets found."""

from __future__ import annotations

import shutil

import psycopg
import pytest

from core.errors import CannotRun, DatabaseUnreachable
from core.postgres import connect, describe_dsn, parse_dsn, passwords_in, redact_dsn, server_disk
from db.throwaway import ThrowawayPostgres

SECRET = "ProbeSecret9"


@pytest.mark.parametrize(
    ("dsn", "meant"),
    [
        ("postgresql://u:ProbeSecret9@h/x", "ProbeSecret9"),
        ("mysql://u:ProbeSecret9@127.0.0.1/db", "ProbeSecret9"),
        ("postgresql://u:Hunter2@Wrong@/x", "Hunter2@Wrong"),  # up to the last @
        ("postgresql://u:a/b?c#d@h/x", "a/b?c#d"),
        ("postgresql://u:PW%ZZ@/x", "PW%ZZ"),
        ("postgresql://u:ProbeSecret9@[::1", "ProbeSecret9"),
        ("host=/tmp password='Hunter2 Wrong'", "Hunter2 Wrong"),  # libpq quoting
        ("host=/tmp password='it\\'s \\\\ here'", "it's \\ here"),
        ("host=/tmp password=a\\ b", "a b"),  # a backslash-escaped space
        ("PASSWORD = ProbeSecret9", "ProbeSecret9"),
        ("host=/tmp sslpassword=ProbeSecret9", "ProbeSecret9"),
        ("postgresql://u@h/x?password=ProbeSecret9&sslmode=disable", "ProbeSecret9"),
        ("--dsn=postgresql://u:ProbeSecret9@h/x", "ProbeSecret9"),  # as argv holds it
        ("host=/tmp password='unterminated ProbeSecret9", "unterminated ProbeSecret9"),
    ],
)
def test_passwords_are_found_in_every_dsn_shape(dsn: str, meant: str) -> None:
    assert meant in passwords_in(dsn)


def test_text_without_a_dsn_has_no_passwords() -> None:
    assert passwords_in("db status") == set()
    assert passwords_in("/srv/app/db/migrations") == set()


@pytest.mark.parametrize(
    ("dsn", "reason"),
    [
        ("mysql://u:ProbeSecret9@127.0.0.1/db", "a mysql:// URL is not a PostgreSQL"),
        ("postgresql://u:ProbeSecret9@[::1", 'looking for matching "]"'),
        ("postgresql://u:ProbeSecret9%ZZ@/x", "invalid percent-encoded token"),
        ("postgresql://u:a@ProbeSecret9@/x?host=/nonexistent", "not percent-encoded"),
        ("postgresql://u:ProbeSecret9/x@h/db", "not percent-encoded"),
        ("postgresql://u:Probe Secret9@/x", "percent-encoded spaces"),
        ('postgresql://u:"ProbeSecret9@[::1', "libpq could not parse it"),
        ('host=/tmp password="Probe Secret9"', "quotes values with ' not \""),
        ("host=/tmp password=Probe Secret9", 'missing "=" after'),
        ("host=/tmp password=ProbeSecret9\udcff", "not valid UTF-8"),
        ("postgresql://u:%FFProbeSecret9@/x", "not valid UTF-8"),
        ("host=/tmp password=ProbeSecret9\x00", "NUL character"),
        ("PASSWORD = ProbeSecret9", 'invalid connection option "PASSWORD"'),
    ],
)
def test_invalid_dsns_are_refused_by_what_is_wrong_never_by_quoting(dsn: str, reason: str) -> None:
    with pytest.raises(CannotRun) as caught:
        parse_dsn(dsn)
    message = caught.value.message
    assert reason in message
    for fragment in ("ProbeSecret9", "Probe", "Secret9"):
        assert fragment not in message


def test_a_parsed_dsn_is_described_without_its_password() -> None:
    described = describe_dsn(parse_dsn("postgresql://app:ProbeSecret9@db.internal:6432/shop"))
    assert described == "postgresql://app:***@db.internal:6432/shop"
    keywords = parse_dsn("host=/run/pg password='Probe Secret9' user=me dbname=x")
    assert describe_dsn(keywords) == "postgresql://me:***@/x?host=/run/pg"
    ipv6 = parse_dsn("postgresql://u@[::1]:5433,h2:5434/d")
    assert describe_dsn(ipv6) == "postgresql://u@[::1]:5433,h2:5434/d"


def test_redact_dsn_handles_urls_and_keyword_strings() -> None:
    # Moved from tests/db/test_runner.py: keyword strings now read back as URLs.
    assert redact_dsn("postgresql://u:p%40ss@h/db") == "postgresql://u:***@h/db"
    assert redact_dsn("host=h user=u password=secret dbname=d") == "postgresql://u:***@h/d"
    assert redact_dsn("postgresql://u@h/db") == "postgresql://u@h/db"


def test_redact_dsn_never_returns_an_unparseable_dsn() -> None:
    assert redact_dsn("postgresql://u:Hunter2@Wrong@/x") == "an invalid DSN"
    assert redact_dsn("postgresql://u:Hunter2@h/x") == "postgresql://u:***@h/x"


def test_connection_failures_name_the_target_not_the_password() -> None:
    with pytest.raises(DatabaseUnreachable) as caught:
        connect("host=127.0.0.1 port=1 user=app password='ProbeSecret9 x' dbname=shop")
    message = caught.value.message
    assert message.startswith("cannot connect to postgresql://app:***@127.0.0.1:1/shop: ")
    assert "Connection refused" in message and "Probe" not in message


def test_the_disk_of_a_local_server_is_measured(server: ThrowawayPostgres) -> None:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        data_directory = conn.execute("SHOW data_directory").fetchone()
        disk = server_disk(conn)
    assert data_directory is not None and disk.directory == data_directory[0]
    assert disk.free_bytes is not None and 0 < disk.free_bytes <= shutil.disk_usage("/").total


def test_a_role_that_may_not_read_the_data_directory_gets_unknown(
    server: ThrowawayPostgres,
) -> None:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("CREATE ROLE rg_no_settings LOGIN")
        try:
            conn.execute("SET ROLE rg_no_settings")
            disk = server_disk(conn)
        finally:
            conn.execute("RESET ROLE")
            conn.execute("DROP ROLE rg_no_settings")
    assert disk.free_bytes is None and "pg_read_all_settings" in disk.reason


@pytest.mark.docker
def test_the_disk_of_a_server_in_a_container_is_unknown(docker_server: ThrowawayPostgres) -> None:
    with psycopg.connect(docker_server.dsn(), autocommit=True) as conn:
        disk = server_disk(conn)
    assert disk.free_bytes is None and "not on this machine" in disk.reason
