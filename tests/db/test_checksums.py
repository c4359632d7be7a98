"""Per-table row counts and order-independent content checksums, on real Postgres."""

from __future__ import annotations

import psycopg
import pytest

from db.checksums import compare_checksums, parallel_table_checksums, table_checksums

SCHEMA = """
CREATE SCHEMA app;
CREATE TYPE app.mood AS ENUM ('calm', 'tense');
CREATE TABLE app.events (id bigint PRIMARY KEY, at timestamptz, amount numeric,
                         ratio double precision, blob bytea, mood app.mood, doc jsonb);
CREATE TABLE public.logs (id bigint, message text) PARTITION BY RANGE (id);
CREATE TABLE public.logs_low PARTITION OF public.logs FOR VALUES FROM (0) TO (100);
CREATE TABLE public.logs_high PARTITION OF public.logs FOR VALUES FROM (100) TO (1000);
CREATE VIEW public.event_ids AS SELECT id FROM app.events;
"""


def load(dsn: str, rows_in_reverse: bool = False) -> None:
    order = "DESC" if rows_in_reverse else "ASC"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute(
            "INSERT INTO app.events SELECT g, '2026-01-01'::timestamptz + g * interval '1 h', "
            "g / 7.0, g / 3.0, decode(md5(g::text), 'hex'), "
            "(CASE WHEN g % 2 = 0 THEN 'calm' ELSE 'tense' END)::app.mood, "
            "jsonb_build_object('g', g) FROM generate_series(1, 500) g ORDER BY g " + order
        )
        conn.execute(
            "INSERT INTO public.logs SELECT g, 'line ' || g FROM generate_series(0, 999) g "
            "ORDER BY g " + order
        )


def test_same_rows_in_any_order_and_any_session_settings_give_equal_checksums(make_database):
    first, second = make_database(), make_database()
    load(first)
    load(second, rows_in_reverse=True)
    with psycopg.connect(second, autocommit=True) as conn:
        # Settings that change text output must not change the checksum.
        conn.execute("SET TimeZone = 'Asia/Kolkata'")
        conn.execute("SET DateStyle = 'German'")
        conn.execute("SET extra_float_digits = 3")
        conn.execute("SET bytea_output = 'escape'")
        b = table_checksums(conn)
    with psycopg.connect(first, autocommit=True) as conn:
        a = table_checksums(conn)
    assert compare_checksums(a, b) == []
    assert [t.table for t in a] == ["app.events", "public.logs_high", "public.logs_low"]
    assert {t.table: t.rows for t in a} == {
        "app.events": 500,
        "public.logs_high": 900,
        "public.logs_low": 100,
    }


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("UPDATE app.events SET amount = amount + 0.0001 WHERE id = 250", "different content"),
        ("DELETE FROM public.logs WHERE id = 5", "99 row(s), expected 100"),
        ("INSERT INTO public.logs VALUES (500, 'extra')", "901 row(s), expected 900"),
        ("UPDATE app.events SET blob = '\\x00' WHERE id = 1", "different content"),
        ("DROP TABLE public.logs_high", "missing (expected 900 row(s))"),
    ],
)
def test_any_lost_added_or_changed_row_is_caught_and_named(make_database, change, expected):
    dsn = make_database()
    load(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        before = table_checksums(conn)
        conn.execute(change)
        after = table_checksums(conn)
    differences = compare_checksums(before, after)
    assert len(differences) == 1
    assert expected in differences[0].describe()


def test_scope_and_transaction_snapshot(make_database):
    dsn = make_database()
    load(dsn)
    with psycopg.connect(dsn) as conn:
        assert [t.table for t in table_checksums(conn, schemas=["app"])] == ["app.events"]
        assert [t.table for t in table_checksums(conn, exclude_schemas=["app"])] == [
            "public.logs_high",
            "public.logs_low",
        ]
        assert "public.logs_low" not in {
            t.table for t in table_checksums(conn, exclude_tables={"public.logs_low"})
        }
        # Inside the caller's transaction: its snapshot, and nothing left behind.
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute("SET LOCAL TimeZone = 'Asia/Kolkata'")
        before = table_checksums(conn)
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("DELETE FROM app.events WHERE id = 1")
        assert table_checksums(conn) == before
        assert conn.execute("SHOW TimeZone").fetchone() == ("Asia/Kolkata",)  # pins undone
        conn.rollback()
        assert compare_checksums(before, table_checksums(conn)) != []


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_parallel_sessions_give_the_same_checksums_as_one(make_database, jobs):
    dsn = make_database()
    load(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        one = table_checksums(conn)
        conn.execute("UPDATE app.events SET amount = amount + 1 WHERE id = 7")
        changed = table_checksums(conn)
    parallel = parallel_table_checksums(dsn, jobs=jobs)
    assert parallel == changed
    assert compare_checksums(one, parallel)[0].table == "app.events"
    assert [t.table for t in parallel_table_checksums(dsn, exclude_schemas=["app"])] == [
        "public.logs_high",
        "public.logs_low",
    ]


def test_parallel_sessions_all_read_the_exported_snapshot(make_database):
    dsn = make_database()
    load(dsn)
    with psycopg.connect(dsn) as exporter:
        exporter.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        name = exporter.execute("SELECT pg_export_snapshot()").fetchone()[0]
        before = table_checksums(exporter)
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("DELETE FROM app.events WHERE id = 1")
            other.execute("DELETE FROM public.logs WHERE id = 999")
        assert parallel_table_checksums(dsn, jobs=2, snapshot=name) == before
        exporter.rollback()
    assert compare_checksums(before, parallel_table_checksums(dsn, jobs=2)) != []
