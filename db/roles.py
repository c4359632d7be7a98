"""The per-service database roles, and the idempotent bootstrap that makes them.

Three kinds of role, so that no internet-facing task holds more than DML:

* **the owner** (migrator): whoever runs ``rollgate db migrate``, the RDS master
  in production (only the migrate task has its secret). It owns every schema
  object, and the bootstrap runs as it;
* **two group roles**, ``rollgate_writer`` and ``rollgate_reader``, NOLOGIN.
  Migration 0005 grants them DML (writer) and SELECT (reader) on public, and
  sets the owner's default privileges so that every table, view and sequence a
  later migration creates is covered without another grant. Their names are
  fixed, because a migration must name its grantees;
* **the LOGIN roles** web/worker and the audit connect as. Their names and
  passwords come from the stack's secrets (so they can differ per stack and be
  rotated), and they hold no grant of their own: the bootstrap makes the app
  role a member of ``rollgate_writer`` and the audit role a member of
  ``rollgate_reader``, and nothing else.

``bootstrap_roles`` runs before ``migrate`` (first deploy included), so it also
creates the group roles if absent, and makes Rollgate's history readable by
both groups: it creates the ``rollgate`` schema if needed and sets the owner's
default privileges there, so the history table the runner creates next is
covered (the app's readiness reads it; migrations may not touch that schema).

Passwords never travel as cleartext in SQL: the client computes the SCRAM
verifier (libpq's ``PQencryptPasswordConn``, what psql's ``\\password`` does),
so a statement log holds only the verifier. They are registered with
``core.redaction`` and no message quotes them. A role's password is changed
only when logging in with it fails, so a second run changes nothing and says
so (on a server that lets the role in without a password, that cannot be told,
and the password is set again).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from core.errors import CannotRun, CheckFailed
from core.postgres import connect
from core.progress import Progress, silent
from core.redaction import register_secret
from db.history import HISTORY_SCHEMA

WRITER_GROUP = "rollgate_writer"
READER_GROUP = "rollgate_reader"
GROUP_ROLES = (WRITER_GROUP, READER_GROUP)
#: Postgres truncates longer names; a truncated name would not be the one in the secret.
MAX_ROLE_NAME_BYTES = 63
MIN_PASSWORD_LENGTH = 12
_LOGIN_ATTRIBUTES = ("rolcanlogin", "rolinherit")
_FORBIDDEN_ATTRIBUTES = (
    "rolsuper",
    "rolcreaterole",
    "rolcreatedb",
    "rolreplication",
    "rolbypassrls",
)


@dataclass(frozen=True)
class ServiceRole:
    """A LOGIN role to create or re-password, and the group it joins."""

    purpose: str  # "app" or "audit"
    name: str
    password: str = field(repr=False)
    group: str
    user_variable: str
    password_variable: str


@dataclass(frozen=True)
class RoleOutcome:
    """What the bootstrap did to one role (empty ``changes``: nothing)."""

    purpose: str
    name: str
    group: str
    changes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "purpose": self.purpose,
            "name": self.name,
            "group": self.group,
            "changes": list(self.changes),
        }


@dataclass(frozen=True)
class BootstrapReport:
    """The bootstrap's result: per role, and for the shared pieces."""

    owner: str
    database: str
    roles: tuple[RoleOutcome, ...]
    shared_changes: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.shared_changes) or any(r.changes for r in self.roles)

    def to_dict(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "database": self.database,
            "changed": self.changed,
            "shared_changes": list(self.shared_changes),
            "roles": [r.to_dict() for r in self.roles],
        }


def roles_from_environment(
    environ: Mapping[str, str],
    *,
    app_user_variable: str,
    app_password_variable: str,
    audit_user_variable: str,
    audit_password_variable: str,
) -> tuple[ServiceRole, ServiceRole]:
    """The app and audit roles from ``environ``; ``CannotRun`` names a bad variable.

    Passwords are registered as secrets before anything else can print them.
    """
    for variable in (app_password_variable, audit_password_variable):
        register_secret(environ.get(variable, ""))
    roles = (
        _role_from(environ, "app", WRITER_GROUP, app_user_variable, app_password_variable),
        _role_from(environ, "audit", READER_GROUP, audit_user_variable, audit_password_variable),
    )
    if roles[0].name == roles[1].name:
        raise CannotRun(
            f"{app_user_variable} and {audit_user_variable} name the same role "
            f"{roles[0].name!r}: the app and the audit need separate roles"
        )
    return roles


def _role_from(
    environ: Mapping[str, str], purpose: str, group: str, user_var: str, password_var: str
) -> ServiceRole:
    name = environ.get(user_var, "")
    password = environ.get(password_var, "")
    if not name.strip():
        raise CannotRun(f"{user_var} is not set: the {purpose} role's name (from its secret)")
    if name != name.strip() or "\x00" in name:
        raise CannotRun(f"{user_var} must be a role name without surrounding spaces or NUL")
    if len(name.encode()) > MAX_ROLE_NAME_BYTES:
        raise CannotRun(f"{user_var} is longer than {MAX_ROLE_NAME_BYTES} bytes")
    if name.startswith("pg_") or name in GROUP_ROLES:
        raise CannotRun(
            f"{user_var} names {name!r}, a name reserved for Postgres (pg_*) or for "
            f"Rollgate's group roles ({', '.join(GROUP_ROLES)}); choose another"
        )
    if not password:
        raise CannotRun(f"{password_var} is not set: the {purpose} role's password (its secret)")
    if "\x00" in password:
        raise CannotRun(f"{password_var} contains a NUL character, which libpq cannot send")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise CannotRun(
            f"{password_var} is shorter than {MIN_PASSWORD_LENGTH} characters; "
            "use the generated secret"
        )
    return ServiceRole(purpose, name, password, group, user_var, password_var)


def bootstrap_roles(
    dsn: str, roles: tuple[ServiceRole, ...], *, progress: Progress = silent
) -> BootstrapReport:
    """Create or update the group and LOGIN roles as the owner at ``dsn``; idempotent."""
    with connect(dsn, application_name="rollgate-bootstrap-roles") as conn:
        owner, database = conn.execute("SELECT current_user, current_database()").fetchone() or (
            "",
            "",
        )
        for role in roles:
            if role.name == owner:
                raise CannotRun(
                    f"{role.user_variable} names {owner!r}, the role this bootstrap connects "
                    "as (the owner); the service roles must be separate from it"
                )
        shared = [*_ensure_groups(conn), *_grant_history(conn, owner)]
        outcomes = []
        for role in roles:
            outcome = _ensure_login_role(conn, dsn, role, owner)
            outcomes.append(outcome)
            done = ", ".join(outcome.changes) or "unchanged"
            progress(f"role {role.name} ({role.purpose}, member of {role.group}): {done}")
    return BootstrapReport(str(owner), str(database), tuple(outcomes), tuple(shared))


def _ensure_groups(conn: psycopg.Connection[Any]) -> list[str]:
    changes = []
    for group in GROUP_ROLES:
        if _role_row(conn, group) is None:
            try:
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
            except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                continue  # created concurrently (another database's bootstrap): as wanted
            changes.append(f"created group role {group}")
    return changes


def _grant_history(conn: psycopg.Connection[Any], owner: str) -> list[str]:
    """Both groups may read Rollgate's history, now and once the runner creates it."""
    changes = []
    schema = sql.Identifier(HISTORY_SCHEMA)
    groups = sql.SQL(", ").join(sql.Identifier(g) for g in GROUP_ROLES)
    exists = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (HISTORY_SCHEMA,)
    ).fetchone()
    if exists is None:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        changes.append(f"created schema {HISTORY_SCHEMA}")
    lacking_usage = [
        g
        for g in GROUP_ROLES
        if not _scalar(conn, "SELECT has_schema_privilege(%s, %s, 'USAGE')", (g, HISTORY_SCHEMA))
    ]
    if lacking_usage:
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, groups))
        changes.append(f"granted USAGE on schema {HISTORY_SCHEMA}")
    unreadable = _scalar(
        conn,
        "SELECT count(*) FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "CROSS JOIN unnest(%s::text[]) AS g(name) "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') "
        "AND NOT has_table_privilege(g.name, c.oid, 'SELECT')",
        (list(GROUP_ROLES), HISTORY_SCHEMA),
    )
    if unreadable:
        conn.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema, groups)
        )
        changes.append(f"granted SELECT on the tables in {HISTORY_SCHEMA}")
    defaults = {
        str(name)
        for (name,) in conn.execute(
            "SELECT a.grantee::regrole::text FROM pg_catalog.pg_default_acl d "
            "CROSS JOIN LATERAL pg_catalog.aclexplode(d.defaclacl) AS a "
            "WHERE d.defaclrole = %s::regrole AND d.defaclnamespace = %s::regnamespace "
            "AND d.defaclobjtype = 'r' AND a.privilege_type = 'SELECT'",
            (owner, HISTORY_SCHEMA),
        ).fetchall()
    }
    if not set(GROUP_ROLES) <= defaults:
        conn.execute(
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
                schema, groups
            )
        )
        changes.append(f"default SELECT for both groups on new tables in {HISTORY_SCHEMA}")
    return changes


def _ensure_login_role(
    conn: psycopg.Connection[Any], dsn: str, role: ServiceRole, owner: str
) -> RoleOutcome:
    changes: list[str] = []
    ident = sql.Identifier(role.name)
    row = _role_row(conn, role.name)
    if row is None:
        conn.execute(
            sql.SQL(
                "CREATE ROLE {} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE "
                "NOREPLICATION NOBYPASSRLS PASSWORD {}"
            ).format(ident, sql.Literal(_verifier(conn, role)))
        )
        changes.append("created")
    else:
        if row["rolsuper"]:
            raise CheckFailed(
                f"role {role.name} ({role.user_variable}) is a superuser; a service role must "
                "not be. Use another name, or have a superuser run ALTER ROLE ... NOSUPERUSER"
            )
        wrong = [a for a in _FORBIDDEN_ATTRIBUTES if row[a]] + [
            a for a in _LOGIN_ATTRIBUTES if not row[a]
        ]
        if wrong:
            conn.execute(
                sql.SQL(
                    "ALTER ROLE {} LOGIN INHERIT NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
                ).format(ident)
            )
            changes.append(
                "attributes reset (" + ", ".join(a.removeprefix("rol") for a in wrong) + ")"
            )
        if not _password_works(dsn, role):
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    ident, sql.Literal(_verifier(conn, role))
                )
            )
            changes.append("password set")
    other_groups = [g for g in GROUP_ROLES if g != role.group]
    member_of = {
        str(name)
        for (name,) in conn.execute(
            "SELECT m.roleid::regrole::text FROM pg_catalog.pg_auth_members m "
            "WHERE m.member = %s::regrole",
            (role.name,),
        ).fetchall()
    }
    if owner in member_of:
        raise CheckFailed(
            f"role {role.name} ({role.user_variable}) is a member of the owner {owner}, so it "
            f"could change the schema; REVOKE {owner} FROM {role.name}"
        )
    for group in other_groups:
        if group in member_of:
            conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), ident))
            changes.append(f"left {group}")
    if role.group not in member_of:
        try:
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role.group), ident))
        except psycopg.errors.InsufficientPrivilege as exc:
            # PostgreSQL 16+: granting a role needs ADMIN OPTION on it, which its creator has.
            raise CannotRun(
                f"{owner} may not grant {role.group} (it was created by another role): have "
                f"its creator run GRANT {role.group} TO {owner} WITH ADMIN OPTION, then run again"
            ) from exc
        changes.append(f"joined {role.group}")
    return RoleOutcome(role.purpose, role.name, role.group, tuple(changes))


def _verifier(conn: psycopg.Connection[Any], role: ServiceRole) -> str:
    """The server's own password hash, computed here: no cleartext reaches SQL or logs."""
    encrypted: bytes = conn.pgconn.encrypt_password(role.password.encode(), role.name.encode())
    return encrypted.decode()


def _password_works(dsn: str, role: ServiceRole) -> bool:
    """Does logging in as ``role`` with its password succeed, the password being asked for?"""
    try:
        with psycopg.connect(
            dsn, user=role.name, password=role.password, connect_timeout=10, autocommit=True
        ) as conn:
            return bool(conn.pgconn.used_password)
    except psycopg.OperationalError:
        return False


def _role_row(conn: psycopg.Connection[Any], name: str) -> dict[str, Any] | None:
    columns = ("rolname", *_FORBIDDEN_ATTRIBUTES, *_LOGIN_ATTRIBUTES)
    row = conn.execute(
        sql.SQL("SELECT {} FROM pg_catalog.pg_roles WHERE rolname = %s").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        ),
        (name,),
    ).fetchone()
    return dict(zip(columns, row, strict=True)) if row is not None else None


def _scalar(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> Any:
    row = conn.execute(query.encode(), params).fetchone()
    return row[0] if row is not None else None
