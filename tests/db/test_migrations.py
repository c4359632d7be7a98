"""Loading migration files: every refusal names the file (and line) at fault."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import CannotRun
from db.errors import MigrationFileError
from db.migrations import BUNDLED_MIGRATIONS, load_migrations
from tests.db.conftest import WIDGETS, WriteMigrations, write_migration_set


def test_bundled_migrations_load_in_order() -> None:
    migrations = load_migrations(BUNDLED_MIGRATIONS)
    assert [m.label for m in migrations] == [
        "0001_create_base_tables",
        "0002_add_ai_model",
        "0003_add_task_outbox",
        "0004_create_roi_views",
        "0005_grant_service_roles",
    ]
    assert migrations[0].up.transactional
    # 0002 builds idx_ai_model CONCURRENTLY, which cannot run in a transaction.
    assert not migrations[1].up.transactional
    assert not migrations[1].down.transactional
    assert migrations[1].up.statement_timeout == "60min"


def test_missing_down_file_is_refused_by_name(widgets_dir: Path) -> None:
    (widgets_dir / "0002_add_widget_colour.down.sql").unlink()
    with pytest.raises(MigrationFileError, match=r"0002_add_widget_colour\.down\.sql: missing"):
        load_migrations(widgets_dir)


def test_missing_verify_file_is_refused_by_name(widgets_dir: Path) -> None:
    (widgets_dir / "0001_create_widgets.verify.sql").unlink()
    with pytest.raises(MigrationFileError, match=r"0001_create_widgets\.verify\.sql: missing"):
        load_migrations(widgets_dir)


def test_stray_sql_file_is_refused(widgets_dir: Path) -> None:
    (widgets_dir / "fix_prod.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationFileError, match=r"fix_prod\.sql: not a migration file name"):
        load_migrations(widgets_dir)


def test_two_migrations_sharing_a_version_are_refused(widgets_dir: Path) -> None:
    for kind in ("up", "down", "verify"):
        (widgets_dir / f"0002_other_change.{kind}.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationFileError, match="version 0002 is already used"):
        load_migrations(widgets_dir)


def test_syntax_error_names_file_line_and_column(write_migrations: WriteMigrations) -> None:
    broken = dict(WIDGETS)
    broken["0002_add_widget_colour"] = (
        "-- a comment line\n"
        "ALTER TABLE widgets ADD COLUMN colour text;\n"
        "CREATE INDX oops ON widgets (colour);",
        "SELECT 1;",
        "SELECT 1;",
    )
    directory = write_migrations(broken)
    with pytest.raises(MigrationFileError) as caught:
        load_migrations(directory)
    assert "0002_add_widget_colour.up.sql:3:8: syntax error" in caught.value.message
    assert caught.value.details["line"] == 3


def test_the_seeds_broken_sql_is_caught_with_its_line(write_migrations: WriteMigrations) -> None:
    # The seed's own text: a trailing comma and MySQL's ON UPDATE with garbage after it.
    seed_sql = (
        "CREATE TABLE IF NOT EXISTS public.customers (\n"
        "    id SERIAL PRIMARY KEY,\n"
        "    email VARCHAR(254) UNIQUE,\n"
        ");\n"
    )
    directory = write_migrations({"0001_create_customers": (seed_sql, "SELECT 1;", "SELECT 1;")})
    with pytest.raises(
        MigrationFileError, match=r"0001_create_customers\.up\.sql:4:1: syntax error"
    ):
        load_migrations(directory)


def test_invalid_utf8_is_refused_with_its_position(widgets_dir: Path) -> None:
    (widgets_dir / "0001_create_widgets.up.sql").write_bytes(b"SELECT 1;\nSELECT '\xff\xfe';\n")
    with pytest.raises(
        MigrationFileError, match=r"0001_create_widgets\.up\.sql:2:9: not valid UTF-8"
    ):
        load_migrations(widgets_dir)


def test_unknown_directive_is_refused(widgets_dir: Path) -> None:
    (widgets_dir / "0001_create_widgets.up.sql").write_text(
        "-- rollgate: transactional=false\nSELECT 1;\n"
    )
    with pytest.raises(MigrationFileError, match="unknown directive 'transactional'"):
        load_migrations(widgets_dir)


def test_malformed_timeout_is_refused(widgets_dir: Path) -> None:
    (widgets_dir / "0001_create_widgets.up.sql").write_text(
        "-- rollgate: lock_timeout=5 seconds\nSELECT 1;\n"
    )
    with pytest.raises(MigrationFileError, match="directive 'seconds' is not key=value"):
        load_migrations(widgets_dir)


def test_empty_up_file_is_refused(widgets_dir: Path) -> None:
    (widgets_dir / "0001_create_widgets.up.sql").write_text("-- nothing here\n")
    with pytest.raises(MigrationFileError, match="no SQL statements"):
        load_migrations(widgets_dir)


def test_statements_know_their_lines(widgets_dir: Path) -> None:
    migration = load_migrations(widgets_dir)[1]
    assert [s.line for s in migration.up.statements] == [1, 2]
    assert migration.up.statements[1].text.startswith("CREATE INDEX widgets_colour_idx")


def test_missing_directory_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(CannotRun, match="migrations directory not found"):
        load_migrations(tmp_path / "nope")


# --- File names (row l): ASCII digits only, lookalikes refused by name --------------


def test_arabic_indic_digits_beside_the_real_up_are_refused(widgets_dir: Path) -> None:
    # `\d` matched them, so the stray file silently replaced the real 0002 up.
    stray = widgets_dir / "\u0660\u0660\u0660\u0662_add_widget_colour.up.sql"
    stray.write_text("DROP TABLE widgets;\n")
    with pytest.raises(MigrationFileError) as caught:
        load_migrations(widgets_dir)
    assert f"{stray}: not a migration file name (an .sql file)" in caught.value.message
    assert "four ASCII digits" in caught.value.message


def test_a_name_ending_in_a_newline_is_refused_and_shown_escaped(widgets_dir: Path) -> None:
    (widgets_dir / "0004_add_x.up.sql\n").write_text("SELECT 1;\n")
    with pytest.raises(MigrationFileError) as caught:
        load_migrations(widgets_dir)
    assert "0004_add_x.up.sql\\n: not a migration file name (leading or trailing whitespace)" in (
        caught.value.message
    )


@pytest.mark.parametrize(
    "name",
    [
        "0003_add_index.UP.SQL",
        "0003_add_index.up.SQL",
        "0004_add_x.up.sql ",
        " 0004_add_x.up.sql",
        "0004_Add_X.up.sql",
        "0004-add-x.up.sql",
        "004_add_x.up.sql",
        "00004_add_x.up.sql",
        "0004_add_x.up.sql.bak",
        "0004_add_x.up.sql~",
        "0004_add_x.up",
        "add_x.down.txt",
        "0004_notes.md",
        "\uff10\uff10\uff10\uff14_add_x.up.sql",  # fullwidth digits
        "0004_add_x.up.sq\u200bl",
        "fix_prod.sql",
    ],
)
def test_names_that_look_like_migrations_are_refused(widgets_dir: Path, name: str) -> None:
    (widgets_dir / name).write_text("SELECT 1;\n")
    with pytest.raises(MigrationFileError, match="not a migration file name"):
        load_migrations(widgets_dir)


@pytest.mark.parametrize(
    "name", ["README", "README.md", "notes.txt", "CHANGES", ".gitkeep", ".0004_x.up.sql.swp"]
)
def test_other_files_beside_migrations_are_allowed(widgets_dir: Path, name: str) -> None:
    (widgets_dir / name).write_text("not SQL\n")
    (widgets_dir / "archive").mkdir()
    assert len(load_migrations(widgets_dir)) == 3


_NAME_PIECES = st.tuples(
    st.sampled_from(["0004", "4", "00004", "\u0664\u0664\u0664\u0664", "\u0966004", "x", ""]),
    st.sampled_from(["_", "-", "", " "]),
    st.sampled_from(["add_x", "Add_X", "add x", "", "a\u00e9"]),
    st.sampled_from([".up", ".down", ".verify", ".UP", ".Verify", "", ".sideways"]),
    st.sampled_from([".sql", ".SQL", ".Sql", ".sql\n", ".sql ", ".sql.orig", "", ".md", ".txt"]),
).map("".join)
_FILE_NAMES = st.one_of(_NAME_PIECES, st.text(min_size=1, max_size=40)).filter(
    lambda name: (
        "/" not in name
        and "\x00" not in name
        and name not in (".", "..")
        and len(name.encode("utf-8", "surrogatepass")) < 200
        and not any(0xD800 <= ord(c) <= 0xDFFF for c in name)
    )
)


def _looks_like_a_migration(name: str) -> bool:
    """The test's own idea of a lookalike, written independently of db.migrations."""
    folded = name.casefold()
    return (
        ".sql" in folded
        or any(f".{kind}." in folded for kind in ("up", "down", "verify"))
        or name[:1].isdigit()
        or any(c.isdigit() and not c.isascii() for c in name)
        or name != name.strip()
    )


@settings(max_examples=150, deadline=None)
@given(name=_FILE_NAMES)
def test_every_file_name_is_a_migration_refused_by_name_or_harmless(name: str) -> None:
    # A generated name beside a valid migration set: it is loaded as a migration
    # (only an exact ASCII name), refused naming it, or ignored; never silently
    # ignored when it looks like a migration.
    with tempfile.TemporaryDirectory() as tmp:
        directory = write_migration_set(Path(tmp) / "m", WIDGETS)
        target = directory / name
        if name.startswith(".") or target.exists():
            return
        try:
            target.write_text("SELECT 1;\n")
        except OSError:
            return  # a name this filesystem cannot hold
        valid = re.fullmatch(r"[0-9]{4}_[a-z][a-z0-9_]*\.(up|down|verify)\.sql", name, re.ASCII)
        try:
            loaded = load_migrations(directory)
        except MigrationFileError as exc:
            assert valid or repr(name)[1:-1] in exc.message
            return
        if valid:
            assert any(name.startswith(m.label) for m in loaded)
        else:
            assert not _looks_like_a_migration(name), f"{name!r} was silently ignored"
            assert len(loaded) == 3
