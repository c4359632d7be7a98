"""db.sample against real Postgres: size, constraints, shapes, determinism, refusals."""

from __future__ import annotations

import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.errors import CannotRun, CheckFailed
from core.sizes import parse_size
from db.sample import SAMPLE_LOCK_KEY, TABLES, SampleProgress, SampleReport, generate_sample
from db.throwaway import ThrowawayPostgres, create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = (ROOT / "db" / "schema.sql").read_text()
# The tables as 0001 created them: execution_tasks has no ai_model yet.
SCHEMA_0001 = (ROOT / "db" / "migrations" / "0001_create_base_tables.up.sql").read_text()
UNTIL = datetime(2026, 11, 1, tzinfo=UTC)
MIB = 1024 * 1024


def _load(dsn: str, schema: str = SCHEMA) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(schema)


def _rows(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query).fetchall()


def _one(dsn: str, query: str) -> Any:
    return _rows(dsn, query)[0][0]


# --- parse_size ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("250MB", 250 * MIB),
        ("1.5GB", 1536 * MIB),
        ("512kB", 512 * 1024),
        ("512KB", 512 * 1024),
        ("250M", 250 * MIB),
        ("250mb", 250 * MIB),
        ("64 MiB", 64 * MIB),
        (" 2g ", 2 * 1024 * MIB),
        ("1TB", 1024 * 1024 * MIB),
        ("1048576", 1048576),
        ("100B", 100),
        ("0.5kB", 512),
    ],
)
def test_parse_size_accepts_postgres_style_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["", "abc", "MB", "-5MB", "0", "0MB", "0.0001B", "12XB", "1e6", "1.2.3MB", "nan", "∞"]
)
def test_parse_size_rejects_junk_zero_and_negatives(text: str) -> None:
    with pytest.raises(CannotRun) as caught:
        parse_size(text)
    message = str(caught.value)
    assert repr(text) in message  # names the value...
    assert "250MB" in message and "1024" in message  # ...and the accepted forms
    assert caught.value.details["value"] == text


# --- one 8 MB sample, many checks ---------------------------------------------


@pytest.fixture(scope="module")
def sampled(server: ThrowawayPostgres) -> Iterator[tuple[str, SampleReport, list[SampleProgress]]]:
    """An 8 MB sample in a fresh database, generated once for the module."""
    name = f"sample_{secrets.token_hex(4)}"
    dsn = create_database(server, name)
    try:
        _load(dsn)
        seen: list[SampleProgress] = []
        with psycopg.connect(dsn) as conn:
            report = generate_sample(conn, 8 * MIB, progress=seen.append, until=UNTIL)
            # The session-local helpers are gone again.
            helper = conn.execute("SELECT to_regprocedure('pg_temp.rg_u(integer, bigint)')")
            assert helper.fetchone() == (None,)
        yield dsn, report, seen
    finally:
        drop_database(server, name)


def test_reaches_the_target_within_tolerance(
    sampled: tuple[str, SampleReport, list[SampleProgress]],
) -> None:
    dsn, report, seen = sampled
    assert abs(report.bytes_after - 8 * MIB) / (8 * MIB) < 0.10
    measured = _one(
        dsn,
        "SELECT sum(pg_total_relation_size(c::regclass)) FROM unnest(ARRAY["
        "'customers', 'orders', 'execution_tasks', 'payment_events']) AS c",
    )
    assert abs(int(measured) - report.bytes_after) < 64 * 1024  # ANALYZE adds no bytes
    assert report.database_bytes_after > report.bytes_after  # the catalog comes on top
    assert report.batches == len(seen) > 10
    for table in TABLES:
        assert _one(dsn, f"SELECT count(*) FROM {table}") == report.rows[table] > 0
    # Progress after every batch, growing monotonically, ending where the report does.
    assert [p.batch for p in seen] == list(range(1, len(seen) + 1))
    assert all(a.bytes_now <= b.bytes_now for a, b in itertools.pairwise(seen))
    assert seen[-1].rows == report.rows and seen[-1].bytes_now == report.bytes_after
    assert report.seed == 42 and report.until == UNTIL.isoformat() and report.ai_model_filled
    json.dumps(report.to_dict())
    json.dumps(seen[-1].to_dict())
    assert 0.9 < seen[-1].to_dict()["fraction"] <= 1.0


def test_customers_have_unique_fake_emails_and_plausible_names(
    sampled: tuple[str, SampleReport, list[SampleProgress]],
) -> None:
    dsn, _, _ = sampled
    total, distinct_lower, ascii_shaped, mixed_case = _rows(
        dsn,
        "SELECT count(*), count(DISTINCT lower(email)),"
        " count(*) FILTER (WHERE email ~ '^[A-Za-z0-9._-]+@[a-z.]+\\.[a-z]+$'),"
        " count(*) FILTER (WHERE email <> lower(email)) FROM customers",
    )[0]
    assert total == distinct_lower == ascii_shaped
    assert 0 < mixed_case < total * 0.1  # some, so lower() uniqueness is exercised
    domains = {
        row[0] for row in _rows(dsn, "SELECT DISTINCT split_part(email, '@', 2) FROM customers")
    }
    assert domains <= {"example.com", "example.org", "example.net", "mail.example", "shop.test"}
    names = _one(dsn, "SELECT count(DISTINCT name)::float / count(*) FROM customers")
    assert names > 0.5
    assert _one(dsn, "SELECT count(*) FROM customers WHERE name !~ '^\\S.* \\S+$'") == 0


def test_orders_per_customer_are_heavy_tailed(
    sampled: tuple[str, SampleReport, list[SampleProgress]],
) -> None:
    dsn, _, _ = sampled
    median, p90, top, low_share = _rows(
        dsn,
        "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY n),"
        " percentile_disc(0.9) WITHIN GROUP (ORDER BY n), max(n),"
        " avg((n <= 3)::integer)"
        " FROM (SELECT count(o.id) AS n FROM customers c"
        "       LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.id) AS per_customer",
    )[0]
    assert median <= 2 and low_share > 0.7  # most customers: 0-3 orders
    assert top >= 50 and top > 20 * max(median, 1) and top > 5 * p90  # a few: many


def test_order_details_are_realistic_json(
    sampled: tuple[str, SampleReport, list[SampleProgress]],
) -> None:
    dsn, _, _ = sampled
    smallest, largest, bad_totals, empty_items, early = _rows(
        dsn,
        "SELECT min(octet_length(o.order_details::text)), max(octet_length(o.order_details::text)),"
        " count(*) FILTER (WHERE (order_details->>'total_minor')::bigint <>"
        "   (order_details->>'subtotal_minor')::bigint - (order_details->>'discount_minor')::bigint"
        "   + (order_details->>'shipping_minor')::bigint + (order_details->>'tax_minor')::bigint),"
        " count(*) FILTER (WHERE jsonb_array_length(order_details->'items') = 0),"
        " count(*) FILTER (WHERE o.created_at < c.created_at)"
        " FROM orders o JOIN customers c ON c.id = o.customer_id",
    )[0]
    assert 200 <= smallest < 1000 and largest > 2000  # a few hundred bytes to a few KB
    assert bad_totals == empty_items == early == 0
    keys = _one(dsn, "SELECT array_agg(DISTINCT k) FROM orders, jsonb_object_keys(order_details) k")
    assert {"items", "currency", "shipping", "total_minor"} <= set(keys)
    address_like = _one(
        dsn, "SELECT count(*) FROM orders WHERE order_details->'shipping' ? 'street'"
    )
    assert address_like == 0


def test_timestamps_follow_history_weekdays_and_daytime(
    sampled: tuple[str, SampleReport, list[SampleProgress]],
) -> None:
    dsn, _, _ = sampled
    start = (UNTIL - timedelta(days=730)).isoformat()
    for table in ("customers", "orders", "execution_tasks"):
        outside, backwards = _rows(
            dsn,
            f"SELECT count(*) FILTER (WHERE created_at < '{start}' OR created_at > '{UNTIL}'),"
            f" count(*) FILTER (WHERE updated_at < created_at) FROM {table}",
        )[0]
        assert outside == backwards == 0, table
    first_year, second_year = _rows(
        dsn,
        f"SELECT count(*) FILTER (WHERE created_at < '{UNTIL - timedelta(days=365)}'),"
        f" count(*) FILTER (WHERE created_at >= '{UNTIL - timedelta(days=365)}') FROM orders",
    )[0]
    assert second_year > 1.5 * first_year  # growth
    by_hour = [
        n
        for _, n in _rows(
            dsn,
            "SELECT extract(hour FROM created_at AT TIME ZONE 'UTC') h, count(*)"
            " FROM orders GROUP BY 1",
        )
    ]
    assert len(by_hour) == 24 and max(by_hour) > 3 * min(by_hour)  # diurnal
    weekday, weekend = _rows(
        dsn,
        "SELECT (avg(n) FILTER (WHERE d < 6))::float8, (avg(n) FILTER (WHERE d >= 6))::float8"
        " FROM ("
        " SELECT extract(isodow FROM created_at AT TIME ZONE 'UTC') d, count(*) n"
        " FROM orders GROUP BY 1) AS per_day",
    )[0]
    assert weekend < 0.85 * weekday  # weekly


def test_execution_tasks_have_a_consistent_lifecycle(
    sampled: tuple[str, SampleReport, list[SampleProgress]],
) -> None:
    dsn, _, _ = sampled
    statuses = dict(_rows(dsn, "SELECT status, count(*) FROM execution_tasks GROUP BY 1"))
    assert len(statuses) > 1
    assert statuses["succeeded"] > 0.8 * sum(statuses.values())
    assert {"failed", "dead", "queued", "running"} <= statuses.keys()
    inconsistent = _one(
        dsn,
        "SELECT count(*) FROM execution_tasks WHERE"
        " (last_error IS NOT NULL) <> (status IN ('failed', 'dead'))"
        " OR (started_at IS NULL) <> (status = 'queued')"
        " OR (finished_at IS NULL) <> (status IN ('queued', 'running'))"
        " OR attempts NOT BETWEEN 0 AND 5 OR (status = 'dead' AND attempts <> 5)"
        " OR (status = 'running' AND attempts = 0)"
        " OR started_at < created_at",
    )
    assert inconsistent == 0
    attempts = dict(_rows(dsn, "SELECT attempts, count(*) FROM execution_tasks GROUP BY 1"))
    assert attempts[1] > 0.8 * sum(attempts.values())  # skewed low
    models = dict(_rows(dsn, "SELECT ai_model, count(*) FROM execution_tasks GROUP BY 1"))
    assert models.get(None, 0) > 0 and len(models) >= 4  # a small set plus a NULL share
    non_ai_with_model = _one(
        dsn,
        "SELECT count(*) FROM execution_tasks WHERE ai_model IS NOT NULL"
        " AND payload->>'queue' <> 'ai'",
    )
    assert non_ai_with_model == 0


def test_payment_events_look_like_stripe_webhooks(
    sampled: tuple[str, SampleReport, list[SampleProgress]],
) -> None:
    dsn, _, _ = sampled
    total, usd, no_customer, log_spread, types = _rows(
        dsn,
        "SELECT count(*), count(*) FILTER (WHERE currency = 'usd'),"
        " count(*) FILTER (WHERE customer_id IS NULL),"
        " stddev(ln(greatest(amount_minor, 1))), count(DISTINCT event_type)"
        " FROM payment_events",
    )[0]
    assert usd > total / 2
    assert 0.01 * total < no_customer < 0.2 * total
    assert log_spread > 0.5  # log-normal-ish amounts: spread on a log scale
    assert types >= 5
    seen_types = {row[0] for row in _rows(dsn, "SELECT DISTINCT event_type FROM payment_events")}
    assert {"charge.succeeded", "invoice.paid", "charge.refunded"} <= seen_types


# --- determinism --------------------------------------------------------------

_FINGERPRINT = (
    "SELECT (SELECT md5(string_agg(email || created_at::text, ',' ORDER BY id)) FROM customers),"
    " (SELECT md5(string_agg(order_details::text, ',' ORDER BY id)) FROM orders),"
    " (SELECT md5(string_agg(status || payload::text || coalesce(ai_model, '-'), ','"
    "   ORDER BY id)) FROM execution_tasks),"
    " (SELECT md5(string_agg(stripe_event_id || amount_minor || coalesce(customer_id, 0), ','"
    "   ORDER BY id)) FROM payment_events)"
)


def _fresh_sample(dsn: str, seed: int, *, autocommit: bool) -> tuple[SampleReport, Any]:
    _load(dsn)
    # Autovacuum could add a few pages of visibility map to the measured size
    # and move a stop decision by one batch; these tables opt out for the test.
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    with psycopg.connect(dsn, autocommit=autocommit) as conn:
        report = generate_sample(conn, 2 * MIB, seed=seed, until=UNTIL)
    return report, _rows(dsn, _FINGERPRINT)[0]


def test_same_seed_same_rows_on_either_kind_of_connection(make_database: Any) -> None:
    first, first_print = _fresh_sample(make_database(), 7, autocommit=True)
    second, second_print = _fresh_sample(make_database(), 7, autocommit=False)
    assert first.rows == second.rows and first.bytes_after == second.bytes_after
    assert first_print == second_print
    _, other_print = _fresh_sample(make_database(), 8, autocommit=True)
    assert all(a != b for a, b in zip(first_print, other_print, strict=True))


# --- refusals and variants ----------------------------------------------------


def test_refuses_an_unmigrated_database(empty_dsn: str) -> None:
    with psycopg.connect(empty_dsn) as conn, pytest.raises(CheckFailed) as caught:
        generate_sample(conn, MIB)
    message = str(caught.value)
    assert "not migrated" in message and "public.customers" in message and "migrate" in message
    assert set(caught.value.details["missing_tables"]) == set(TABLES)


def test_refuses_tables_missing_columns(empty_dsn: str) -> None:
    _load(empty_dsn)
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        # CASCADE: the ROI views (0004) read the column.
        conn.execute("ALTER TABLE payment_events DROP COLUMN received_at CASCADE")
    with psycopg.connect(empty_dsn) as conn, pytest.raises(CheckFailed, match="received_at"):
        generate_sample(conn, MIB)


def test_refuses_a_database_already_bigger_than_the_target(empty_dsn: str) -> None:
    _load(empty_dsn)
    with psycopg.connect(empty_dsn) as conn:
        generate_sample(conn, MIB)
        with pytest.raises(CheckFailed, match="more than the target") as caught:
            generate_sample(conn, 256 * 1024)
    assert caught.value.details["target_bytes"] == 256 * 1024


def test_tops_up_a_smaller_sample(empty_dsn: str) -> None:
    _load(empty_dsn)
    with psycopg.connect(empty_dsn) as conn:
        first = generate_sample(conn, MIB)
        second = generate_sample(conn, 3 * MIB)
    assert second.bytes_before == first.bytes_after
    assert abs(second.bytes_after - 3 * MIB) < 0.1 * 3 * MIB
    customers = _one(empty_dsn, "SELECT count(*) FROM customers")
    assert customers == first.rows["customers"] + second.rows["customers"]


def test_refuses_bad_arguments_and_an_open_transaction(empty_dsn: str) -> None:
    _load(empty_dsn)
    with psycopg.connect(empty_dsn) as conn:
        with pytest.raises(CannotRun, match="positive"):
            generate_sample(conn, 0)
        with pytest.raises(CannotRun, match="seed"):
            generate_sample(conn, MIB, seed=-1)
        with pytest.raises(CannotRun, match="timezone-aware"):
            generate_sample(conn, MIB, until=datetime(2026, 1, 1))
        conn.execute("SELECT 1")  # psycopg opened a transaction
        with pytest.raises(CannotRun, match="no transaction open"):
            generate_sample(conn, MIB)


def test_fills_execution_tasks_without_ai_model(empty_dsn: str) -> None:
    _load(empty_dsn, SCHEMA_0001)
    with psycopg.connect(empty_dsn) as conn:
        report = generate_sample(conn, 2 * MIB)
    assert not report.ai_model_filled
    assert report.rows["execution_tasks"] == _one(empty_dsn, "SELECT count(*) FROM execution_tasks")
    assert report.rows["execution_tasks"] > 0


# --- interruption -------------------------------------------------------------


def test_interrupt_between_batches_keeps_the_committed_ones(empty_dsn: str) -> None:
    _load(empty_dsn)
    seen: list[SampleProgress] = []

    def stop_after_three(p: SampleProgress) -> None:
        seen.append(p)
        if p.batch == 3:
            raise KeyboardInterrupt

    with psycopg.connect(empty_dsn) as conn:
        with pytest.raises(KeyboardInterrupt):
            generate_sample(conn, 8 * MIB, progress=stop_after_three)
        helper = conn.execute("SELECT to_regprocedure('pg_temp.rg_u(integer, bigint)')")
        assert helper.fetchone() == (None,)
    for table in TABLES:
        assert _one(empty_dsn, f"SELECT count(*) FROM {table}") == seen[-1].rows[table]


_CHILD = textwrap.dedent(
    """
    import sys, psycopg
    from db.sample import generate_sample
    with psycopg.connect(sys.argv[1]) as conn:
        generate_sample(conn, 200 * 1024 * 1024, progress=lambda p: print(
            p.rows["customers"], flush=True))
    """
)


@pytest.mark.slow
def test_ctrl_c_mid_batch_rolls_back_only_that_batch(empty_dsn: str) -> None:
    _load(empty_dsn)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, empty_dsn],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    per_batch = int(child.stdout.readline())  # one batch committed...
    child.send_signal(signal.SIGINT)  # ...and the next one in flight
    _, stderr = child.communicate(timeout=60)
    assert child.returncode != 0 and "KeyboardInterrupt" in stderr
    customers = _one(empty_dsn, "SELECT count(*) FROM customers")
    tasks = _one(empty_dsn, "SELECT count(*) FROM execution_tasks")
    # Whole batches only: every batch adds the same customers and 3 tasks each.
    assert customers > 0 and customers % per_batch == 0 and tasks == 3 * customers
    orphans = _one(
        empty_dsn,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()",
    )
    assert orphans == 0


# --- guards: one run at a time, a size cap ------------------------------------


def test_a_held_sample_lock_refuses_before_anything_is_written(empty_dsn: str) -> None:
    _load(empty_dsn)
    with psycopg.connect(empty_dsn, autocommit=True, application_name="other-run") as other:
        other.execute("SELECT pg_advisory_lock(%s)", (SAMPLE_LOCK_KEY,))
        with (
            psycopg.connect(empty_dsn, autocommit=True) as conn,
            pytest.raises(CheckFailed) as caught,
        ):
            generate_sample(conn, MIB, until=UNTIL)
        holder = other.info.backend_pid
    assert f"server pid {holder}, application 'other-run'" in caught.value.message
    assert _one(empty_dsn, "SELECT count(*) FROM customers") == 0


def test_the_sample_lock_is_released_when_a_run_ends(empty_dsn: str) -> None:
    _load(empty_dsn)
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        generate_sample(conn, 256 * 1024, until=UNTIL)
        held = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        ).fetchone()
    assert held == (0,)


def test_a_target_above_the_cap_is_refused_before_anything_is_written(empty_dsn: str) -> None:
    _load(empty_dsn)
    with psycopg.connect(empty_dsn, autocommit=True) as conn, pytest.raises(CheckFailed) as caught:
        generate_sample(conn, 2 * MIB, max_bytes=MIB, until=UNTIL)
    assert "the target 2048.0 kB is above the cap of 1024.0 kB" in caught.value.message
    assert _one(empty_dsn, "SELECT count(*) FROM customers") == 0
