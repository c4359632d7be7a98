"""Connecting to PostgreSQL, and never letting a password into a message.

Two rules keep passwords out of what Rollgate prints:

* A DSN is never quoted. Messages name the target as libpq understood it,
  rebuilt from its host, port, database and user (``describe_dsn``). A DSN
  libpq cannot parse is described by what is wrong with it, and libpq's own
  parse errors, which quote the DSN, lose their quoted fragments.
* Every password-like value a DSN holds is registered with
  ``core.redaction`` (``register_dsn_secrets``), and the CLI scrubs every
  registered secret from all output. The extraction is tolerant: it reads
  passwords the way a person meant them as well as the way libpq would, so
  ``postgresql://u:pa@ss@host`` registers ``pa@ss`` and ``pa``.

A URL whose user-info part holds an unencoded ``@`` or ``/`` is refused
before libpq sees it: libpq would read part of the password as the host or
the port (and print it in its error), which is never what was meant.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from core.errors import CannotRun, DatabaseUnreachable
from core.redaction import register_secret, scrub

_URL_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")
_LIBPQ_SCHEMES = ("postgresql", "postgres")
# A conninfo keyword naming a password (password, sslpassword), then its value.
_PASSWORD_KEYWORD = re.compile(r"password\s*=\s*", re.IGNORECASE)
_QUOTED = re.compile(r'"([^"]*)"')
# Quoted tokens of libpq's parse errors that are syntax, not DSN content.
_SAFE_QUOTED = frozenset({"=", "]", ":", "/", "%20"})
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

_URL_FORMS = (
    "postgresql://user:password@host:port/dbname (with @ : / ? # and spaces "
    "percent-encoded) or 'host=... dbname=... user=...'"
)


# --- secrets in a DSN ---------------------------------------------------------


def register_dsn_secrets(text: str) -> None:
    """Register ``text`` and every password-like value in it with ``core.redaction``.

    ``text`` may be a whole DSN, a command-line argument holding one
    (``--dsn=...``, a mistyped option) or anything else; what does not look
    like a DSN registers nothing.
    """
    candidates = passwords_in(text)
    if candidates:
        register_secret(text)
    for candidate in candidates:
        register_secret(candidate)


def passwords_in(text: str) -> set[str]:
    """Every value in ``text`` that may be a password, read generously.

    URL user-info (``scheme://user:PASSWORD@``) is read both up to the first
    ``@`` or ``/`` (as libpq does) and up to the last ``@`` (as a person
    means a password holding ``@``). Keyword values (``password=...``, also
    in a URL's query string) follow libpq's quoting rules, and are also
    taken raw up to the end of the text. Over-reading is harmless: a
    registered value is only ever masked.
    """
    found: set[str] = set()
    for match in _URL_SCHEME.finditer(text):
        rest = text[match.end() :]
        libpq_end = min((i for i in (rest.find("@"), rest.find("/")) if i >= 0), default=-1)
        ends = {rest.rfind("@")}
        if libpq_end >= 0 and rest[libpq_end] == "@":
            ends.add(libpq_end)
        for end in ends - {-1}:
            user_info = rest[:end]
            if ":" in user_info:
                found.add(user_info.split(":", 1)[1])
    for match in _PASSWORD_KEYWORD.finditer(text):
        rest = text[match.end() :]
        found.add(rest)
        found.add(_libpq_value(rest))
        found.add(re.split(r"[&\s]", rest, maxsplit=1)[0])
    return {value for value in found if value}


def _libpq_value(text: str) -> str:
    """A keyword value as libpq reads it: 'quoted' or bare, backslash escapes."""
    quoted = text.startswith("'")
    chars, i = [], 1 if quoted else 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            chars.append(text[i + 1])
            i += 2
            continue
        if (quoted and char == "'") or (not quoted and char.isspace()):
            break
        chars.append(char)
        i += 1
    return "".join(chars)


# --- parsing and describing ---------------------------------------------------


def parse_dsn(dsn: str) -> dict[str, str]:
    """libpq's reading of ``dsn``, or ``CannotRun`` saying what is wrong, never quoting it."""
    register_dsn_secrets(dsn)
    if "\x00" in dsn:
        raise CannotRun(f"invalid DSN: it contains a NUL character; expected {_URL_FORMS}")
    try:
        dsn.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CannotRun(
            f"invalid DSN: character {exc.start + 1} is a byte that is not valid UTF-8 "
            "(check the shell quoting, or the encoding of $DATABASE_URL)"
        ) from None
    scheme = _URL_SCHEME.match(dsn.lstrip())
    if scheme is not None:
        _refuse_unusable_url(dsn.lstrip(), scheme)
    try:
        return conninfo_to_dict(dsn)  # type: ignore[return-value]
    except psycopg.ProgrammingError as exc:
        reason = _libpq_reason(str(exc), dsn)
        raise CannotRun(f"invalid DSN: {reason}; expected {_URL_FORMS}") from None
    except UnicodeDecodeError:
        raise CannotRun(
            "invalid DSN: a percent-encoded value in it is not valid UTF-8 text"
        ) from None


def _refuse_unusable_url(url: str, scheme: re.Match[str]) -> None:
    name = scheme["scheme"]
    if name not in _LIBPQ_SCHEMES:
        shown = name if len(name) <= 20 else name[:20] + "..."
        raise CannotRun(
            f"invalid DSN: a {shown}:// URL is not a PostgreSQL connection string; "
            f"expected {_URL_FORMS}"
        )
    # libpq ends the user-info at the first '@' or '/', then reads host,
    # port and database up to the query string. An '@' there means the
    # user-info held an unencoded '@' or '/': libpq would take part of the
    # password for the host, port or database name.
    rest = url[scheme.end() :]
    ends = [i for i in (rest.find("@"), rest.find("/")) if i >= 0]
    after_user_info = rest[min(ends) + 1 :] if ends and rest[min(ends)] == "@" else rest
    if "@" in after_user_info.split("?", 1)[0]:
        raise CannotRun(
            "invalid DSN: its user:password part holds an '@' or '/' that is not "
            "percent-encoded, so the host would be read from the password. Write @ as "
            "%40 and / as %2F in the user name and password (and @ as %40 in a "
            "database name)"
        )


def _libpq_reason(message: str, dsn: str) -> str:
    """libpq's parse error on one line, without the DSN fragments it quotes."""
    text = " ".join(message.split())
    if '"' in dsn:
        # The DSN's own double quotes would unbalance libpq's, so nothing
        # libpq quoted can be told apart from its own words.
        return (
            "libpq could not parse it (its message would quote the DSN, so it is left out; "
            "note that a connection string quotes values with ' not \")"
        )

    def keep_syntax(match: re.Match[str]) -> str:
        token = match[1]
        return match[0] if token in _SAFE_QUOTED or token.lower() in _keywords() else '"..."'

    return scrub(_QUOTED.sub(keep_syntax, text))


@cache
def _keywords() -> frozenset[str]:
    return frozenset(option.keyword.decode() for option in psycopg.pq.Conninfo.get_defaults())


# libpq (and psycopg, for the timeout) read these from the environment on every
# connection, including those to the throwaway servers Rollgate starts itself.
_LIBPQ_CHOICES = {
    "PGSSLMODE": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "PGTARGETSESSIONATTRS": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
    "PGGSSENCMODE": ("disable", "prefer", "require"),
    "PGCHANNELBINDING": ("disable", "prefer", "require"),
    "PGLOADBALANCEHOSTS": ("disable", "random"),
    "PGSSLNEGOTIATION": ("postgres", "direct"),
}


def check_libpq_environment(environ: Mapping[str, str]) -> None:
    """``CannotRun`` naming a PG* variable libpq or psycopg would refuse, before any work.

    A malformed one fails every connection, but not as itself: psycopg raises a
    bare ProgrammingError for PGCONNECT_TIMEOUT (an internal error), libpq's
    refusals read like a lost connection, and a bad PGPORT stops the embedded
    server from starting.
    """
    for name, choices in _LIBPQ_CHOICES.items():
        value = environ.get(name)
        if value and value not in choices:
            _refuse_variable(name, value, f"one of {', '.join(choices)}")
    timeout = environ.get("PGCONNECT_TIMEOUT")
    if timeout and not timeout.strip().lstrip("-").isdigit():
        _refuse_variable("PGCONNECT_TIMEOUT", timeout, "a whole number of seconds")
    port = environ.get("PGPORT")
    if port and not all(
        item.strip().isdigit() and 0 < int(item) < 65536 for item in port.split(",")
    ):
        _refuse_variable("PGPORT", port, "a port number (1-65535), or a comma-separated list")


def _refuse_variable(name: str, value: str, expected: str) -> None:
    shown = value if len(value) <= 40 else value[:40] + "..."
    raise CannotRun(f"${name} is {shown!r}: expected {expected}; fix or unset it")


def describe_dsn(params: dict[str, str]) -> str:
    """A parsed DSN as a URL without its password: ``postgresql://user:***@host:port/db``."""
    user = quote(params.get("user", ""), safe="")
    secret = ":***" if params.get("password") else ""
    credentials = f"{user}{secret}@" if user or secret else ""
    hosts = params.get("host", "").split(",")
    ports = params.get("port", "").split(",")
    if len(ports) < len(hosts):
        ports += [ports[-1]] * (len(hosts) - len(ports))
    network: list[str] = []
    sockets: list[str] = []
    for host, port in zip(hosts, ports, strict=False):
        if host.startswith("/"):
            sockets.append(host)
            continue
        shown = f"[{host}]" if ":" in host else quote(host, safe=".-")
        network.append(f"{shown}:{port}" if port and host else shown)
    dbname = quote(params.get("dbname", ""), safe="")
    query = f"?host={quote(','.join(sockets), safe='/,')}" if sockets else ""
    return f"postgresql://{credentials}{','.join(network)}/{dbname}{query}"


def redact_dsn(dsn: str) -> str:
    """The DSN as a printable target without its password ("an invalid DSN" if unparseable)."""
    try:
        return describe_dsn(parse_dsn(dsn))
    except CannotRun:
        return "an invalid DSN"


def connect(dsn: str, *, application_name: str = "rollgate") -> psycopg.Connection[Any]:
    """An autocommit connection, or ``CannotRun`` naming the target, never the password."""
    target = describe_dsn(parse_dsn(dsn))
    try:
        conn = psycopg.connect(
            dsn, autocommit=True, application_name=application_name, connect_timeout=10
        )
    except psycopg.OperationalError as exc:
        # psycopg puts the cause and the hint on separate, tab-indented lines.
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DatabaseUnreachable(
            scrub(f"cannot connect to {target}: {reason}"), details={"dsn": target}
        ) from exc
    return conn


# --- advisory locks -----------------------------------------------------------


def advisory_lock_holder(conn: psycopg.Connection[Any], key: int) -> str:
    """Who holds the session-level advisory lock ``key`` in this database, for a message."""
    with conn.transaction():
        row = conn.execute(
            "SELECT a.pid, a.application_name, "
            "extract(epoch FROM now() - a.backend_start)::int "
            "FROM pg_catalog.pg_locks AS l "
            "JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
            "(SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) "
            # A bigint key is stored as its high and low 32 bits, objsubid 1.
            "AND l.classid = %s AND l.objid = %s AND l.objsubid = 1 LIMIT 1",
            (key >> 32, key & 0xFFFFFFFF),
        ).fetchone()
    if row is None:
        return "a session that has just released it"
    pid, application, seconds = row
    return f"server pid {pid}, application {application or 'unknown'!r}, connected {seconds}s ago"


# --- the server's disk --------------------------------------------------------


@dataclass(frozen=True)
class ServerDisk:
    """Free space where the server keeps the current database, when it can be known.

    PostgreSQL offers clients no SQL to read its free disk space. It is
    known only when the server runs on this machine (a Unix socket or a
    loopback address), the role may read ``data_directory`` (superuser or
    pg_read_all_settings), and that directory here is provably the server's
    own: its ``postmaster.pid`` names the same start time and port. A
    server in a container, on another host or on RDS (whose free space is
    the CloudWatch metric FreeStorageSpace) stays unknown, and ``reason``
    says why.
    """

    free_bytes: int | None
    directory: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"free_bytes": self.free_bytes, "directory": self.directory, "reason": self.reason}


_SERVER_FILES_SQL = """
SELECT
    (SELECT setting FROM pg_catalog.pg_settings WHERE name = 'data_directory'),
    pg_catalog.pg_tablespace_location(d.dattablespace),
    extract(epoch FROM pg_catalog.pg_postmaster_start_time())::bigint,
    current_setting('port')
FROM pg_catalog.pg_database AS d
WHERE d.datname = current_database()
"""


def server_disk(conn: psycopg.Connection[Any]) -> ServerDisk:
    """Free bytes on the filesystem holding the current database, if knowable here."""
    directory, reason = _database_directory_here(conn)
    if directory is None:
        return ServerDisk(None, None, reason)
    try:
        free = shutil.disk_usage(directory).free
    except OSError as exc:
        return ServerDisk(None, directory, f"cannot measure {directory} ({type(exc).__name__})")
    return ServerDisk(free, directory, reason)


def _database_directory_here(conn: psycopg.Connection[Any]) -> tuple[str | None, str]:
    """Where the server keeps the current database, as a path on this machine; or None, and why."""
    host = conn.info.host
    if not (host.startswith("/") or host in _LOOPBACK_HOSTS):
        return None, (
            "the server is not on this machine, and PostgreSQL does not report its free "
            "disk space to clients"
        )
    with conn.transaction():
        row = conn.execute(_SERVER_FILES_SQL).fetchone()
    if row is None or row[0] is None:
        return None, "the role may not read data_directory (needs pg_read_all_settings)"
    data_directory, tablespace, started, port = row
    try:
        lines = (Path(data_directory) / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None, "the server's data directory is not on this machine (a container?)"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read the server's postmaster.pid here ({type(exc).__name__})"
    # postmaster.pid: pid, data directory, start time (epoch seconds), port, ...
    same_server = (
        len(lines) > 3
        and lines[1] == data_directory
        and lines[2].strip().isdigit()
        and abs(int(lines[2]) - int(started)) <= 2
        and lines[3].strip() == port
    )
    if not same_server:
        return None, "the data directory here belongs to another server, not on this machine"
    return tablespace or data_directory, "free space of the server's data directory on this machine"
