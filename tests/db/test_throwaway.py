"""Throwaway Postgres, both backends, for real: servers, databases, client tools, cleanup.

Everything here runs real servers (the embedded wheel, or containers from
``rollgate/postgres:18``); nothing stands in for Postgres or Docker. Tests that
need Docker are marked ``docker``; the kill-and-reap tests are ``slow``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker  # type: ignore[import-untyped, unused-ignore]
import psycopg
import pytest

from core.errors import CannotRun, ToolUnavailable
from db.throwaway import (
    OWNER_ROLE,
    TARGET_POSTGRES_MAJOR,
    ThrowawayPostgres,
    create_database,
    drop_database,
    mark_as_template,
    start_throwaway,
)
from db.throwaway.docker import (
    DEFAULT_IMAGE,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_THROWAWAY,
    DockerPostgres,
    connect_docker,
)
from db.throwaway.embedded import EmbeddedPostgres, reap_abandoned
from db.throwaway.extensions import rds_extensions, uncreatable
from tests.conftest import MakeDatabase

BUILD_HINT = "bash db/throwaway/image/build.sh"


# --- helpers -----------------------------------------------------------------


def _database_names(server: ThrowawayPostgres) -> set[str]:
    with psycopg.connect(server.dsn()) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def _process_gone(pid: int, within: float = 10.0) -> bool:
    """Whether ``pid`` exits (or is a zombie nobody waited for) within ``within`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        if stat[stat.rindex(")") + 2] in "ZX":
            return True
        time.sleep(0.05)
    return False


# The owner of a throwaway server in a separate process: starts one, reports
# where it lives, then waits to be SIGKILLed (so no close(), no atexit).
_OWNER_SCRIPT = """
import sys, time
from pathlib import Path
from db.throwaway import start_throwaway

server = start_throwaway(sys.argv[1])
where = getattr(server, "datadir", None) or getattr(server, "container_name")
Path(sys.argv[2]).write_text(str(where))
time.sleep(600)
"""


def _run_owner_until_killed(backend: str, tmp_path: Path) -> str:
    """Start a server in a child process, SIGKILL the child, return the server's id."""
    report = tmp_path / f"{backend}-owner.txt"
    child = subprocess.Popen(
        [sys.executable, "-c", _OWNER_SCRIPT, backend, str(report)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not report.exists() or not report.read_text():
            if child.poll() is not None:
                pytest.fail(
                    f"owner process exited early: {child.stderr.read() if child.stderr else ''}"
                )
            if time.monotonic() > deadline:
                pytest.fail("owner process did not start its server within 120 s")
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        # Wait, so the owner is gone rather than a zombie of ours.
        child.wait()
        if child.stderr:
            child.stderr.close()
    return report.read_text()


# --- both backends -----------------------------------------------------------


def test_server_runs_the_target_major_version(each_server: ThrowawayPostgres) -> None:
    assert each_server.major_version == TARGET_POSTGRES_MAJOR == 18
    assert each_server.warnings == []
    with psycopg.connect(each_server.dsn()) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int / 10000").fetchone()
        fsync = conn.execute("SHOW fsync").fetchone()
    assert row == (18,)
    # Throwaway speed: durability off on both backends.
    assert fsync == ("off",)


def test_create_clone_and_drop_databases(
    each_server: ThrowawayPostgres, make_database_on: MakeDatabase
) -> None:
    template_dsn = make_database_on()
    template = psycopg.conninfo.conninfo_to_dict(template_dsn)["dbname"]
    assert isinstance(template, str)
    with psycopg.connect(template_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE widgets (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO widgets SELECT g, 'w' || g FROM generate_series(1, 500) g")
    mark_as_template(each_server, template)

    clone_dsn = create_database(each_server, "throwaway_clone", template=template)
    try:
        with psycopg.connect(clone_dsn) as conn:
            count = conn.execute("SELECT count(*), max(name) FROM widgets").fetchone()
        assert count == (500, "w99")
        assert "throwaway_clone" in _database_names(each_server)
    finally:
        drop_database(each_server, "throwaway_clone")
    assert "throwaway_clone" not in _database_names(each_server)
    # make_database_on drops the template afterwards, template flag and all.


def test_client_tools_can_dump_the_server(
    each_server: ThrowawayPostgres, make_database_on: MakeDatabase
) -> None:
    dsn = make_database_on()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE gadgets (id int PRIMARY KEY, label text)")
        conn.execute("INSERT INTO gadgets VALUES (1, 'sprocket')")
    bin_dir = each_server.client_bin()

    version = subprocess.run(
        [str(bin_dir / "pg_dump"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    # pg_dump refuses a newer server: the tools must be at least as new.
    assert int(version.split()[2].split(".")[0]) >= each_server.major_version

    dump = subprocess.run(
        [str(bin_dir / "pg_dump"), "--dbname", dsn, "--no-owner"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "CREATE TABLE public.gadgets" in dump
    assert "sprocket" in dump


# --- embedded ----------------------------------------------------------------


def test_target_major_mismatch_is_a_warning() -> None:
    with start_throwaway("embedded", target_major=17) as server:
        assert server.major_version == 18
        assert len(server.warnings) == 1
        assert "version 18" in server.warnings[0]
        assert "targets 17" in server.warnings[0]


def test_embedded_close_leaves_nothing() -> None:
    server = EmbeddedPostgres.start()
    datadir = server.datadir
    postmaster = int((datadir / "postmaster.pid").read_text().splitlines()[0])
    server.close()
    server.close()  # idempotent
    assert not datadir.exists()
    assert _process_gone(postmaster)


@pytest.mark.slow
def test_embedded_server_of_a_killed_owner_is_reaped_on_next_start(
    tmp_path: Path, embedded_server: ThrowawayPostgres
) -> None:
    datadir = Path(_run_owner_until_killed("embedded", tmp_path))
    postmaster = int((datadir / "postmaster.pid").read_text().splitlines()[0])
    assert datadir.is_dir(), "the killed owner's data directory should still be there"

    with start_throwaway("embedded"):
        pass

    assert not datadir.exists()
    assert _process_gone(postmaster), "the abandoned postmaster should have been stopped"
    # Servers whose owner lives (this process) are left alone.
    with psycopg.connect(embedded_server.dsn()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_embedded_reaper_never_signals_a_stranger_holding_a_stale_pid(tmp_path: Path) -> None:
    # A crashed server's postmaster.pid can name a pid that now belongs to an
    # unrelated process; the reaper must delete the directory, not the process.
    # (Its own root, so concurrent test runs reaping the real one do not race.)
    stranger = subprocess.Popen(["sleep", "60"])
    dead_owner = subprocess.Popen(["true"])
    dead_owner.wait()
    datadir = tmp_path / f"embedded-{dead_owner.pid}-0badc0de"
    datadir.mkdir()
    (datadir / "postmaster.pid").write_text(f"{stranger.pid}\n{datadir}\n")
    try:
        assert reap_abandoned(tmp_path) == [datadir]
        assert not datadir.exists()
        time.sleep(0.2)
        assert stranger.poll() is None, "the reaper signalled an unrelated process"
    finally:
        stranger.kill()
        stranger.wait()


# --- docker ------------------------------------------------------------------


@pytest.fixture
def docker_client() -> Iterator[Any]:
    # Same client, and the same clear error without a daemon, as the backend's.
    client = connect_docker()
    yield client
    client.close()


def test_unreachable_docker_daemon_is_a_clear_could_not_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Needs no daemon: that is the point.

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    with pytest.raises(ToolUnavailable) as caught:
        DockerPostgres.start()
    message = caught.value.message
    assert "cannot reach the Docker daemon" in message
    assert "unix:///nonexistent.sock" in message
    assert "dockerd" in message  # how to fix it
    assert "embedded backend" in message  # and the way around it
    assert isinstance(caught.value, CannotRun)  # exit 2: could not run


@pytest.mark.docker
def test_missing_image_tells_how_to_build_it(
    monkeypatch: pytest.MonkeyPatch, docker_client: Any
) -> None:

    before = len(docker_client.containers.list(all=True, filters={"label": LABEL_THROWAWAY}))
    with pytest.raises(CannotRun) as caught:
        DockerPostgres.start(image="rollgate/no-such-image:0")
    assert "rollgate/no-such-image:0" in caught.value.message
    assert BUILD_HINT in caught.value.message

    # The environment variable names the image too.
    monkeypatch.setenv("ROLLGATE_PG_IMAGE", "rollgate/also-missing:0")
    with pytest.raises(CannotRun, match="rollgate/also-missing:0"):
        start_throwaway("docker")
    after = len(docker_client.containers.list(all=True, filters={"label": LABEL_THROWAWAY}))
    assert after == before


@pytest.mark.docker
def test_container_not_ready_in_time_is_a_clear_could_not_run(docker_client: Any) -> None:

    before = {
        c.name for c in docker_client.containers.list(all=True, filters={"label": LABEL_THROWAWAY})
    }
    with pytest.raises(CannotRun) as caught:
        # initdb alone takes longer than this.
        DockerPostgres.start(ready_timeout=0.01)
    assert "did not answer psql within 0.01 s" in caught.value.message
    assert "PGPASSWORD" not in caught.value.message
    after = {
        c.name for c in docker_client.containers.list(all=True, filters={"label": LABEL_THROWAWAY})
    }
    assert after == before, "the container that was not ready must be removed"


@pytest.mark.docker
def test_docker_server_is_labelled_loopback_only_and_keeps_its_password(
    docker_server: ThrowawayPostgres, docker_client: Any
) -> None:

    assert isinstance(docker_server, DockerPostgres)
    container = docker_client.containers.get(docker_server.container_name)
    assert container.labels["rollgate.throwaway"] == "1"
    assert container.labels[LABEL_OWNER_PID] == str(os.getpid())
    bindings = container.attrs["HostConfig"]["PortBindings"]["5432/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    password = psycopg.conninfo.conninfo_to_dict(docker_server.dsn())["password"]
    assert isinstance(password, str) and len(password) >= 24
    assert password not in repr(docker_server)
    assert docker_server.dsn("other").startswith("postgresql://postgres:")
    assert "@127.0.0.1:" in docker_server.dsn()


@pytest.mark.docker
def test_docker_close_leaves_nothing(docker_client: Any) -> None:

    server = DockerPostgres.start()
    name = server.container_name
    assert docker_client.containers.get(name).status == "running"
    server.close()
    server.close()  # idempotent
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(name)


@pytest.mark.docker
@pytest.mark.slow
def test_docker_container_of_a_killed_owner_is_reaped_on_next_start(
    tmp_path: Path, docker_server: ThrowawayPostgres, docker_client: Any
) -> None:

    name = _run_owner_until_killed("docker", tmp_path)
    assert docker_client.containers.get(name).status == "running"

    with start_throwaway("docker"):
        pass

    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(name)
    # Containers whose owner lives (this process) are left alone.
    with psycopg.connect(docker_server.dsn()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.docker
def test_image_is_a_drop_in_for_stock_postgres_container() -> None:
    # Stock PostgresContainer, its own readiness probe and env handling; only
    # the published port is pinned to loopback and the container labelled, so
    # a killed run is reaped like any other.
    # Imported here: testcontainers reads its settings from the environment at
    # import time, and conftest sets them first only for the session.
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(
        DEFAULT_IMAGE,
        username="app",
        password="s3cret'quoted",  # the quote exercises the probe's shell escaping
        dbname="appdb",
        driver=None,
        labels={
            LABEL_THROWAWAY: "1",
            LABEL_OWNER_PID: str(os.getpid()),
            LABEL_OWNER_HOST: socket.gethostname(),
        },
    )
    container.ports = {"5432/tcp": ("127.0.0.1",)}  # type: ignore[dict-item]
    with container:
        with psycopg.connect(container.get_connection_url()) as conn:
            row = conn.execute("SELECT current_user, current_database()").fetchone()
        assert row == ("app", "appdb")


# --- RDS-like owner role, logical WAL, extensions -------------------------------


def test_owner_dsn_is_an_rds_like_role_that_owns_its_database(
    each_server: ThrowawayPostgres,
) -> None:
    name = f"owned_{os.getpid()}"
    dsn = create_database(each_server, name, owner=True)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT current_user, r.rolsuper, r.rolcreatedb, r.rolcreaterole, "
                "r.rolreplication, r.rolbypassrls, pg_get_userbyid(d.datdba), "
                "has_schema_privilege('public', 'CREATE') "
                "FROM pg_roles r, pg_database d "
                "WHERE r.rolname = current_user AND d.datname = current_database()"
            ).fetchone()
            assert row == (OWNER_ROLE, False, True, True, False, False, OWNER_ROLE, True)
            # What RDS refuses its master user is refused here too.
            refused = {
                "COPY (SELECT 1) TO PROGRAM 'true'": "external program",
                "CREATE ROLE rollgate_escalated SUPERUSER": "SUPERUSER attribute",
                # C is an untrusted language: only a superuser may use it.
                "CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'libc', 'getpid'": "language c",
            }
            for statement, words in refused.items():
                with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
                    conn.execute(statement)
                assert words in str(caught.value)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("ALTER SYSTEM SET work_mem = '1MB'")
            # and ordinary DDL works, as the database's owner
            conn.execute("CREATE SCHEMA app; CREATE TABLE app.t (id int); CREATE ROLE app_reader")
            conn.execute("DROP ROLE app_reader")
        # the superuser DSN stays for administration
        with psycopg.connect(each_server.dsn(name)) as conn:
            assert conn.execute(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone() == (True,)
    finally:
        drop_database(each_server, name)


def test_throwaway_servers_run_with_logical_wal(each_server: ThrowawayPostgres) -> None:
    with psycopg.connect(each_server.dsn()) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                (["wal_level", "max_replication_slots", "max_wal_senders"],),
            ).fetchall()
        )
    assert settings["wal_level"] == "logical"
    assert int(settings["max_replication_slots"]) > 0 and int(settings["max_wal_senders"]) > 0


def _creatable_extensions(server: ThrowawayPostgres) -> set[str]:
    with psycopg.connect(server.dsn()) as conn:
        return {
            row[0]
            for row in conn.execute(
                "SELECT name FROM pg_available_extension_versions WHERE trusted"
            )
        }


@pytest.mark.docker
def test_docker_image_offers_the_rds_extensions_to_the_owner_role(
    docker_server: ThrowawayPostgres,
) -> None:
    creatable = _creatable_extensions(docker_server)
    for name in ("pgcrypto", "uuid-ossp", "citext", "hstore", "vector", "postgis", "pgaudit"):
        assert name in creatable, f"{name} missing or untrusted in {DEFAULT_IMAGE}"
    # Every RDS extension the image ships is trusted; nothing off the list is.
    with psycopg.connect(docker_server.dsn()) as conn:
        available = {row[0] for row in conn.execute("SELECT name FROM pg_available_extensions")}
    assert (available & rds_extensions()) - {"plpgsql"} <= creatable
    assert "file_fdw" in available and "file_fdw" not in creatable
    name = f"ext_{os.getpid()}"
    dsn = create_database(docker_server, name, owner=True)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute('CREATE EXTENSION pgcrypto; CREATE EXTENSION "uuid-ossp"')
            conn.execute("CREATE EXTENSION vector; CREATE EXTENSION postgis")
            assert conn.execute("SELECT length(gen_random_bytes(4))").fetchone() == (4,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE EXTENSION file_fdw")
    finally:
        drop_database(docker_server, name)


def test_embedded_lacks_pgcrypto_so_extension_handling_is_needed(
    embedded_server: ThrowawayPostgres,
) -> None:
    # The premise of db.throwaway.extensions: if the wheel ever ships these,
    # the handover to docker is dead code and this test says so.
    assert uncreatable(embedded_server, ["pgcrypto", "uuid-ossp", "dblink", "citext"]) == [
        "dblink",
        "pgcrypto",
        "uuid-ossp",
    ]
