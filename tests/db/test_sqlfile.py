"""Reading SQL files: what a migration may contain, and how files are read at all.

Every refusal here happens at load time, before a statement runs, and names
``file:line:column`` and the fix. Files are real files on disk; rules are judged
on pglast's parse tree (so the same words inside a function body, a string or
a comment are not refused); where the server's behaviour is the reason for a
rule, a test shows it on real Postgres.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.pgtools import embedded_client_bin
from db.errors import MigrationFileError
from db.migrations import load_migrations
from db.sqlfile import (
    LineIndex,
    read_migration_script,
    read_regular_file,
    read_schema_script,
    read_script,
)
from db.sqlrules import needs_parse_tree, statement_refusals
from rollgate.cli import main
from tests.db.conftest import WIDGETS, MigrationSet, WriteMigrations

ROOT = Path(__file__).resolve().parents[2]
UP = "0001_create_widgets.up.sql"
NO_TX = "-- rollgate: transaction=false\n"


def write_file(tmp_path: Path, text: str, name: str = UP) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def refusal(tmp_path: Path, text: str, name: str = UP) -> MigrationFileError:
    with pytest.raises(MigrationFileError) as caught:
        read_migration_script(write_file(tmp_path, text, name))
    return caught.value


def with_file(kind: str, text: str) -> MigrationSet:
    """The widgets migrations with one file of 0001 replaced by ``text``."""
    changed = dict(WIDGETS)
    up, down, verify = changed["0001_create_widgets"]
    files = {"up": up, "down": down, "verify": verify}
    files[kind] = text
    changed["0001_create_widgets"] = (files["up"], files["down"], files["verify"])
    return changed


# --- 1. Transaction control, in any file -------------------------------------------


SQITCH_UP = "BEGIN;\n\nCREATE TABLE widgets (id bigint PRIMARY KEY, name text);\n\nCOMMIT;\n"
SQITCH_VERIFY = "BEGIN;\n\nSELECT id, name FROM widgets WHERE false;\n\nROLLBACK;\n"


def test_sqitch_begin_commit_around_an_up_is_refused_at_its_line(
    write_migrations: WriteMigrations,
) -> None:
    with pytest.raises(MigrationFileError) as caught:
        load_migrations(write_migrations(with_file("up", SQITCH_UP)))
    message = caught.value.message
    assert "0001_create_widgets.up.sql:1:1: BEGIN in a migration file; remove BEGIN/COMMIT" in (
        message
    )
    assert "use -- rollgate: transaction=false for statements that cannot run in one" in message
    assert caught.value.details["rule"] == "transaction-control"


def test_sqitch_rollback_at_the_end_of_a_verify_is_refused(tmp_path: Path) -> None:
    # Without BEGIN: the ROLLBACK alone would undo the migration's own DDL.
    error = refusal(
        tmp_path, "SELECT id, name FROM widgets WHERE false;\n\nROLLBACK;\n", "0001_x.verify.sql"
    )
    assert error.message.startswith(f"{tmp_path}/0001_x.verify.sql:3:1: ROLLBACK in a migration")
    error = refusal(tmp_path, SQITCH_VERIFY, "0001_x.verify.sql")
    assert ":1:1: BEGIN" in error.message


def test_commit_between_statements_of_an_up_is_refused(tmp_path: Path) -> None:
    # Row j: what came before COMMIT would be committed with no history row.
    text = "CREATE TABLE a (id int);\n  COMMIT;\nCREATE TABLE b (id int);\n"
    assert ":2:3: COMMIT in a migration file" in refusal(tmp_path, text).message


@pytest.mark.parametrize(
    ("statement", "shown"),
    [
        ("BEGIN", "BEGIN"),
        ("BEGIN WORK", "BEGIN"),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE", "BEGIN"),
        ("START TRANSACTION", "START TRANSACTION"),
        ("COMMIT", "COMMIT"),
        ("COMMIT AND CHAIN", "COMMIT"),
        ("END", "COMMIT"),
        ("ROLLBACK", "ROLLBACK"),
        ("ABORT", "ROLLBACK"),
        ("SAVEPOINT before_change", "SAVEPOINT"),
        ("RELEASE before_change", "RELEASE SAVEPOINT"),
        ("RELEASE SAVEPOINT before_change", "RELEASE SAVEPOINT"),
        ("ROLLBACK TO before_change", "ROLLBACK TO SAVEPOINT"),
        ("ROLLBACK TO SAVEPOINT before_change", "ROLLBACK TO SAVEPOINT"),
        ("PREPARE TRANSACTION 'rg'", "PREPARE TRANSACTION"),
        ("COMMIT PREPARED 'rg'", "COMMIT PREPARED"),
        ("ROLLBACK PREPARED 'rg'", "ROLLBACK PREPARED"),
    ],
)
@pytest.mark.parametrize("kind", ["up", "down", "verify"])
@pytest.mark.parametrize("header", ["", NO_TX], ids=["transactional", "transaction-false"])
def test_every_transaction_control_statement_is_refused_in_every_file(
    tmp_path: Path, statement: str, shown: str, kind: str, header: str
) -> None:
    text = f"{header}SELECT 1;\n{statement.lower()};\n"
    error = refusal(tmp_path, text, f"0001_x.{kind}.sql")
    line = 3 if header else 2
    assert f"0001_x.{kind}.sql:{line}:1: {shown} in a migration file; remove BEGIN/COMMIT" in (
        error.message
    )


def test_the_same_words_in_bodies_strings_and_comments_are_not_transaction_control(
    tmp_path: Path,
) -> None:
    text = (
        "-- BEGIN; COMMIT; (a sqitch habit we dropped)\n"
        "/* ROLLBACK; */\n"
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\n    NEW.updated_at := now();\n    RETURN NEW;\nEND;\n$$;\n"
        "DO $$ BEGIN PERFORM 1; END $$;\n"
        "SELECT 'COMMIT;' AS not_a_commit, $q$ROLLBACK;$q$ AS nor_a_rollback;\n"
        'CREATE TABLE savepoint_log ("begin" int, "commit" int, "end" int);\n'
    )
    script = read_migration_script(write_file(tmp_path, text))
    assert len(script.statements) == 4


def test_a_sqitch_project_is_refused_before_anything_runs_on_real_postgres(
    capsys: pytest.CaptureFixture[str], write_migrations: WriteMigrations, empty_dsn: str
) -> None:
    # The finding 1: the verify's ROLLBACK undid the DDL yet history said applied.
    directory = write_migrations(with_file("verify", SQITCH_VERIFY))
    code = main(["db", "migrate", "--dsn", empty_dsn, "--migrations", str(directory)])
    _, err = capsys.readouterr()
    assert code == 1
    assert "0001_create_widgets.verify.sql:1:1: BEGIN in a migration file" in err
    assert "Traceback" not in err
    with psycopg.connect(empty_dsn) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', "
            "'information_schema')"
        ).fetchone()
    assert tables == (0,)  # nothing ran, not even Rollgate's own bookkeeping


# --- 2. Statements that cannot run in a transaction block ---------------------------

NEEDS_NO_TRANSACTION = [
    ("VACUUM widgets", "VACUUM"),
    ("VACUUM (ANALYZE) widgets", "VACUUM"),
    ("CREATE INDEX CONCURRENTLY widgets_name_idx ON widgets (name)", "CREATE INDEX CONCURRENTLY"),
    ("CREATE UNIQUE INDEX CONCURRENTLY u ON widgets (id)", "CREATE INDEX CONCURRENTLY"),
    ("DROP INDEX CONCURRENTLY widgets_pkey", "DROP INDEX CONCURRENTLY"),
    ("REINDEX TABLE CONCURRENTLY widgets", "REINDEX ... CONCURRENTLY"),
    ("REINDEX (CONCURRENTLY) INDEX widgets_pkey", "REINDEX ... CONCURRENTLY"),
    ("REINDEX SCHEMA public", "REINDEX SCHEMA"),
    ("REINDEX DATABASE", "REINDEX DATABASE"),
    ("REINDEX SYSTEM", "REINDEX SYSTEM"),
    (
        "ALTER TABLE measurements DETACH PARTITION measurements_2024 CONCURRENTLY",
        "ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY",
    ),
    ("CLUSTER", "CLUSTER without a table name"),
    (
        "CREATE SUBSCRIPTION s CONNECTION 'host=127.0.0.1 port=1' PUBLICATION p",
        "CREATE SUBSCRIPTION",
    ),
    ("DROP SUBSCRIPTION IF EXISTS s", "DROP SUBSCRIPTION"),
    ("ALTER SUBSCRIPTION s REFRESH PUBLICATION", "ALTER SUBSCRIPTION"),
]
SERVER_LEVEL = [
    ("CREATE DATABASE other", "CREATE DATABASE"),
    ("DROP DATABASE IF EXISTS other", "DROP DATABASE"),
    ("ALTER DATABASE other SET TABLESPACE fast", "ALTER DATABASE ... SET TABLESPACE"),
    ("ALTER DATABASE other RENAME TO other2", "ALTER DATABASE ... RENAME"),
    ("ALTER SYSTEM SET work_mem = '64MB'", "ALTER SYSTEM"),
    ("ALTER SYSTEM RESET ALL", "ALTER SYSTEM"),
    ("CREATE TABLESPACE fast LOCATION '/mnt/fast'", "CREATE TABLESPACE"),
    ("DROP TABLESPACE IF EXISTS fast", "DROP TABLESPACE"),
    ("ALTER TABLESPACE fast SET (random_page_cost = 1)", "ALTER TABLESPACE"),
]


@pytest.mark.parametrize(("statement", "shown"), NEEDS_NO_TRANSACTION)
def test_statements_that_need_transaction_false_are_refused_in_a_transactional_file(
    tmp_path: Path, statement: str, shown: str
) -> None:
    error = refusal(tmp_path, f"SELECT 1;\n{statement};\n")
    assert f"{UP}:2:1: {shown}" in error.message
    assert "cannot run inside a transaction block" in error.message
    assert "-- rollgate: transaction=false" in error.message
    assert error.details["rule"] == "needs-transaction-false"


@pytest.mark.parametrize(("statement", "_shown"), NEEDS_NO_TRANSACTION)
def test_the_same_statements_load_in_a_transaction_false_file(
    tmp_path: Path, statement: str, _shown: str
) -> None:
    script = read_migration_script(write_file(tmp_path, f"{NO_TX}{statement};\n"))
    assert not script.transactional


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE INDEX widgets_name_idx ON widgets (name)",
        "DROP INDEX widgets_name_idx",
        "REINDEX TABLE widgets",
        "ANALYZE widgets",
        "CLUSTER widgets USING widgets_pkey",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
        "ALTER TABLE measurements DETACH PARTITION measurements_2024",
        "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p WITH (connect = false)",
        "ALTER DATABASE other SET work_mem = '64MB'",
    ],
)
def test_their_transactional_cousins_load(tmp_path: Path, statement: str) -> None:
    assert read_migration_script(write_file(tmp_path, f"{statement};\n")).transactional


@pytest.mark.parametrize(("statement", "shown"), SERVER_LEVEL)
@pytest.mark.parametrize("header", ["", NO_TX], ids=["transactional", "transaction-false"])
def test_server_level_statements_are_refused_even_with_transaction_false(
    tmp_path: Path, statement: str, shown: str, header: str
) -> None:
    error = refusal(tmp_path, f"{header}{statement};\n")
    assert f"{shown} in a migration file; it changes the database server" in error.message
    assert error.details["rule"] == "server-level"


def test_postgres_really_refuses_these_statements_in_a_transaction_block(
    empty_dsn: str,
) -> None:
    # The list above is PostgreSQL's, not ours: each one fails inside BEGIN.
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE widgets (id bigint PRIMARY KEY, name text);"
            "CREATE TABLE measurements (at date) PARTITION BY RANGE (at);"
            "CREATE TABLE measurements_2024 PARTITION OF measurements "
            "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
        )
        statements = [s for s, _ in NEEDS_NO_TRANSACTION + SERVER_LEVEL]
        statements.remove("ALTER DATABASE other RENAME TO other2")  # allowed, but server-level
        statements.remove("ALTER TABLESPACE fast SET (random_page_cost = 1)")  # likewise
        # Refused only for an existing, enabled subscription with a replication slot,
        # which a file cannot show; Rollgate refuses them in a transactional file up front.
        statements.remove("DROP SUBSCRIPTION IF EXISTS s")
        statements.remove("ALTER SUBSCRIPTION s REFRESH PUBLICATION")
        statements += ["DISCARD ALL"]
        for statement in statements:
            with pytest.raises(psycopg.errors.ActiveSqlTransaction), conn.transaction():
                conn.execute(statement)
                pytest.fail(f"{statement} ran inside a transaction block")


def test_lock_in_a_transaction_false_file_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, f"{NO_TX}LOCK TABLE widgets IN ACCESS EXCLUSIVE MODE;\n")
    assert f"{UP}:2:1: LOCK in a transaction=false file" in error.message
    assert read_migration_script(write_file(tmp_path, "LOCK TABLE widgets;\n")).transactional


def test_discard_all_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, f"{NO_TX}DISCARD ALL;\n")
    assert "DISCARD ALL in a migration file" in error.message


# --- 3. Rollgate's own schema -------------------------------------------------------

HISTORY_REFERENCES = [
    "DROP TABLE rollgate.schema_migrations",
    "DELETE FROM rollgate.schema_migrations",
    "TRUNCATE rollgate.schema_migrations",
    "INSERT INTO rollgate.schema_migrations (version) VALUES (9)",
    "UPDATE widgets SET name = (SELECT max(name) FROM RollGate.schema_migrations)",
    'SELECT * FROM "rollgate"."schema_migrations"',
    'SELECT * FROM U&"\\0072ollgate".schema_migrations',
    "WITH h AS (SELECT version FROM rollgate.schema_migrations) SELECT * FROM h",
    "SELECT 1 WHERE EXISTS (SELECT 1 FROM (SELECT * FROM rollgate.t) s)",
    "CREATE VIEW v AS SELECT * FROM rollgate.schema_migrations",
    "CREATE TABLE rollgate.notes (id int)",
    "ALTER TABLE rollgate.schema_migrations ADD COLUMN x int",
    "ALTER TABLE widgets SET SCHEMA rollgate",
    "CREATE SCHEMA rollgate",
    "CREATE SCHEMA AUTHORIZATION rollgate",
    "CREATE SCHEMA app CREATE TABLE t (id int) CREATE VIEW v AS SELECT * FROM rollgate.t",
    "SECURITY LABEL FOR selinux ON SCHEMA rollgate IS 'x'",
    "TABLE rollgate.schema_migrations",
    "CALL rollgate.repair()",
    "ALTER FUNCTION f() SET SCHEMA rollgate",
    "IMPORT FOREIGN SCHEMA remote FROM SERVER s INTO rollgate",
    "DROP SCHEMA rollgate CASCADE",
    "DROP SCHEMA IF EXISTS other, rollgate",
    "ALTER SCHEMA rollgate RENAME TO old_history",
    "ALTER SCHEMA rollgate OWNER TO someone",
    "COMMENT ON SCHEMA rollgate IS 'mine now'",
    "GRANT USAGE ON SCHEMA rollgate TO PUBLIC",
    "REVOKE ALL ON SCHEMA rollgate FROM PUBLIC",
    "GRANT ALL ON ALL TABLES IN SCHEMA rollgate TO PUBLIC",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA rollgate GRANT SELECT ON TABLES TO PUBLIC",
    "CREATE FUNCTION rollgate.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "SELECT rollgate.f()",
    "DROP FUNCTION rollgate.f()",
    "CREATE TABLE t (x rollgate.some_type)",
    "CREATE EXTENSION citext SCHEMA rollgate",
    "SET search_path = rollgate, public",
    "SET LOCAL search_path TO E'\\x72ollgate'",
    "SELECT set_config('search_path', 'public, rollgate', true)",
    "ALTER ROLE app SET search_path = rollgate",
    "CREATE FUNCTION g() RETURNS int LANGUAGE sql SET search_path = rollgate AS 'SELECT 1'",
    "SELECT 'rollgate.schema_migrations'::regclass",
    "SELECT rollgate.schema_migrations.version FROM rollgate.schema_migrations",
    "SELECT count(*) FROM widgets w JOIN rollgate.schema_migrations h ON true",
]


@pytest.mark.parametrize("statement", HISTORY_REFERENCES)
@pytest.mark.parametrize("header", ["", NO_TX], ids=["transactional", "transaction-false"])
def test_any_reference_to_the_rollgate_schema_is_refused(
    tmp_path: Path, statement: str, header: str
) -> None:
    error = refusal(tmp_path, f"{header}SELECT 1;\n{statement};\n")
    assert "no migration may touch schema 'rollgate'" in error.message
    assert error.details["rule"] == "rollgate-schema"
    assert error.details["line"] == (3 if header else 2)


def test_a_nested_reference_is_pointed_at_exactly(tmp_path: Path) -> None:
    text = "SELECT 1;\nWITH h AS (SELECT * FROM rollgate.schema_migrations) SELECT 1 FROM h;\n"
    assert f"{UP}:2:26: no migration may touch" in refusal(tmp_path, text).message
    # Characters, not bytes, after non-ASCII text on the same line.
    text = "SELECT 'é' AS x, y FROM rollgate.t;\n"
    assert f"{UP}:1:25: no migration" in refusal(tmp_path, text).message


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 'rollgate'",
        "INSERT INTO tools (name) VALUES ('rollgate')",
        "CREATE TABLE tools (id int, rollgate text, PRIMARY KEY (rollgate, id))",
        "SELECT rollgate.id FROM widgets rollgate",
        "CREATE TYPE tool AS ENUM ('rollgate', 'flyway')",
        "CREATE TABLE public.rollgate (id int)",
        'SELECT * FROM "Rollgate".t',
        "SELECT * FROM rollgate_archive.t",
        "COMMENT ON TABLE widgets IS 'migrated by rollgate'",
        "SET search_path = public",
        "CREATE INDEX ON tools (rollgate, id)",
    ],
)
def test_other_uses_of_the_word_are_not_references(tmp_path: Path, statement: str) -> None:
    assert read_migration_script(write_file(tmp_path, f"{statement};\n")).statements


def test_dropping_the_history_with_transaction_false_is_refused_before_it_runs(
    capsys: pytest.CaptureFixture[str], write_migrations: WriteMigrations, migrated_dsn: str
) -> None:
    # Row m: with transaction=false the history used to be lost. Nothing runs now.
    from db.history import HISTORY_QUALIFIED

    sets = dict(WIDGETS)
    sets["0004_forget_history"] = (
        f"{NO_TX}DROP TABLE IF EXISTS {HISTORY_QUALIFIED};",
        "SELECT 1;",
        "SELECT 1;",
    )
    directory = write_migrations(sets)
    code = main(["db", "migrate", "--dsn", migrated_dsn, "--migrations", str(directory)])
    _, err = capsys.readouterr()
    assert code == 1
    assert "0004_forget_history.up.sql:2:1: no migration may touch schema 'rollgate'" in err
    with psycopg.connect(migrated_dsn) as conn:
        # Nothing ran: not even 0001..0003, which would have come first.
        assert conn.execute("SELECT to_regclass('public.widgets')").fetchone() == (None,)


# --- 5. NUL bytes, encodings, sizes and file types ----------------------------------


def test_a_nul_byte_is_refused_with_its_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / UP
    path.write_bytes("SELECT 'é';\nSELECT 1;\x00DROP TABLE widgets;\n".encode())
    with pytest.raises(MigrationFileError) as caught:
        read_script(path)
    assert f"{UP}:2:10: NUL byte at byte offset 22" in caught.value.message
    assert caught.value.details["byte"] == 22


def test_a_nul_byte_in_any_migration_file_stops_the_load(widgets_dir: Path) -> None:
    (widgets_dir / "0002_add_widget_colour.verify.sql").write_bytes(b"SELECT 1;\x00")
    with pytest.raises(MigrationFileError, match=r"0002_add_widget_colour\.verify\.sql:1:10: NUL"):
        load_migrations(widgets_dir)


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / UP
    path.write_text("SELECT 1;\n" * 20)
    with pytest.raises(MigrationFileError, match=r"200 bytes or more, over the limit of 100"):
        read_script(path, max_bytes=100)
    assert read_script(path, max_bytes=200).statements


def test_the_default_limit_is_256_mib(widgets_dir: Path) -> None:
    # A sparse file: 300 MiB on paper, nothing on disk, refused by its size alone.
    with open(widgets_dir / UP, "wb") as big:
        big.truncate(300 * 1024 * 1024)
    with pytest.raises(MigrationFileError, match=r"limit of 268,435,456 bytes \(256 MiB\)"):
        load_migrations(widgets_dir)


def run_with_guard(action: Callable[[], object]) -> BaseException | None:
    """Run ``action`` in a thread; a hang fails the test instead of freezing the run."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            action()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "reading the file blocked"
    return outcome[0]


def test_a_fifo_named_like_a_migration_is_refused_without_blocking(widgets_dir: Path) -> None:
    path = widgets_dir / UP
    path.unlink()
    os.mkfifo(path)
    error = run_with_guard(lambda: load_migrations(widgets_dir))
    assert isinstance(error, MigrationFileError)
    assert f"{path}: is a FIFO (named pipe), not a regular file" in error.message


@pytest.mark.parametrize(
    ("target", "kind"), [("/dev/zero", "a character device"), ("/", "a directory")]
)
def test_a_symlink_to_a_device_or_directory_is_refused(
    widgets_dir: Path, target: str, kind: str
) -> None:
    path = widgets_dir / UP
    path.unlink()
    path.symlink_to(target)
    error = run_with_guard(lambda: load_migrations(widgets_dir))
    assert isinstance(error, MigrationFileError)
    assert f"{path}: is {kind} (a symlink to {target}), not a regular file" in error.message


def test_a_socket_or_a_directory_named_like_a_migration_is_refused(widgets_dir: Path) -> None:
    path = widgets_dir / UP
    path.unlink()
    path.mkdir()
    with pytest.raises(MigrationFileError, match=r"is a directory, not a regular file"):
        load_migrations(widgets_dir)
    path.rmdir()
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(path))
        with pytest.raises(MigrationFileError, match=r"is a socket, not a regular file"):
            load_migrations(widgets_dir)
    finally:
        listener.close()


def test_a_symlink_to_a_regular_file_is_read(widgets_dir: Path, tmp_path: Path) -> None:
    real = tmp_path / "shared.sql"
    (widgets_dir / UP).rename(real)
    (widgets_dir / UP).symlink_to(real)
    assert load_migrations(widgets_dir)[0].up.statements
    assert read_regular_file(real) == real.read_bytes()


# --- 7. Directive bounds ------------------------------------------------------------


@pytest.mark.parametrize(
    ("directive", "bounds"),
    [
        ("lock_timeout=0", "between 1ms and 10min (0 would wait forever"),
        ("lock_timeout=11min", "between 1ms and 10min"),
        ("lock_timeout=99999999999999h", "between 1ms and 10min"),
        ("lock_timeout=" + "9" * 5000, "between 1ms and 10min"),
        ("statement_timeout=25h", "0 (no limit) or between 1ms and 24h"),
        ("statement_timeout=2147483648", "0 (no limit) or between 1ms and 24h"),
        ("statement_timeout=2147483648ms", "0 (no limit) or between 1ms and 24h"),
    ],
)
def test_timeouts_out_of_bounds_are_refused_naming_the_bounds(
    tmp_path: Path, directive: str, bounds: str
) -> None:
    error = refusal(tmp_path, f"SELECT 1;\n-- rollgate: {directive}\nSELECT 2;\n")
    assert f"{UP}:2: {directive.split('=', maxsplit=1)[0]}=" in error.message
    assert f"is out of bounds: it must be {bounds}" in error.message


def test_the_bounds_themselves_load_and_postgres_accepts_them(
    tmp_path: Path, empty_dsn: str
) -> None:
    accepted = [
        ("lock_timeout", "1ms"),
        ("lock_timeout", "10min"),
        ("lock_timeout", "600000"),
        ("statement_timeout", "0"),
        ("statement_timeout", "1"),
        ("statement_timeout", "24h"),
    ]
    with psycopg.connect(empty_dsn) as conn:
        for key, value in accepted:
            script = read_script(write_file(tmp_path, f"-- rollgate: {key}={value}\nSELECT 1;\n"))
            assert script.directives[key] == value
            conn.execute(f"SET {key} = '{value}'")


def test_a_directive_given_twice_is_refused(tmp_path: Path) -> None:
    text = "-- rollgate: lock_timeout=5s\nSELECT 1;\n-- rollgate: lock_timeout=0\n"
    assert "lock_timeout' is already set on line 1" in refusal(tmp_path, text).message


def test_catalog_can_only_be_declared_unchanged(tmp_path: Path) -> None:
    script = read_script(write_file(tmp_path, "-- rollgate: catalog=unchanged\nSELECT 1;\n"))
    assert script.directives["catalog"] == "unchanged"
    error = refusal(tmp_path, "-- rollgate: catalog=changed\nSELECT 1;\n")
    assert "catalog can only be declared unchanged" in error.message


# --- 8. COPY and psql meta-commands -------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("COPY widgets FROM STDIN", "COPY ... FROM STDIN in a migration file"),
        ("COPY widgets (id, name) FROM stdin WITH (FORMAT csv)", "COPY ... FROM STDIN"),
        ("COPY widgets TO STDOUT", "COPY ... TO STDOUT"),
        ("COPY (SELECT * FROM widgets) TO STDOUT", "COPY ... TO STDOUT"),
        ("COPY widgets TO PROGRAM 'cat > /tmp/x'", "COPY ... TO PROGRAM"),
        ("COPY widgets FROM PROGRAM 'curl x'", "COPY ... FROM PROGRAM"),
        ("COPY widgets FROM '/etc/passwd'", "COPY ... FROM '/etc/passwd'"),
    ],
)
@pytest.mark.parametrize("header", ["", NO_TX], ids=["transactional", "transaction-false"])
def test_copy_is_refused_in_any_migration(
    tmp_path: Path, statement: str, expected: str, header: str
) -> None:
    error = refusal(tmp_path, f"{header}{statement};\n")
    assert expected in error.message
    assert error.details["rule"] == "copy"


@pytest.mark.parametrize(
    "meta", ["\\set ON_ERROR_STOP on", "\\i other.sql", "  \\echo hi", "\\connect other"]
)
def test_psql_meta_commands_are_refused_in_migrations(tmp_path: Path, meta: str) -> None:
    error = refusal(tmp_path, f"SELECT 1;\n{meta}\nSELECT 2;\n")
    column = len(meta) - len(meta.lstrip()) + 1
    assert f"{UP}:2:{column}: {meta.strip()!r}: psql meta-command; Rollgate does not run" in (
        error.message
    )


def test_backslashes_inside_strings_and_bodies_are_not_meta_commands(tmp_path: Path) -> None:
    text = (
        "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$\n"
        "\\set not_a_meta_command\n"
        "SELECT 'x'\n$$;\n"
        "SELECT E'\n\\\\i not.sql';\n"
        "/*\n\\i also_not.sql\n*/\nSELECT 1;\n"
    )
    assert len(read_migration_script(write_file(tmp_path, text)).statements) == 3


# --- 9. Line and column lookup ------------------------------------------------------


def naive_position(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


@given(text=st.text(alphabet="ab\né\r ", max_size=60), data=st.data())
def test_line_index_agrees_with_counting_newlines(text: str, data: st.DataObject) -> None:
    offset = data.draw(st.integers(min_value=0, max_value=len(text)))
    assert LineIndex(text).position(offset) == naive_position(text, offset)


def test_statements_and_errors_keep_their_lines_in_a_large_file(tmp_path: Path) -> None:
    body = "INSERT INTO widgets (id, name) VALUES (1, 'x');\n" * 20_000
    script = read_migration_script(write_file(tmp_path, body + "SELECT 'é', 2;\n"))
    assert script.statements[-1].line == 20_001
    assert script.line_of(len(script.text) - 2) == (20_001, 14)
    error = refusal(tmp_path, body + "COMMIT;\n")
    assert error.details["line"] == 20_001


def test_only_plain_dml_skips_the_parse_tree() -> None:
    # The fast path must never hide a statement that a rule looks at.
    for statement, _ in NEEDS_NO_TRANSACTION + SERVER_LEVEL:
        assert needs_parse_tree(statement)
    for statement in HISTORY_REFERENCES:
        assert needs_parse_tree(statement)
        assert needs_parse_tree(statement.upper())
    assert not needs_parse_tree("INSERT INTO widgets VALUES (1, 'x')")
    assert not needs_parse_tree("WITH x AS (SELECT 1) UPDATE widgets SET name = 'y'")


# --- 11. pg_dump --schema-only output as a schema file ------------------------------

PG_DUMP_SOURCE = """
CREATE SCHEMA billing;
CREATE TABLE public.customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL);
CREATE TABLE billing.invoices (id bigint PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES public.customers (id), total numeric(12, 2));
CREATE FUNCTION billing.total_for(customer bigint) RETURNS numeric
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
    AS $$ SELECT coalesce(sum(total), 0) FROM billing.invoices WHERE customer_id = customer $$;
CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RETURN NEW;
END;
$$;
CREATE VIEW billing.balances AS
    SELECT c.id, billing.total_for(c.id) AS balance FROM public.customers c;
CREATE INDEX invoices_customer_idx ON billing.invoices (customer_id);
"""


def pg_dump_schema(dsn: str, path: Path) -> Path:
    """The embedded wheel's pg_dump --schema-only of ``dsn``, written to ``path``."""
    command = [str(embedded_client_bin() / "pg_dump"), "--schema-only", "--no-owner"]
    command += ["--file", str(path), "--dbname", dsn]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return path


@pytest.fixture
def dumped_schema(make_database: Callable[..., str], tmp_path: Path) -> tuple[Path, str]:
    dsn = make_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(PG_DUMP_SOURCE.encode())
    return pg_dump_schema(dsn, tmp_path / "schema.sql"), dsn


def test_pg_dump_schema_only_output_parses_with_its_lines(dumped_schema: tuple[Path, str]) -> None:
    path, _ = dumped_schema
    lines = path.read_text().splitlines()
    restrict = [n for n, line in enumerate(lines, 1) if line.startswith("\\restrict ")]
    assert restrict, "PostgreSQL 18's pg_dump writes \\restrict; this test relies on it"

    script = read_schema_script(path)

    assert [command.split()[0] for _, command in script.skipped_meta_commands] == [
        "\\restrict",
        "\\unrestrict",
    ]
    assert script.skipped_meta_commands[0][0] == restrict[0]
    for statement in script.statements:
        first_line = statement.text.splitlines()[0]
        assert lines[statement.line - 1][statement.column - 1 :].startswith(first_line)
    texts = [s.text for s in script.statements]
    assert any(t.startswith("CREATE TABLE billing.invoices") for t in texts)
    assert any(t.startswith("CREATE VIEW billing.balances") for t in texts)
    assert any("set_config('search_path', '', false)" in t for t in texts)

    # As a plain SQL file (or a migration) the same meta-command is refused by line.
    with pytest.raises(MigrationFileError) as caught:
        read_script(path)
    assert f"{path}:{restrict[0]}:1: '\\\\restrict" in caught.value.message
    assert "psql meta-command" in caught.value.message


def test_the_parsed_pg_dump_statements_rebuild_the_schema(
    dumped_schema: tuple[Path, str], make_database: Callable[..., str]
) -> None:
    # Blanking the meta-commands lost nothing: the statements recreate every object.
    path, source = dumped_schema
    target = make_database()
    with psycopg.connect(target, autocommit=True) as conn:
        for statement in read_schema_script(path).statements:
            conn.execute(statement.text.encode())
    assert relations(target) == relations(source)
    assert len(relations(source)) == 7  # 2 tables, their identity sequence, a view, 3 indexes


def relations(dsn: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('public', 'billing') ORDER BY 1, 2"
        ).fetchall()


def test_a_schema_file_accepts_only_pg_dumps_meta_commands(tmp_path: Path) -> None:
    text = "\\restrict abc123\nSET x = 1;\n\\connect app\nCREATE TABLE t (id int);\n"
    script = read_schema_script(write_file(tmp_path, text + "\\unrestrict abc123\n", "s.sql"))
    assert [s.line for s in script.statements] == [2, 4]
    with pytest.raises(MigrationFileError, match=r"s\.sql:3:1: '\\\\set x 1': psql meta"):
        read_schema_script(write_file(tmp_path, "SELECT 1;\nSELECT 2;\n\\set x 1\n", "s.sql"))


def test_a_dump_with_data_is_refused_as_such(tmp_path: Path) -> None:
    text = "CREATE TABLE t (id int);\nCOPY public.t (id) FROM stdin;\n1\n2\n\\.\n"
    with pytest.raises(MigrationFileError) as caught:
        read_schema_script(write_file(tmp_path, text, "schema.sql"))
    assert "schema.sql:5:1: '\\\\.': the end of COPY data" in caught.value.message
    assert "--schema-only" in caught.value.message


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_refusals_hold_whatever_the_keyword_case(tmp_path: Path, data: st.DataObject) -> None:
    statement = data.draw(
        st.sampled_from(
            [s for s, _ in NEEDS_NO_TRANSACTION + SERVER_LEVEL]
            + [s for s in HISTORY_REFERENCES if "U&" not in s and "E'" not in s and '"' not in s]
            + ["COPY widgets FROM STDIN", "BEGIN", "COMMIT", "END", "ROLLBACK"]
        )
    )
    flips = data.draw(st.lists(st.booleans(), min_size=len(statement), max_size=len(statement)))
    # Only outside string constants: case there is data, not syntax.
    cased, quoted = [], False
    for character, flip in zip(statement, flips, strict=True):
        quoted ^= character == "'"
        cased.append(character.swapcase() if flip and not quoted else character)
    path = tmp_path / UP
    path.write_text("".join(cased) + ";\n")
    with pytest.raises(MigrationFileError):
        read_migration_script(path)


# --- CLI ----------------------------------------------------------------------------


def test_cli_dry_run_refuses_a_bad_file_with_exit_1_and_no_traceback(
    write_migrations: WriteMigrations,
) -> None:
    directory = write_migrations(with_file("up", "CREATE TABLE widgets (id int);\nCOMMIT;"))
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    environment["PYTHONPATH"] = str(ROOT)
    completed = subprocess.run(
        [sys.executable, "-m", "rollgate", "db", "migrate", "--dry-run", "--migrations", directory],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 1
    assert f"{directory}/0001_create_widgets.up.sql:2:1: COMMIT" in completed.stderr
    assert "Traceback" not in completed.stderr + completed.stdout


BAD_FILES: dict[str, tuple[bytes | None, str]] = {
    "commit": (b"SELECT 1;\nCOMMIT;\n", ":2:1: COMMIT in a migration file"),
    "nul": (b"SELECT 1;\x00\n", ":1:10: NUL byte at byte offset 9"),
    "copy": (b"-- rollgate: transaction=false\nCOPY t FROM STDIN;\n", ":2:1: COPY ... FROM STDIN"),
    "meta": (b"\\set ON_ERROR_STOP on\nSELECT 1;\n", ":1:1: '\\\\set ON_ERROR_STOP on'"),
    "history": (b"DROP TABLE rollgate.schema_migrations;\n", ":1:1: no migration may touch"),
    "timeout": (b"-- rollgate: lock_timeout=0\nSELECT 1;\n", ":1: lock_timeout=0 is out of"),
    "fifo": (None, ": is a FIFO (named pipe), not a regular file"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
@pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
def test_cli_refuses_each_bad_file_with_exit_1_naming_it(
    capsys: pytest.CaptureFixture[str], widgets_dir: Path, case: str, as_json: bool
) -> None:
    content, expected = BAD_FILES[case]
    path = widgets_dir / "0002_add_widget_colour.up.sql"
    path.unlink()
    if content is None:
        os.mkfifo(path)
    else:
        path.write_bytes(content)
    argv = ["db", "migrate", "--dry-run", "--migrations", str(widgets_dir)]
    code = main(["--json", *argv] if as_json else argv)
    out, err = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in out + err
    if as_json:
        document = json.loads(out)
        assert document["error"]["type"] == "MigrationFileError"
        assert f"{path}{expected}" in document["error"]["message"]
    else:
        assert f"{path}{expected}" in err


def test_statement_refusals_judge_one_statement() -> None:
    from db.sqlfile import Statement

    statement = Statement(text="COMMIT", offset=7, line=2, column=1)
    (found,) = statement_refusals(statement, transactional=True)
    assert found.offset == 7 and found.rule == "transaction-control"


@settings(max_examples=200, deadline=None)
@given(
    key=st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        min_size=1,
        max_size=64,
    )
)
def test_any_pg_dump_restrict_key_is_skipped(tmp_path_factory, key: str) -> None:
    """pg_dump's key is random: one that starts with a digit once broke the scan (found in CI)."""
    path = tmp_path_factory.mktemp("restrict") / "schema.sql"
    path.write_text(f"\\restrict {key}\n\nCREATE TABLE t (id int);\n\n\\unrestrict {key}\n")
    script = read_schema_script(path)
    assert [s.text for s in script.statements] == ["CREATE TABLE t (id int)"]
    assert [line for line, _ in script.skipped_meta_commands] == [1, 5]
