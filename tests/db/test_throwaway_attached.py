"""``db.throwaway.attached``: a server handed to another process works there, and stays up."""

from __future__ import annotations

import json

import psycopg
import pytest

from core.errors import CannotRun
from db.throwaway import ThrowawayPostgres, create_database, drop_database
from db.throwaway.attached import attach, handoff


def test_an_attached_server_creates_owner_databases_and_is_not_stopped_by_close(
    server: ThrowawayPostgres,
) -> None:
    attached = attach(handoff(server))
    assert (attached.backend, attached.major_version) == (server.backend, server.major_version)
    assert attached.client_bin() == server.client_bin()
    dsn = create_database(attached, "attached_probe", owner=True)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int)")
            owner = conn.execute(
                "SELECT tableowner FROM pg_tables WHERE tablename = 't'"
            ).fetchone()
        assert owner == ("rollgate_owner",)
        attached.close()
        # The owner still owns the server: it keeps answering after the attached side closed.
        with psycopg.connect(server.dsn("attached_probe")) as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    finally:
        drop_database(server, "attached_probe")


@pytest.mark.parametrize(
    "described",
    ["", "not json", "[]", json.dumps({"backend": "embedded"}), '{"major_version": "x"}'],
)
def test_a_bad_handoff_is_refused_without_echoing_it(described: str) -> None:
    with pytest.raises(CannotRun, match="does not describe a throwaway server") as caught:
        attach(described)
    assert described not in str(caught.value) or not described


def test_the_handoff_is_never_on_the_command_line() -> None:
    from pathlib import Path

    from smoke.run import SmokeOptions, pytest_args

    secret = json.dumps({"superuser_dsn": "postgresql://u:hunter2-secret@127.0.0.1/x"})
    options = SmokeOptions(
        migrations=Path("m"),
        schema=Path("s.sql"),
        output_dir=Path("out"),
        database="gate_copy",
        server_handoff=secret,
    )
    args = pytest_args(options)
    assert "--smoke-database=gate_copy" in args
    assert not any("hunter2" in a for a in args)
    assert "hunter2" not in repr(options)
