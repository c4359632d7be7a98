"""The per-service roles on real Postgres: bootstrap (as the RDS-like owner) + migrate.

What the app role may do is tried, not read from the catalog: each statement runs
as that role and must succeed or be refused with a privilege error. The embedded
server trusts local connections, so password behaviour (idempotence, odd
characters, re-passwording) is tested on the docker backend, which asks for them.
"""

from __future__ import annotations

import itertools
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from app import schema as app_schema
from core.errors import CannotRun
from db.migrations import BUNDLED_MIGRATIONS, load_migrations
from db.roles import (
    GROUP_ROLES,
    READER_GROUP,
    WRITER_GROUP,
    ServiceRole,
    bootstrap_roles,
    roles_from_environment,
)
from db.runner import MigrationRunner
from db.throwaway import OWNER_ROLE, ThrowawayPostgres, create_database, drop_database

APP_TABLES = ("customers", "orders", "execution_tasks", "task_outbox", "payment_events")
VIEWS = ("roi_daily", "roi_customer_daily")
VARIABLES = {
    "app_user_variable": "ROLLGATE_DB_APP_USER",
    "app_password_variable": "ROLLGATE_DB_APP_PASSWORD",
    "audit_user_variable": "ROLLGATE_DB_AUDIT_USER",
    "audit_password_variable": "ROLLGATE_DB_AUDIT_PASSWORD",
}
_names = itertools.count()


@dataclass
class Bootstrapped:
    server: ThrowawayPostgres
    owner_dsn: str
    app: ServiceRole
    audit: ServiceRole

    def as_role(self, role: ServiceRole, password: str | None = None) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self.owner_dsn,
            user=role.name,
            password=role.password if password is None else password,
            autocommit=True,
        )


def environment(app: str, app_password: str, audit: str, audit_password: str) -> dict[str, str]:
    return {
        "ROLLGATE_DB_APP_USER": app,
        "ROLLGATE_DB_APP_PASSWORD": app_password,
        "ROLLGATE_DB_AUDIT_USER": audit,
        "ROLLGATE_DB_AUDIT_PASSWORD": audit_password,
    }


def service_roles(app_password: str, audit_password: str) -> tuple[ServiceRole, ServiceRole]:
    suffix = f"{next(_names)}_{secrets.token_hex(3)}"
    return roles_from_environment(
        environment(f"svc_app_{suffix}", app_password, f"svc_audit_{suffix}", audit_password),
        **VARIABLES,
    )


def owner_may_grant_the_groups(server: ThrowawayPostgres) -> None:
    """Other tests in the session may have created the groups as the superuser.

    On RDS the master creates them (and so may grant them); give the owner the
    ADMIN OPTION its creator would have had.
    """
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        for group in GROUP_ROLES:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (group,)).fetchone():
                conn.execute(
                    sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(
                        sql.Identifier(group), sql.Identifier(OWNER_ROLE)
                    )
                )


def drop_roles(server: ThrowawayPostgres, *roles: ServiceRole) -> None:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        for role in roles:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role.name)))


MakeBootstrapped = Callable[..., Bootstrapped]


@pytest.fixture
def make_bootstrapped(tmp_path: Path) -> Iterator[MakeBootstrapped]:
    """Factory: an owner-owned database on ``server``, bootstrapped, then migrated."""
    made: list[Bootstrapped] = []
    databases: list[tuple[ThrowawayPostgres, str]] = []

    def make(
        server: ThrowawayPostgres,
        app_password: str = "app-password-0123456789",  # noqa: S107 (a test fixture)
        audit_password: str = "audit-password-0123456789",  # noqa: S107 (a test fixture)
        migrations: Path = BUNDLED_MIGRATIONS,
    ) -> Bootstrapped:
        owner_may_grant_the_groups(server)
        name = f"roles{next(_names)}_{secrets.token_hex(3)}"
        dsn = create_database(server, name, owner=True)
        databases.append((server, name))
        app, audit = service_roles(app_password, audit_password)
        result = Bootstrapped(server, dsn, app, audit)
        made.append(result)
        bootstrap_roles(dsn, (app, audit))
        with MigrationRunner(dsn, load_migrations(migrations)) as runner:
            runner.migrate()
        return result

    yield make
    for server, name in databases:
        drop_database(server, name)
    for result in made:
        drop_roles(result.server, result.app, result.audit)


@pytest.fixture
def bootstrapped(make_bootstrapped: MakeBootstrapped, server: ThrowawayPostgres) -> Bootstrapped:
    return make_bootstrapped(server)


def refused(conn: psycopg.Connection[Any], statement: str) -> bool:
    try:
        conn.execute(statement.encode())
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


# --- the app role --------------------------------------------------------------------


def test_the_app_role_reads_and_writes_every_app_table(bootstrapped: Bootstrapped) -> None:
    with bootstrapped.as_role(bootstrapped.app) as conn:
        [(customer,)] = conn.execute(
            "INSERT INTO customers (name, email) VALUES ('Ada', 'ada@example.com') RETURNING id"
        ).fetchall()
        conn.execute(
            "INSERT INTO orders (customer_id, order_details) VALUES (%s, '{}')", (customer,)
        )
        [(task,)] = conn.execute(
            "INSERT INTO execution_tasks (payload) VALUES ('{}') RETURNING id"
        ).fetchall()
        conn.execute("INSERT INTO task_outbox (task_id) VALUES (%s)", (task,))
        conn.execute(
            "INSERT INTO payment_events (stripe_event_id, event_type, amount_minor, currency, "
            "customer_id) VALUES ('evt_1', 'charge.succeeded', 100, 'usd', %s)",
            (customer,),
        )
        updates = {
            "customers": "name = 'Ada L.'",  # the updated_at triggers run as the app role too
            "orders": "order_details = '{\"n\": 1}'",
            "execution_tasks": "status = 'running', started_at = now()",
            "task_outbox": "sent_at = now()",
            "payment_events": "amount_minor = 100",
        }
        for table in APP_TABLES:
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,), table
            conn.execute(f"UPDATE {table} SET {updates[table]}")
        for view in VIEWS:
            conn.execute(f"SELECT * FROM {view}").fetchall()
        assert conn.execute("SELECT net_minor FROM roi_daily").fetchall() == [(100,)]
        for table in ("task_outbox", "orders", "payment_events", "execution_tasks", "customers"):
            conn.execute(f"DELETE FROM {table}")
        # Every table and view in public, not only the ones named above.
        missing = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v') AND NOT ("
            "has_table_privilege(c.oid, 'SELECT') AND (c.relkind = 'v' OR "
            "has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE')))"
        ).fetchall()
        assert missing == []


def test_the_app_role_changes_no_schema(bootstrapped: Bootstrapped) -> None:
    with bootstrapped.as_role(bootstrapped.app) as conn:
        assert refused(conn, "CREATE TABLE public.intruder (id int)")
        assert refused(conn, "CREATE SCHEMA intruder")
        assert refused(conn, "DROP TABLE public.customers")
        assert refused(conn, "TRUNCATE public.payment_events")
        assert refused(conn, "ALTER TABLE public.customers ADD COLUMN x int")
        assert refused(conn, "CREATE INDEX ON public.customers (name)")
        assert refused(conn, "DROP VIEW public.roi_daily")
        assert refused(conn, "INSERT INTO rollgate.schema_migrations (version) VALUES (99)")
        assert refused(conn, "DELETE FROM rollgate.schema_migrations")


def test_the_app_role_passes_readiness(bootstrapped: Bootstrapped) -> None:
    """Readiness reads rollgate.schema_migrations, created by migrate after the bootstrap."""
    with bootstrapped.as_role(bootstrapped.app) as conn:
        state = app_schema.check_schema(conn)
    assert state.ok, state.message
    assert state.version == 5


def test_a_table_from_a_later_migration_is_covered(
    make_bootstrapped: MakeBootstrapped, server: ThrowawayPostgres, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(BUNDLED_MIGRATIONS, migrations)
    for kind, text in (
        ("up", "CREATE TABLE public.widgets (id bigint GENERATED ALWAYS AS IDENTITY, "
               "serial_no bigserial, name text NOT NULL, "
               "CONSTRAINT widgets_pkey PRIMARY KEY (id));"),
        ("down", "DROP TABLE public.widgets;"),
        ("verify", "SELECT id, serial_no, name FROM public.widgets WHERE false;"),
    ):  # fmt: skip
        (migrations / f"0006_create_widgets.{kind}.sql").write_text(text + "\n")
    result = make_bootstrapped(server, migrations=migrations)
    with result.as_role(result.app) as conn:
        conn.execute("INSERT INTO widgets (name) VALUES ('w')")  # identity and bigserial
        conn.execute("UPDATE widgets SET name = 'v'")
        assert conn.execute("SELECT name FROM widgets").fetchall() == [("v",)]
        assert refused(conn, "TRUNCATE widgets")
        assert refused(conn, "ALTER TABLE widgets ADD COLUMN x int")
        conn.execute("DELETE FROM widgets")
    with result.as_role(result.audit) as conn:
        assert conn.execute("SELECT count(*) FROM widgets").fetchone() == (0,)
        assert refused(conn, "INSERT INTO widgets (name) VALUES ('w')")


# --- the audit role ------------------------------------------------------------------


def test_the_audit_role_reads_everything_and_writes_nothing(bootstrapped: Bootstrapped) -> None:
    with bootstrapped.as_role(bootstrapped.audit) as conn:
        for relation in (*APP_TABLES, *VIEWS, "rollgate.schema_migrations"):
            conn.execute(f"SELECT * FROM {relation}").fetchall()
        assert conn.execute("SELECT max(version) FROM rollgate.schema_migrations").fetchone() == (
            5,
        )
        assert refused(conn, "INSERT INTO customers (name, email) VALUES ('a', 'a@b.cd')")
        assert refused(conn, "UPDATE execution_tasks SET attempts = 0")
        assert refused(conn, "DELETE FROM payment_events")
        assert refused(conn, "TRUNCATE orders")
        assert refused(conn, "CREATE TABLE public.intruder (id int)")
        assert refused(conn, "SELECT nextval('customers_id_seq')")


def test_the_login_roles_hold_only_their_group(bootstrapped: Bootstrapped) -> None:
    with psycopg.connect(bootstrapped.owner_dsn, autocommit=True) as conn:
        for role, group in ((bootstrapped.app, WRITER_GROUP), (bootstrapped.audit, READER_GROUP)):
            memberships = conn.execute(
                "SELECT roleid::regrole::text FROM pg_auth_members WHERE member = %s::regrole",
                (role.name,),
            ).fetchall()
            assert memberships == [(group,)]
            attributes = conn.execute(
                "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls "
                "FROM pg_roles WHERE rolname = %s",
                (role.name,),
            ).fetchone()
            assert attributes == (True, False, False, False, False)


def test_the_revert_of_0005_takes_the_grants_back(bootstrapped: Bootstrapped) -> None:
    with MigrationRunner(bootstrapped.owner_dsn, load_migrations(BUNDLED_MIGRATIONS)) as runner:
        runner.revert(4)
        with bootstrapped.as_role(bootstrapped.app) as conn:
            assert refused(conn, "SELECT * FROM customers")
        runner.migrate()
    with bootstrapped.as_role(bootstrapped.app) as conn:
        conn.execute("SELECT * FROM customers")


# --- passwords and idempotence (a server that asks for passwords) ---------------------


@pytest.mark.docker
def test_a_second_run_changes_nothing(
    make_bootstrapped: MakeBootstrapped, docker_server: ThrowawayPostgres
) -> None:
    result = make_bootstrapped(docker_server)
    again = bootstrap_roles(result.owner_dsn, (result.app, result.audit))
    assert not again.changed, again.to_dict()
    assert [r.changes for r in again.roles] == [(), ()]


@pytest.mark.docker
@pytest.mark.parametrize(
    "password",
    [
        "it's a 'quoted' pass",
        'back\\slash \\\\ and "double"',
        "ünïcødé-пароль-密码-🔑",
        "$$ dollar $quote$ ; DROP ROLE x; --",
    ],
)
def test_passwords_with_awkward_characters_log_in(
    make_bootstrapped: MakeBootstrapped, docker_server: ThrowawayPostgres, password: str
) -> None:
    result = make_bootstrapped(docker_server, app_password=password)
    with result.as_role(result.app) as conn:
        assert conn.pgconn.used_password
        assert conn.execute("SELECT current_user").fetchone() == (result.app.name,)
    with pytest.raises(psycopg.OperationalError):
        result.as_role(result.app, password=password + "x").close()


@pytest.mark.docker
def test_a_rotated_secret_re_passwords_the_role(
    make_bootstrapped: MakeBootstrapped, docker_server: ThrowawayPostgres
) -> None:
    result = make_bootstrapped(docker_server)
    rotated = ServiceRole(
        "app",
        result.app.name,
        "rotated-password-9876543210",
        WRITER_GROUP,
        "ROLLGATE_DB_APP_USER",
        "ROLLGATE_DB_APP_PASSWORD",
    )
    report = bootstrap_roles(result.owner_dsn, (rotated, result.audit))
    assert [r.changes for r in report.roles] == [("password set",), ()]
    with pytest.raises(psycopg.OperationalError):
        result.as_role(result.app).close()
    with result.as_role(rotated) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.docker
def test_the_password_never_reaches_the_server_as_cleartext(
    make_bootstrapped: MakeBootstrapped, docker_server: ThrowawayPostgres
) -> None:
    """What the server stores (and what a statement log could hold) is a SCRAM verifier."""
    result = make_bootstrapped(docker_server, app_password="cleartext-canary-123456")
    with psycopg.connect(docker_server.dsn(), autocommit=True) as conn:
        stored = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (result.app.name,)
        ).fetchone()
    assert stored is not None and stored[0].startswith("SCRAM-SHA-256$")
    assert "cleartext-canary" not in stored[0]


# --- configuration errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("ROLLGATE_DB_APP_USER", "", "ROLLGATE_DB_APP_USER is not set"),
        ("ROLLGATE_DB_AUDIT_PASSWORD", "", "ROLLGATE_DB_AUDIT_PASSWORD is not set"),
        ("ROLLGATE_DB_APP_PASSWORD", "short", "ROLLGATE_DB_APP_PASSWORD is shorter than 12"),
        ("ROLLGATE_DB_AUDIT_USER", "rollgate_writer", "ROLLGATE_DB_AUDIT_USER names"),
        ("ROLLGATE_DB_APP_USER", "pg_monitor", "ROLLGATE_DB_APP_USER names"),
        ("ROLLGATE_DB_AUDIT_USER", "svc_app", "name the same role"),
    ],
)
def test_bad_variables_are_refused_by_name(variable: str, value: str, says: str) -> None:
    env = environment("svc_app", "app-secret-value-1", "svc_audit", "audit-secret-value-2")
    env[variable] = value
    with pytest.raises(CannotRun) as caught:
        roles_from_environment(env, **VARIABLES)
    assert says in str(caught.value)
    assert "secret-value" not in str(caught.value)


def test_a_service_role_named_like_the_owner_is_refused(server: ThrowawayPostgres) -> None:
    name = f"roles_owner_{secrets.token_hex(3)}"
    dsn = create_database(server, name, owner=True)
    try:
        roles = roles_from_environment(
            environment(OWNER_ROLE, "app-secret-value-1", "svc_a", "audit-secret-value-2"),
            **VARIABLES,
        )
        with pytest.raises(CannotRun, match="ROLLGATE_DB_APP_USER names 'rollgate_owner'"):
            bootstrap_roles(dsn, roles)
    finally:
        drop_database(server, name)
