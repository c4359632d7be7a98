"""Production-shaped sample data, generated inside Postgres.

``generate_sample(conn, target_bytes)`` fills a migrated database (the four
tables of ``db/schema.sql``) until it holds about ``target_bytes`` of data, so
snapshot/restore benchmarks and rollout rehearsals run against something that
looks like production: heavy-tailed orders per customer, JSON documents of
realistic size, a queue history dominated by successes, webhook events that
follow the orders.

Design decisions, and why:

* **Server-side generation.** Every row is built by ``INSERT ... SELECT`` over
  ``generate_series``; Python only sends a few parameters per batch. Shipping
  rows from Python is roughly an order of magnitude slower.
* **Deterministic without random().** Every value is a pure function of
  ``(seed, stream, key)`` through ``hashint8extended``, where the key is a row
  number or a generated id and the stream names the field. Unlike
  ``setseed()``/``random()``, this cannot drift with the plan, the order the
  executor happens to visit rows in, or the batch size. The helpers live in
  ``pg_temp`` (session-local, dropped at the end: the schema is never touched)
  and are one-expression SQL functions, which the planner inlines.
* **What "size" means.** The target is compared with the sum of
  ``pg_total_relation_size`` over the four tables (heap, TOAST, indexes), not
  ``pg_database_size``: an empty database already weighs ~7.6 MB of catalog on
  PostgreSQL 18 (more with extensions), which would swamp small targets and
  varies by version. The report also carries ``pg_database_size`` for
  reference.
* **Units.** ``parse_size`` follows PostgreSQL: kB, MB, GB and TB are powers
  of 1024, as in ``pg_size_pretty``, ``pg_size_bytes`` and postgresql.conf, so
  ``--size 250MB`` compares directly with what ``psql`` shows.
* **Batches.** Each batch adds a slice of population (customers with their
  whole order history, the payment events of those orders, queue tasks) in
  its own transaction, then measures. Ctrl-C therefore leaves a consistent
  database that is merely smaller. Generation stops when the next batch
  would overshoot by more than it would undershoot, so the result lands
  within half a batch (about 1.25 % of the target) of the goal; one
  customer's orders are capped at ~2 % of the target so a heavy-tailed outlier
  cannot blow through it (measured: within 2.7 % for 0.5-250 MB, 5 seeds).
* **Guards before the first row.** A cap (``max_bytes``; the CLI's
  ``--max-size``, 10 GB by default) refuses a typo such as 1TB for 1GB.
  Free disk space is checked too when it can be known: PostgreSQL tells
  clients nothing about its disk, so only a server on this machine whose
  data directory is readable here is measured (``core.postgres.server_disk``);
  elsewhere (a container, another host, RDS) the report says it is unknown
  and only the cap applies. The run needs the data it adds plus, as pg_wal
  usually shares the disk, up to ``max_wal_size`` of WAL. A role without
  SELECT and INSERT on the four tables, or TEMPORARY on the database (for the
  session-local helpers), is refused naming the missing privileges.
* **One run at a time.** A session-level advisory lock (``SAMPLE_LOCK_KEY``)
  is held for the whole run; a second run on the same database is refused
  before it writes anything, naming the holder. Two interleaved runs would
  collide on the emails they derive from row numbers and, with one refused
  halfway, leave data that no single run with that seed produces.
* **Determinism, precisely.** Same seed, same ``until``, same starting
  database: same rows. The number of batches depends on measured sizes, which
  a concurrent (auto)vacuum can nudge by a few pages (it adds visibility-map
  and free-space-map forks); only a run whose stop decision falls within that
  margin could end one batch earlier or later.

Known simplification: each batch spans the whole two-year history, so ids
are not correlated with time across the table the way an append-only
production table's are, and indexes on time columns are built by random
rather than rightmost inserts (somewhat lower leaf fill).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

import psycopg
from psycopg import sql

from core.errors import CannotRun, CheckFailed
from core.postgres import advisory_lock_holder, server_disk

TABLES = ("customers", "orders", "execution_tasks", "payment_events")

# The columns generate_sample writes; ai_model (added by 0002) is optional.
_REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("name", "email", "created_at", "updated_at"),
    "orders": ("customer_id", "order_details", "created_at", "updated_at"),
    "execution_tasks": (
        "status",
        "payload",
        "attempts",
        "last_error",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
    ),
    "payment_events": (
        "stripe_event_id",
        "event_type",
        "amount_minor",
        "currency",
        "customer_id",
        "received_at",
    ),
}
_OPTIONAL_AI_MODEL = "ai_model"

MAX_SEED = 2**31 - 1
# pg_try_advisory_lock key: "RollSamp" in ASCII, apart from the runner's migration lock.
SAMPLE_LOCK_KEY = 0x526F6C6C53616D70
HISTORY = timedelta(days=730)

# Bytes one customer brings with it (its orders, their payment events, and the
# queue tasks generated alongside), measured on PostgreSQL 18 with seed 42.
# Only sizes the first batch; later batches use the measured average.
_EST_BYTES_PER_CUSTOMER = 5_300
# About 40 batches per run: fine-grained progress and a half-batch stop error
# of ~1.25 %, while per-batch overhead (a commit, a size probe) stays noise.
_BATCHES_PER_RUN = 40
# Caps one transaction on large targets (minutes of work lost to a Ctrl-C at
# most a few seconds, and no giant WAL bursts on a real server).
_MAX_BATCH_BYTES = 32 * 1024**2
_TASKS_PER_CUSTOMER = 3
# An order with its payment events and index entries, measured likewise.
_EST_BYTES_PER_ORDER = 1_100

# --- results ------------------------------------------------------------------


@dataclass(frozen=True)
class SampleProgress:
    """Where a run stands after a committed batch."""

    batch: int
    bytes_now: int
    bytes_before: int
    target_bytes: int
    rows: dict[str, int]  # rows inserted so far by this run, per table
    elapsed_seconds: float

    @property
    def fraction(self) -> float:
        """Share of the target reached, 0.0-1.0 (capped)."""
        return min(1.0, self.bytes_now / self.target_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fraction": self.fraction}


@dataclass(frozen=True)
class SampleReport:
    """What a run did. ``bytes_*`` are the four tables' total relation sizes."""

    target_bytes: int
    bytes_before: int
    bytes_after: int
    database_bytes_after: int  # pg_database_size, catalog included, for reference
    rows: dict[str, int]  # rows inserted by this run, per table
    batches: int
    elapsed_seconds: float
    seed: int
    until: str  # ISO 8601; generated timestamps lie in [until - 730 days, until]
    ai_model_filled: bool
    measure: str = field(default="sum of pg_total_relation_size of " + ", ".join(TABLES))
    # Free space on the server's disk before the run (free_bytes None: unknown, and why).
    server_disk: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Progress = Callable[[SampleProgress], None]


# --- distributions ------------------------------------------------------------
# Labels and weights live here, readable, and reach SQL as array parameters.
# Weighted picks use width_bucket over cumulative thresholds (a binary search).


def _weighted(*pairs: tuple[str, float]) -> tuple[list[str], list[float]]:
    total = sum(weight for _, weight in pairs)
    labels = [label for label, _ in pairs]
    cumulative, running = [], 0.0
    for _, weight in pairs[:-1]:
        running += weight
        cumulative.append(running / total)
    return labels, cumulative


# fmt: off
# (Data tables read better packed than one item per line.)

# Plausible, common names; combined at random, so no real person is described.
_FIRST_NAMES = [
    "Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Sophia", "Elijah", "Mia", "James",
    "Charlotte", "Mateo", "Ava", "Lucas", "Isabella", "Aarav", "Priya", "Wei", "Mei", "Hiroshi",
    "Yuki", "Fatima", "Omar", "Chloé", "José", "Zoë", "Søren", "Björn", "Anaïs", "Renée",
    "Kwame", "Amara", "Diego", "Lucía", "Mohammed", "Aisha", "Ivan", "Olga", "Seo-yeon", "Minh",
    "Grace", "Henry", "Nora", "Leo", "Hannah", "Jack", "Ella", "Samuel", "Layla", "Daniel",
]
_LAST_NAMES = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernández", "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Lee",
    "Nguyễn", "Kim", "Patel", "Singh", "Chen", "Wang", "Tanaka", "Sato", "Müller", "Schmidt",
    "Rossi", "Dubois", "O'Brien", "Kowalski", "Novák", "Jansen", "Silva", "Okafor", "Mensah",
    "Haddad", "Ivanova", "Larsen", "Andersson", "Kelly", "Murphy", "Walsh", "Costa", "Fischer",
    "Weber", "Yilmaz", "Cohen", "Ali",
]
# translate() maps each accented letter to its plain form and drops the tail
# (apostrophe, space) that has no counterpart: José O'Brien -> jose.obrien.
_ACCENTED = "áàâäãåçéèêëíìîïñóòôöõøúùûüýÿễč" + "' "
_PLAIN = "aaaaaaceeeeiiiinoooooouuuuyyec"
# Reserved for documentation (RFC 2606/6761): never a real mailbox.
_DOMAINS = _weighted(
    ("example.com", 45), ("example.org", 20), ("example.net", 20),
    ("mail.example", 10), ("shop.test", 5),
)
# Stripe spells currencies in lower case; usd dominates.
_CURRENCIES = _weighted(
    ("usd", 72), ("eur", 11), ("gbp", 8), ("cad", 5), ("aud", 3), ("jpy", 1),
)
# Hour of day (UTC) weights: a mostly-American audience peaks in the US
# afternoon and evening and sleeps through the European morning.
_HOUR_WEIGHTS = [
    6.0, 5.5, 4.5, 3.5, 2.5, 1.8, 1.3, 1.1, 1.1, 1.3, 1.8, 2.5,
    3.2, 4.0, 4.8, 5.5, 6.0, 6.4, 6.8, 7.0, 7.2, 7.2, 7.0, 6.6,
]
_HOURS_CUMULATIVE = _weighted(*((str(hour), w) for hour, w in enumerate(_HOUR_WEIGHTS)))[1]

_ADJECTIVES = [
    "Classic", "Everyday", "Lightweight", "Premium", "Organic", "Recycled", "Compact", "Deluxe",
    "Vintage", "Modern", "Rugged", "Slim", "Cozy", "Essential", "Travel", "Studio", "Outdoor",
    "Pro", "Mini", "Heritage",
]
_MATERIALS = [
    "Cotton", "Linen", "Wool", "Bamboo", "Leather", "Canvas", "Ceramic", "Steel", "Oak",
    "Walnut", "Glass", "Merino", "Denim", "Cork", "Silicone",
]
_PRODUCTS = [
    "Tee", "Hoodie", "Mug", "Backpack", "Notebook", "Water Bottle", "Lamp", "Cutting Board",
    "Scarf", "Socks", "Tote Bag", "Wallet", "Phone Case", "Candle", "Desk Organizer", "Beanie",
    "Apron", "Planter", "Headphones Stand", "Throw Blanket", "Coaster Set", "Jacket", "Cap",
    "Pillow Cover", "Travel Kit",
]
_CARRIERS = ["ups", "fedex", "usps", "dhl", "royal_mail", "canada_post", "australia_post"]
_SHIPPING_METHODS = _weighted(("standard", 70), ("express", 20), ("pickup", 6), ("overnight", 4))
_CHANNELS = _weighted(("web", 58), ("ios", 20), ("android", 15), ("pos", 5), ("api", 2))
_US_STATES = ["CA", "NY", "TX", "WA", "IL", "FL", "MA", "CO", "OR", "GA", "PA", "NJ", "AZ", "MN"]
_EU_COUNTRIES = ["DE", "FR", "NL", "ES", "IT", "IE", "BE", "AT", "FI", "PT"]
_CA_PROVINCES = ["ON", "QC", "BC", "AB", "MB", "NS"]
_GIFT_MESSAGES = [
    "Happy birthday! Enjoy.",
    "Congratulations on the new place - thought this would fit right in.",
    "Thank you for everything this year.",
    "A little something to say welcome to the team.",
    "Merry everything and a happy always.",
    "Get well soon - thinking of you.",
]
_UTM_SOURCES = ["google", "newsletter", "instagram", "direct", "affiliate", "podcast", "referral"]

# Queue task kinds; the AI ones record which model ran them (column ai_model).
_TASK_KINDS = _weighted(
    ("send_order_confirmation", 22), ("deliver_webhook", 18), ("generate_invoice_pdf", 12),
    ("sync_inventory", 10), ("score_fraud_risk", 12), ("classify_product_review", 10),
    ("summarize_support_ticket", 8), ("recompute_recommendations", 8),
)
_AI_TASK_KINDS = [
    "score_fraud_risk", "classify_product_review", "summarize_support_ticket",
    "recompute_recommendations",
]
# Mostly successes; queued and running tasks are the recent backlog only.
_TASK_STATUSES = _weighted(
    ("succeeded", 94.5), ("failed", 2.8), ("dead", 1.0), ("queued", 1.2), ("running", 0.5),
)
_AI_MODELS = _weighted(
    ("gpt-4o-mini", 35), ("claude-3-5-haiku", 25), ("claude-sonnet-4", 15),
    ("gpt-4.1", 10), ("llama-3.1-8b-instruct", 15),
)
_TASK_ERRORS = [
    "TimeoutError: upstream did not respond within 30s",
    "ConnectionResetError: [Errno 104] Connection reset by peer",
    "RateLimitError: 429 Too Many Requests (retry after 20s)",
    "ValidationError: payload.order_id refers to a cancelled order",
    "psycopg.errors.LockNotAvailable: canceling statement due to lock timeout",
    "botocore.exceptions.ClientError: An error occurred (Throttling) when calling PutObject",
    "ModelOverloadedError: the model is currently overloaded, please retry",
    "KeyError: 'currency'",
]
_TRACEBACK_TAIL = (
    "\nTraceback (most recent call last):\n"
    '  File "/app/worker/runner.py", line 212, in run_task\n'
    "    result = handler(task.payload)\n"
    '  File "/app/worker/handlers.py", line 88, in handle\n'
    "    response = client.send(request, timeout=30)"
)
_WORDS = [
    "order", "customer", "delivery", "late", "package", "refund", "size", "colour", "quality",
    "great", "broken", "return", "exchange", "support", "tracking", "address", "payment",
    "charged", "twice", "discount", "coupon", "arrived", "damaged", "love", "product", "fits",
    "small", "large", "fabric", "soft", "recommend", "would", "again", "slow", "fast", "shipping",
    "box", "missing", "item", "invoice", "account", "password", "subscription", "cancel",
    "please", "help", "thanks", "the", "and", "was", "not", "very", "but", "it", "my", "a",
]

# fmt: on

# Constant parameters shared by every batch statement.
_CONSTANTS: dict[str, Any] = {
    "first_names": _FIRST_NAMES,
    "last_names": _LAST_NAMES,
    "accented": _ACCENTED,
    "plain": _PLAIN,
    "domains": _DOMAINS[0],
    "domain_cum": _DOMAINS[1],
    "currencies": _CURRENCIES[0],
    "currency_cum": _CURRENCIES[1],
    "adjectives": _ADJECTIVES,
    "materials": _MATERIALS,
    "products": _PRODUCTS,
    "carriers": _CARRIERS,
    "methods": _SHIPPING_METHODS[0],
    "method_cum": _SHIPPING_METHODS[1],
    "channels": _CHANNELS[0],
    "channel_cum": _CHANNELS[1],
    "us_states": _US_STATES,
    "eu_countries": _EU_COUNTRIES,
    "ca_provinces": _CA_PROVINCES,
    "gift_messages": _GIFT_MESSAGES,
    "utm_sources": _UTM_SOURCES,
    "task_kinds": _TASK_KINDS[0],
    "task_kind_cum": _TASK_KINDS[1],
    "ai_kinds": _AI_TASK_KINDS,
    "task_statuses": _TASK_STATUSES[0],
    "task_status_cum": _TASK_STATUSES[1],
    "ai_models": _AI_MODELS[0],
    "ai_model_cum": _AI_MODELS[1],
    "task_errors": _TASK_ERRORS,
    "traceback_tail": _TRACEBACK_TAIL,
    "words": _WORDS,
}

# --- SQL ----------------------------------------------------------------------
# Session-local helpers. Each body is one expression, so the planner inlines
# them (EXPLAIN VERBOSE shows hashint8extended, not the call). A stream number
# names a field; streams stay below 1000 because helpers derive sub-streams by
# adding multiples of 1000.

_HELPERS: tuple[LiteralString, ...] = (
    # Uniform [0, 1) from 53 hash bits.
    """
    CREATE OR REPLACE FUNCTION pg_temp.rg_u(stream integer, k bigint) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (hashint8extended(k, {seed} * 1000003 + stream) & 9007199254740991)::double precision
        / 9007199254740992.0
    """,
    # Standard normal (Box-Muller); 1 - u keeps ln() away from zero.
    """
    CREATE OR REPLACE FUNCTION pg_temp.rg_normal(stream integer, k bigint)
    RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN sqrt(-2 * ln(1 - pg_temp.rg_u(stream, k)))
        * cos(2 * pi() * pg_temp.rg_u(stream + 1000, k))
    """,
    # Uniform pick from an array.
    """
    CREATE OR REPLACE FUNCTION pg_temp.rg_pick(stream integer, k bigint, arr text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN arr[1 + floor(pg_temp.rg_u(stream, k) * cardinality(arr))::integer]
    """,
    # Weighted pick: cum holds the cumulative shares of all labels but the last.
    """
    CREATE OR REPLACE FUNCTION pg_temp.rg_choice(
        stream integer, k bigint, labels text[], cum double precision[]
    ) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN labels[1 + width_bucket(pg_temp.rg_u(stream, k), cum)]
    """,
    # Stripe-style random alphanumerics, up to 32: base64 of three hashes with
    # + and / mapped away (replace, because translate is 2-3x slower here).
    """
    CREATE OR REPLACE FUNCTION pg_temp.rg_alnum(stream integer, k bigint, len integer) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN substr(replace(replace(encode(
            int8send(hashint8extended(k, {seed} * 1000003 + stream))
            || int8send(hashint8extended(k, {seed} * 1000003 + stream + 1000))
            || int8send(hashint8extended(k, {seed} * 1000003 + stream + 2000)),
        'base64'), '+', 'K'), '/', 'q'), 1, len)
    """,
    # A moment in [lo, hi] (epoch seconds) shaped like traffic: activity grows
    # threefold across the span (inverse CDF of an exponential ramp), 30 % of
    # weekend days move to one of the five weekdays before, and the time of day
    # follows the hourly weights. mod(day + 3, 7) is the ISO weekday - 1 of a
    # day number (1970-01-01 was a Thursday), free of the session's TimeZone.
    # The day number is spelled out thrice rather than passed to a helper,
    # which would stop the planner from inlining it.
    """
    CREATE OR REPLACE FUNCTION pg_temp.rg_ts(
        stream integer, k bigint, lo double precision, hi double precision
    ) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN to_timestamp(least(hi, greatest(lo,
        86400 * (
            floor((lo + ln(1 + 2 * pg_temp.rg_u(stream, k)) / ln(3) * (hi - lo)) / 86400)
            - CASE
                WHEN pg_temp.rg_u(stream + 1000, k) < 0.3 AND mod(floor(
                    (lo + ln(1 + 2 * pg_temp.rg_u(stream, k)) / ln(3) * (hi - lo)) / 86400
                )::bigint + 3, 7) >= 5
                THEN mod(floor(
                    (lo + ln(1 + 2 * pg_temp.rg_u(stream, k)) / ln(3) * (hi - lo)) / 86400
                )::bigint + 3, 7) - 4 + floor(5 * pg_temp.rg_u(stream + 4000, k))
                ELSE 0 END
        )
        + 3600 * (
            width_bucket(pg_temp.rg_u(stream + 2000, k), {hours})
            + pg_temp.rg_u(stream + 3000, k)
        )
    )))
    """,
)
_DROP_HELPERS: LiteralString = """
    DROP FUNCTION IF EXISTS pg_temp.rg_ts(integer, bigint, double precision, double precision),
        pg_temp.rg_alnum(integer, bigint, integer),
        pg_temp.rg_choice(integer, bigint, text[], double precision[]),
        pg_temp.rg_pick(integer, bigint, text[]),
        pg_temp.rg_normal(integer, bigint),
        pg_temp.rg_u(integer, bigint)
"""

# One population slice: customers, their whole order history, and the
# payment events of those orders, chained through RETURNING so orders point
# at the ids Postgres just generated (identity columns are GENERATED ALWAYS).
#
# Keys: a customer's row number n (ids continue after the current max, so n
# is unique across runs and makes the email unique); an order's key is
# customer id * 1024 + ordinal (at most 1000 orders each); an item's is
# order key * 32 + line; an event's is order id * 4 + kind.
_POPULATION_SQL: LiteralString = """
WITH new_customers AS (
    INSERT INTO public.customers (name, email, created_at, updated_at)
    SELECT
        p.first_name || ' '
            || CASE WHEN pg_temp.rg_u(103, p.n) < 0.08
                    THEN chr(65 + floor(pg_temp.rg_u(104, p.n) * 26)::integer) || '. '
                    ELSE '' END
            || p.last_name,
        CASE WHEN pg_temp.rg_u(105, p.n) < 0.04 THEN initcap(p.local) ELSE p.local END
            || p.n::text || '@'
            || pg_temp.rg_choice(106, p.n, %(domains)s, %(domain_cum)s),
        p.created_at,
        -- A third of customers edited their profile at some point since.
        CASE WHEN pg_temp.rg_u(107, p.n) < 0.33
             THEN p.created_at + (%(until)s - p.created_at) * pg_temp.rg_u(108, p.n)
             ELSE p.created_at END
    FROM (
        SELECT
            s.n, s.first_name, s.last_name, s.created_at,
            CASE WHEN pg_temp.rg_u(102, s.n) < 0.55 THEN s.first_slug || '.' || s.last_slug
                 WHEN pg_temp.rg_u(102, s.n) < 0.75 THEN left(s.first_slug, 1) || s.last_slug
                 WHEN pg_temp.rg_u(102, s.n) < 0.90 THEN s.first_slug || '_' || s.last_slug
                 ELSE s.last_slug || '.' || s.first_slug END AS local
        FROM (
            SELECT
                g.n, f.first_name, l.last_name,
                translate(lower(f.first_name), %(accented)s, %(plain)s) AS first_slug,
                translate(lower(l.last_name), %(accented)s, %(plain)s) AS last_slug,
                pg_temp.rg_ts(109, g.n, %(start_epoch)s, %(until_epoch)s) AS created_at
            FROM generate_series(%(first_n)s::bigint, %(last_n)s::bigint) AS g (n)
            CROSS JOIN LATERAL (
                SELECT pg_temp.rg_pick(100, g.n, %(first_names)s) AS first_name) AS f
            CROSS JOIN LATERAL (
                SELECT pg_temp.rg_pick(101, g.n, %(last_names)s) AS last_name) AS l
            OFFSET 0
        ) AS s
        OFFSET 0
    ) AS p
    RETURNING id, created_at
),
order_slots AS (
    -- Orders per customer: 55 %% signed up at checkout and have that first
    -- order; on top, a Lomax (Pareto II) draw with shape 1.2, scaled by how
    -- much of the history the customer has been around for. Most end up with
    -- 0-3, a few old ones with hundreds (capped: see _max_orders_per_customer).
    SELECT
        c.id AS customer_id, c.created_at AS customer_since, c.id * 1024 + k.i AS ok,
        k.i = 1 AND pg_temp.rg_u(121, c.id) < 0.55 AS at_signup
    FROM new_customers AS c
    CROSS JOIN LATERAL generate_series(1, least(%(max_orders)s::integer,
        (pg_temp.rg_u(121, c.id) < 0.55)::integer
        + floor((%(until_epoch)s - extract(epoch FROM c.created_at)) / %(span_seconds)s
                * 1.4 * (power(1 - pg_temp.rg_u(120, c.id), -1 / 1.2) - 1))::integer
    )) AS k (i)
),
order_rows AS (
    SELECT
        o.customer_id, o.ok,
        CASE WHEN o.at_signup
             THEN least(%(until)s, o.customer_since
                        + interval '1 minute' * (1 + 14 * pg_temp.rg_u(200, o.ok)))
             ELSE pg_temp.rg_ts(
                 201, o.ok, extract(epoch FROM o.customer_since), %(until_epoch)s)
        END AS created_at,
        pg_temp.rg_choice(202, o.ok, %(currencies)s, %(currency_cum)s) AS currency,
        -- Line items: 1 for ~60 %% of orders, a Lomax tail up to 40 (1 %% have 20+).
        1 + least(39, floor(1.2 * (power(1 - pg_temp.rg_u(203, o.ok), -1 / 1.6) - 1)))::integer
            AS n_items
    FROM order_slots AS o
    OFFSET 0
),
priced_orders AS (
    SELECT
        r.*, li.items, li.subtotal,
        CASE r.currency WHEN 'usd' THEN 'US' WHEN 'gbp' THEN 'GB' WHEN 'cad' THEN 'CA'
            WHEN 'aud' THEN 'AU' WHEN 'jpy' THEN 'JP'
            ELSE pg_temp.rg_pick(204, r.ok, %(eu_countries)s) END AS country,
        extract(epoch FROM %(until)s - r.created_at) / 86400 AS age_days,
        CASE WHEN pg_temp.rg_u(205, r.ok) < 0.12 THEN 10 + 5 * floor(pg_temp.rg_u(206, r.ok) * 3)
             ELSE 0 END AS discount_pct
    FROM order_rows AS r
    CROSS JOIN LATERAL (
        SELECT
            jsonb_agg(jsonb_build_object(
                'sku', 'SKU-' || lpad(it.product::text, 5, '0'),
                'name', it.name,
                'qty', it.qty,
                'unit_price_minor', it.price,
                'line_total_minor', it.qty * it.price
            ) ORDER BY it.line) AS items,
            sum(it.qty * it.price)::bigint AS subtotal
        FROM (
            SELECT
                s.line, pr.product,
                (%(adjectives)s::text[])[1 + pr.product %% 20] || ' '
                || (%(materials)s::text[])[1 + (pr.product / 20) %% 15] || ' '
                || (%(products)s::text[])[1 + (pr.product / 300) %% 25] AS name,
                1 + least(11, floor(-ln(1 - pg_temp.rg_u(302, r.ok * 32 + s.line)) * 0.83))::integer
                    AS qty,
                -- A product's price is fixed (keyed on the product, log-normal
                -- around $24, ending in 99), converted at rough exchange rates.
                round((greatest(1, round(
                           exp(7.78 + 0.9 * pg_temp.rg_normal(303, pr.product)) / 100
                       )) * 100 - 1)
                      * CASE r.currency WHEN 'eur' THEN 0.92 WHEN 'gbp' THEN 0.79
                            WHEN 'cad' THEN 1.36 WHEN 'aud' THEN 1.52 WHEN 'jpy' THEN 1.5
                            ELSE 1 END)::bigint AS price
            FROM generate_series(1, r.n_items) AS s (line)
            -- Popularity is skewed: low product numbers sell far more often.
            CROSS JOIN LATERAL (
                SELECT floor(5000 * power(pg_temp.rg_u(301, r.ok * 32 + s.line), 2.5))::integer
                    AS product
            ) AS pr
            OFFSET 0
        ) AS it
    ) AS li
    OFFSET 0
),
new_orders AS (
    INSERT INTO public.orders (customer_id, order_details, created_at, updated_at)
    SELECT
        q.customer_id,
        jsonb_build_object(
            'order_number', 'R' || q.ok::text,
            'status', q.status,
            'channel', pg_temp.rg_choice(210, q.ok, %(channels)s, %(channel_cum)s),
            'currency', q.currency,
            'items', q.items,
            'subtotal_minor', q.subtotal,
            'discount_minor', q.discount,
            'shipping_minor', q.shipping,
            'tax_minor', q.tax,
            'total_minor', q.subtotal - q.discount + q.shipping + q.tax,
            'coupon', CASE WHEN q.discount_pct > 0 THEN 'SAVE' || q.discount_pct::text END,
            -- Shipping without addresses: country and region codes only.
            'shipping', jsonb_build_object(
                'method', q.method,
                'carrier', CASE WHEN q.method = 'pickup' THEN NULL
                                ELSE pg_temp.rg_pick(211, q.ok, %(carriers)s) END,
                'country', q.country,
                'region', CASE q.country
                    WHEN 'US' THEN pg_temp.rg_pick(212, q.ok, %(us_states)s)
                    WHEN 'CA' THEN pg_temp.rg_pick(212, q.ok, %(ca_provinces)s) END,
                'tracking_number', CASE WHEN q.method <> 'pickup'
                    THEN '1Z' || upper(pg_temp.rg_alnum(213, q.ok, 16)) END
            ),
            'gift_message', CASE WHEN pg_temp.rg_u(214, q.ok) < 0.05
                THEN pg_temp.rg_pick(215, q.ok, %(gift_messages)s) END,
            'marketing', jsonb_build_object(
                'utm_source', pg_temp.rg_pick(216, q.ok, %(utm_sources)s),
                'session_id', pg_temp.rg_alnum(217, q.ok, 24)
            )
        ),
        q.created_at,
        -- Last touched when it shipped or was delivered, never in the future.
        least(%(until)s, q.created_at + CASE q.status
            WHEN 'processing' THEN interval '10 minutes' * pg_temp.rg_u(218, q.ok)
            WHEN 'shipped' THEN interval '2 days' * pg_temp.rg_u(218, q.ok)
            ELSE interval '2 days' + interval '6 days' * pg_temp.rg_u(218, q.ok) END)
    FROM (
        SELECT
            m.*,
            (m.subtotal * m.discount_pct / 100)::bigint AS discount,
            CASE WHEN m.method = 'pickup' OR m.subtotal >= 5000 THEN 0
                 WHEN m.method = 'standard' THEN 499
                 ELSE 1499 END AS shipping,
            -- US sales tax is added on top; elsewhere VAT is included in prices.
            CASE WHEN m.country = 'US' THEN (m.subtotal * 0.0725)::bigint ELSE 0 END AS tax,
            CASE WHEN m.age_days < 1 THEN 'processing'
                 WHEN m.age_days < 4 THEN 'shipped'
                 WHEN pg_temp.rg_u(219, m.ok) < 0.03 THEN 'cancelled'
                 WHEN pg_temp.rg_u(219, m.ok) < 0.05 THEN 'refunded'
                 WHEN pg_temp.rg_u(219, m.ok) < 0.07 THEN 'returned'
                 ELSE 'delivered' END AS status
        FROM (
            SELECT p.*, pg_temp.rg_choice(220, p.ok, %(methods)s, %(method_cum)s) AS method
            FROM priced_orders AS p
            OFFSET 0
        ) AS m
        OFFSET 0
    ) AS q
    RETURNING id, customer_id, created_at, order_details ->> 'status' AS status,
        (order_details ->> 'total_minor')::bigint AS total_minor,
        order_details ->> 'currency' AS currency
),
new_events AS (
    -- Webhooks follow the orders: one payment event each, a failed attempt
    -- before 4 %%, a refund after refunded/returned ones, rare disputes.
    INSERT INTO public.payment_events
        (stripe_event_id, event_type, amount_minor, currency, customer_id, received_at)
    SELECT
        'evt_1' || pg_temp.rg_alnum(401, o.id * 4 + e.kind, 17) || to_hex(o.id * 4 + e.kind),
        CASE e.kind
            WHEN 0 THEN CASE WHEN pg_temp.rg_u(402, o.id) < 0.55 THEN 'charge.succeeded'
                             WHEN pg_temp.rg_u(402, o.id) < 0.80 THEN 'payment_intent.succeeded'
                             WHEN pg_temp.rg_u(402, o.id) < 0.90 THEN 'checkout.session.completed'
                             ELSE 'invoice.paid' END
            WHEN 1 THEN CASE WHEN pg_temp.rg_u(403, o.id) < 0.7 THEN 'charge.failed'
                             ELSE 'payment_intent.payment_failed' END
            WHEN 2 THEN 'charge.refunded'
            ELSE 'charge.dispute.created' END,
        CASE WHEN e.kind = 2 AND pg_temp.rg_u(404, o.id) < 0.3
             THEN (o.total_minor * (0.2 + 0.6 * pg_temp.rg_u(405, o.id)))::bigint
             ELSE o.total_minor END,
        o.currency,
        -- Guest checkouts and webhooks that arrived before the customer was linked.
        CASE WHEN pg_temp.rg_u(406, o.id * 4 + e.kind) < 0.06 THEN NULL ELSE o.customer_id END,
        least(%(until)s, o.created_at + CASE e.kind
            WHEN 0 THEN interval '1 second' * exp(0.7 + 0.8 * pg_temp.rg_normal(407, o.id))
            WHEN 1 THEN interval '-1 minute' * (1 + 9 * pg_temp.rg_u(408, o.id))
            WHEN 2 THEN interval '3 days' + interval '20 days' * pg_temp.rg_u(409, o.id)
            ELSE interval '10 days' + interval '50 days' * pg_temp.rg_u(410, o.id) END)
    FROM new_orders AS o
    CROSS JOIN (VALUES (0), (1), (2), (3)) AS e (kind)
    WHERE e.kind = 0
       OR (e.kind = 1 AND pg_temp.rg_u(411, o.id) < 0.04)
       OR (e.kind = 2 AND o.status IN ('refunded', 'returned'))
       OR (e.kind = 3 AND pg_temp.rg_u(412, o.id) < 0.003)
    RETURNING 1
)
SELECT
    (SELECT count(*) FROM new_customers),
    (SELECT count(*) FROM new_orders),
    (SELECT count(*) FROM new_events),
    (SELECT min(id) FROM new_customers),
    (SELECT max(id) FROM new_customers),
    (SELECT min(id) FROM new_orders),
    (SELECT max(id) FROM new_orders)
"""

# Queue history: mostly successes spread over two years; queued and running
# tasks are the last hours' backlog. Keyed on row number n (ids continue after
# the current max). Payloads point at this batch's orders and customers.
_TASKS_SQL: LiteralString = """
INSERT INTO public.execution_tasks
    (status, payload, attempts, last_error, created_at, updated_at, started_at, finished_at
     {ai_column})
SELECT
    t.status,
    jsonb_build_object(
        'task', t.kind,
        'version', 3,
        'queue', CASE WHEN t.is_ai THEN 'ai' WHEN t.kind = 'deliver_webhook' THEN 'webhooks'
                      ELSE 'default' END,
        'request_id', 'req_' || pg_temp.rg_alnum(510, t.n, 20),
        'enqueued_by', CASE WHEN pg_temp.rg_u(511, t.n) < 0.7 THEN 'api' ELSE 'scheduler' END,
        'order_id', %(o_lo)s::bigint
            + floor(pg_temp.rg_u(512, t.n) * (%(o_hi)s::bigint - %(o_lo)s::bigint + 1))::bigint,
        'customer_id', %(c_lo)s::bigint
            + floor(pg_temp.rg_u(513, t.n) * (%(c_hi)s::bigint - %(c_lo)s::bigint + 1))::bigint,
        'args', CASE
            WHEN t.is_ai THEN jsonb_build_object(
                'prompt_template', replace(t.kind, '_', '-') || '-v' || (1 + t.n %% 5)::text,
                'temperature', 0.2,
                'max_output_tokens', 1024,
                -- The text sent to the model: tens to hundreds of words.
                'input', (
                    SELECT string_agg(pg_temp.rg_pick(515, t.n * 512 + w.i, %(words)s), ' ')
                    FROM generate_series(
                        1, 12 + floor(300 * power(pg_temp.rg_u(514, t.n), 2))::integer
                    ) AS w (i)
                ))
            WHEN t.kind = 'deliver_webhook' THEN jsonb_build_object(
                'url', 'https://hooks.example.com/endpoint/' || pg_temp.rg_alnum(516, t.n, 12),
                'event', 'order.updated',
                'timeout_seconds', 10)
            ELSE jsonb_build_object(
                'template', t.kind || '_v7',
                'locale', CASE WHEN pg_temp.rg_u(517, t.n) < 0.8 THEN 'en-US' ELSE 'de-DE' END)
        END
    ),
    t.attempts,
    CASE WHEN t.status IN ('failed', 'dead') THEN
        pg_temp.rg_pick(520, t.n, %(task_errors)s)
        || CASE WHEN pg_temp.rg_u(521, t.n) < 0.3 THEN %(traceback_tail)s ELSE '' END
    END,
    t.created_at,
    coalesce(t.finished_at, t.started_at, t.created_at),
    t.started_at,
    t.finished_at{ai_value}
FROM (
    SELECT
        b.*,
        CASE WHEN b.status IN ('succeeded', 'failed', 'dead')
             -- Runtimes are log-normal: about a second, ten times that for AI.
             THEN least(%(until)s, b.started_at + interval '1 second'
                  * exp(-0.2 + 1.0 * pg_temp.rg_normal(530, b.n))
                  * CASE WHEN b.is_ai THEN 10 ELSE 1 END)
        END AS finished_at
    FROM (
        SELECT
            a.*,
            CASE WHEN a.status <> 'queued'
                 -- Queue wait (log-normal, about 1.5 s) plus retry backoff.
                 THEN least(%(until)s, a.created_at + interval '1 second'
                      * (exp(0.4 + 1.2 * pg_temp.rg_normal(531, a.n))
                         + 30 * (power(2, a.attempts) - 2) * (a.attempts > 1)::integer))
            END AS started_at
        FROM (
            SELECT
                k.n, k.status, k.kind, k.kind = ANY (%(ai_kinds)s) AS is_ai,
                CASE k.status
                    WHEN 'queued'
                        THEN to_timestamp(%(until_epoch)s - 7200 * pg_temp.rg_u(532, k.n))
                    WHEN 'running'
                        THEN to_timestamp(%(until_epoch)s - 1800 * pg_temp.rg_u(532, k.n))
                    ELSE pg_temp.rg_ts(533, k.n, %(start_epoch)s, %(until_epoch)s - 3600)
                END AS created_at,
                -- Attempts 0-5, skewed low; dead means the queue gave up after 5.
                CASE k.status
                    WHEN 'queued' THEN CASE WHEN pg_temp.rg_u(534, k.n) < 0.85 THEN 0
                                            ELSE 1 + floor(2 * pg_temp.rg_u(535, k.n))::integer END
                    WHEN 'running' THEN 1 + floor(3 * power(pg_temp.rg_u(534, k.n), 3))::integer
                    WHEN 'succeeded'
                        THEN 1 + least(4, floor(-ln(1 - pg_temp.rg_u(534, k.n)) * 0.3))::integer
                    WHEN 'failed' THEN 1 + floor(4 * power(pg_temp.rg_u(534, k.n), 1.5))::integer
                    ELSE 5 END AS attempts
            FROM (
                SELECT
                    g.n,
                    pg_temp.rg_choice(500, g.n, %(task_statuses)s, %(task_status_cum)s) AS status,
                    pg_temp.rg_choice(501, g.n, %(task_kinds)s, %(task_kind_cum)s) AS kind
                FROM generate_series(%(first_n)s::bigint, %(last_n)s::bigint) AS g (n)
                OFFSET 0
            ) AS k
            OFFSET 0
        ) AS a
        OFFSET 0
    ) AS b
    OFFSET 0
) AS t
"""
# Models are recorded since 0002 shipped (six months back); older AI tasks
# and non-AI tasks have none, and 8 % of recent AI tasks failed before a
# model was picked.
_AI_VALUE: LiteralString = """,
    CASE WHEN t.is_ai AND t.created_at >= %(until)s - interval '180 days'
              AND pg_temp.rg_u(540, t.n) >= 0.08
         THEN pg_temp.rg_choice(541, t.n, %(ai_models)s, %(ai_model_cum)s) END"""

_MEASURE_SQL: LiteralString = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relname = ANY (%s)
"""

_COLUMNS_SQL: LiteralString = """
SELECT c.relname, a.attname
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute AS a
    ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = 'public' AND c.relname = ANY (%s) AND c.relkind IN ('r', 'p')
"""


# --- the verb -----------------------------------------------------------------


def generate_sample(
    conn: psycopg.Connection[Any],
    target_bytes: int,
    *,
    seed: int = 42,
    progress: Progress | None = None,
    until: datetime | None = None,
    max_bytes: int | None = None,
) -> SampleReport:
    """Fill the migrated database behind ``conn`` until its four tables hold
    about ``target_bytes`` (within half a batch, ~1-3 %), and report.

    Every batch commits on its own, so an interrupt (KeyboardInterrupt cancels
    the running statement) leaves all earlier batches in place and the data
    consistent. ``progress`` is called after each committed batch.
    ``until`` ends the generated history (default: today, 00:00 UTC, so runs on
    the same day with the same seed produce the same rows).

    Raises ``CannotRun`` for a bad target or seed, a connection inside a
    transaction, or a role lacking a privilege the run needs; ``CheckFailed``
    (before anything is written) when the target exceeds ``max_bytes`` or the
    server's known free disk space, another run holds the sample lock, the
    schema is not migrated, or the tables already hold more than ``target_bytes``.
    """
    started = time.monotonic()
    if target_bytes <= 0:
        raise CannotRun(f"sample target must be a positive number of bytes, got {target_bytes}")
    if not 0 <= seed <= MAX_SEED:
        raise CannotRun(f"sample seed must be between 0 and {MAX_SEED}, got {seed}")
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise CannotRun(
            "generate_sample commits one transaction per batch, so it needs a connection "
            "with no transaction open: commit or roll back first"
        )
    if max_bytes is not None and target_bytes > max_bytes:
        raise CheckFailed(
            f"refusing to add sample data: the target {_pretty(target_bytes)} is above the "
            f"cap of {_pretty(max_bytes)}; nothing was written. Pass a larger --max-size "
            "if you mean it",
            details={"target_bytes": target_bytes, "max_bytes": max_bytes},
        )
    until = _resolve_until(until)
    _take_sample_lock(conn)
    try:
        return _fill(conn, target_bytes, seed=seed, progress=progress, until=until, started=started)
    finally:
        _release_sample_lock(conn)


def _fill(
    conn: psycopg.Connection[Any],
    target_bytes: int,
    *,
    seed: int,
    progress: Progress | None,
    until: datetime,
    started: float,
) -> SampleReport:
    """generate_sample's work, under the sample lock."""
    has_ai_model = _check_schema(conn)
    _check_privileges(conn)
    bytes_before = _measure(conn)
    if bytes_before > target_bytes:
        raise CheckFailed(
            f"refusing to add sample data: the tables {', '.join(TABLES)} already hold "
            f"{_pretty(bytes_before)}, more than the target {_pretty(target_bytes)}; "
            "use a fresh database or a larger size",
            details={"bytes_before": bytes_before, "target_bytes": target_bytes},
        )
    disk = _check_free_space(conn, target_bytes - bytes_before)

    customers_per_batch = max(
        1, min(_MAX_BATCH_BYTES, target_bytes // _BATCHES_PER_RUN) // _EST_BYTES_PER_CUSTOMER
    )
    params = {
        **_CONSTANTS,
        "until": until,
        "until_epoch": until.timestamp(),
        "start_epoch": (until - HISTORY).timestamp(),
        "span_seconds": HISTORY.total_seconds(),
        "max_orders": _max_orders_per_customer(target_bytes),
    }
    tasks_sql = sql.SQL(_TASKS_SQL).format(
        ai_column=sql.SQL(", ai_model" if has_ai_model else ""),
        ai_value=sql.SQL(_AI_VALUE if has_ai_model else ""),
    )
    rows = dict.fromkeys(TABLES, 0)
    bytes_now, batches = bytes_before, 0
    expected_batch_bytes = float(customers_per_batch * _EST_BYTES_PER_CUSTOMER)

    _create_helpers(conn, seed)
    try:
        # Stop as soon as one more batch would overshoot by more than it
        # would undershoot: the final size lands within half a batch.
        while bytes_now + expected_batch_bytes / 2 < target_bytes:
            with conn.transaction():
                added = _insert_batch(conn, params, tasks_sql, customers_per_batch)
            batches += 1
            for table, count in added.items():
                rows[table] += count
            bytes_now = _measure(conn)
            expected_batch_bytes = max(1.0, (bytes_now - bytes_before) / batches)
            if progress is not None:
                progress(
                    SampleProgress(
                        batch=batches,
                        bytes_now=bytes_now,
                        bytes_before=bytes_before,
                        target_bytes=target_bytes,
                        rows=dict(rows),
                        elapsed_seconds=time.monotonic() - started,
                    )
                )
        if batches:
            # Fresh planner statistics, as production tables have; ANALYZE
            # writes only to the catalog, so the measured size is unchanged.
            with conn.transaction():
                conn.execute(
                    "ANALYZE public.customers, public.orders, "
                    "public.execution_tasks, public.payment_events"
                )
        with conn.transaction():
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        database_bytes = int(row[0]) if row else 0
    finally:
        _drop_helpers(conn)

    return SampleReport(
        target_bytes=target_bytes,
        bytes_before=bytes_before,
        bytes_after=bytes_now,
        database_bytes_after=database_bytes,
        rows=rows,
        batches=batches,
        elapsed_seconds=round(time.monotonic() - started, 3),
        seed=seed,
        until=until.isoformat(),
        ai_model_filled=has_ai_model,
        server_disk=disk,
    )


# --- steps --------------------------------------------------------------------


def _resolve_until(until: datetime | None) -> datetime:
    if until is None:
        now = datetime.now(UTC)
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if until.tzinfo is None:
        raise CannotRun(f"sample 'until' must be timezone-aware, got naive {until.isoformat()}")
    return until


def _check_schema(conn: psycopg.Connection[Any]) -> bool:
    """Refuse an unmigrated database; return whether execution_tasks has ai_model."""
    with conn.transaction():
        found = conn.execute(_COLUMNS_SQL, (list(TABLES),)).fetchall()
    columns: dict[str, set[str]] = {}
    for table, column in found:
        columns.setdefault(table, set()).add(column)
    missing_tables = [table for table in TABLES if table not in columns]
    if missing_tables:
        raise CheckFailed(
            "refusing to add sample data: the database is not migrated "
            f"(missing table(s): {', '.join('public.' + t for t in missing_tables)}); "
            "apply the migrations first (rollgate db migrate)",
            details={"missing_tables": missing_tables},
        )
    missing_columns = [
        f"public.{table}.{column}"
        for table, wanted in _REQUIRED_COLUMNS.items()
        for column in wanted
        if column not in columns[table]
    ]
    if missing_columns:
        raise CheckFailed(
            "refusing to add sample data: the tables do not match db/schema.sql "
            f"(missing column(s): {', '.join(missing_columns)}); apply the migrations first",
            details={"missing_columns": missing_columns},
        )
    return _OPTIONAL_AI_MODEL in columns["execution_tasks"]


def _take_sample_lock(conn: psycopg.Connection[Any]) -> None:
    """Hold the sample lock for this session, or refuse: another run is filling these tables."""
    with conn.transaction():
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (SAMPLE_LOCK_KEY,)).fetchone()
    if row is not None and row[0]:
        return
    holder = advisory_lock_holder(conn, SAMPLE_LOCK_KEY)
    raise CheckFailed(
        f"another sample run holds the sample lock on this database ({holder}); nothing was "
        "written. Wait for it to finish: a run with the same seed afterwards only tops up "
        "to its target",
        details={"holder": holder},
    )


def _release_sample_lock(conn: psycopg.Connection[Any]) -> None:
    # A lost session has released it already; otherwise unlock explicitly,
    # since the caller may keep using the connection.
    if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_unlock(%s)", (SAMPLE_LOCK_KEY,))
    except psycopg.Error:
        pass


_PRIVILEGES_SQL: LiteralString = """
SELECT
    current_user,
    has_database_privilege(current_database(), 'TEMPORARY'),
    has_schema_privilege('public', 'USAGE'),
    coalesce(array_agg(c.relname) FILTER (WHERE NOT has_table_privilege(c.oid, 'SELECT')), '{}'),
    coalesce(array_agg(c.relname) FILTER (WHERE NOT has_table_privilege(c.oid, 'INSERT')), '{}')
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relname = ANY (%s) AND c.relkind IN ('r', 'p')
"""


def _check_privileges(conn: psycopg.Connection[Any]) -> None:
    """Refuse up front, naming each missing privilege, rather than fail mid-batch."""
    with conn.transaction():
        row = conn.execute(_PRIVILEGES_SQL, (list(TABLES),)).fetchone()
    assert row is not None  # an aggregate row always comes back
    role, may_create_temp, may_use_schema, no_select, no_insert = row
    missing = [
        f"{privilege} on {', '.join('public.' + table for table in TABLES if table in lacking)}"
        for privilege, lacking in (("SELECT", no_select), ("INSERT", no_insert))
        if lacking
    ]
    if not may_use_schema:
        missing.append("USAGE on schema public")
    if not may_create_temp:
        missing.append("TEMPORARY on the database (for session-local helper functions)")
    if missing:
        raise CannotRun(
            f"refusing to add sample data: the role {role!r} lacks {'; '.join(missing)}. "
            f"Grant them (e.g. GRANT SELECT, INSERT ON {', '.join(TABLES)} TO {role}) or run "
            "as the tables' owner",
            details={"role": role, "missing_privileges": missing},
        )


def _check_free_space(conn: psycopg.Connection[Any], bytes_to_add: int) -> dict[str, Any]:
    """Refuse a run the server's disk cannot hold, when its free space is known here."""
    disk = server_disk(conn)
    if disk.free_bytes is None:
        return disk.to_dict()
    with conn.transaction():
        row = conn.execute("SELECT pg_size_bytes(current_setting('max_wal_size'))").fetchone()
    max_wal = int(row[0]) if row else 0
    needed = bytes_to_add + min(bytes_to_add, max_wal)
    if needed > disk.free_bytes:
        raise CheckFailed(
            f"refusing to add sample data: {_pretty(bytes_to_add)} more (about "
            f"{_pretty(needed)} with its WAL) does not fit in the {_pretty(disk.free_bytes)} "
            f"free on the server's disk ({disk.directory}); nothing was written. Choose a "
            "smaller --size or free space first",
            details={**disk.to_dict(), "needed_bytes": needed},
        )
    return {**disk.to_dict(), "needed_bytes": needed}


def _measure(conn: psycopg.Connection[Any]) -> int:
    # Inside a transaction block even for a read: on a non-autocommit
    # connection a bare execute would open a transaction that swallows the
    # next batch's COMMIT into a savepoint.
    with conn.transaction():
        row = conn.execute(_MEASURE_SQL, (list(TABLES),)).fetchone()
    return int(row[0]) if row else 0


def _create_helpers(conn: psycopg.Connection[Any], seed: int) -> None:
    hours = sql.SQL("ARRAY[{}]::double precision[]").format(
        sql.SQL(", ").join(sql.Literal(h) for h in _HOURS_CUMULATIVE)
    )
    with conn.transaction():
        for text in _HELPERS:
            conn.execute(sql.SQL(text).format(seed=sql.Literal(seed), hours=hours))


def _drop_helpers(conn: psycopg.Connection[Any]) -> None:
    # Best effort: after a cancelled statement or a lost connection the
    # helpers die with the session anyway.
    if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return
    try:
        with conn.transaction():
            conn.execute(_DROP_HELPERS)
    except psycopg.Error:
        pass


def _insert_batch(
    conn: psycopg.Connection[Any],
    params: dict[str, Any],
    tasks_sql: sql.Composed,
    customers: int,
) -> dict[str, int]:
    """One population slice plus its queue tasks; the caller holds the transaction."""
    base = _max_ids(conn)
    population = conn.execute(
        _POPULATION_SQL,
        {**params, "first_n": base["customers"] + 1, "last_n": base["customers"] + customers},
    ).fetchone()
    assert population is not None  # an aggregate row always comes back
    n_customers, n_orders, n_events, c_lo, c_hi, o_lo, o_hi = population
    tasks = customers * _TASKS_PER_CUSTOMER
    cursor = conn.execute(
        tasks_sql,
        {
            **params,
            "first_n": base["execution_tasks"] + 1,
            "last_n": base["execution_tasks"] + tasks,
            # A batch with no orders (tiny targets) leaves order_id null.
            "c_lo": c_lo,
            "c_hi": c_hi,
            "o_lo": o_lo,
            "o_hi": o_hi,
        },
    )
    return {
        "customers": int(n_customers),
        "orders": int(n_orders),
        "execution_tasks": cursor.rowcount,
        "payment_events": int(n_events),
    }


def _max_orders_per_customer(target_bytes: int) -> int:
    """Cap one customer's orders at ~2 % of the target (and 1000 at most).

    The order tail is heavy enough that one customer can weigh a megabyte,
    which on a small target would overshoot it in a single batch. A smaller
    population has a smaller largest customer anyway, so the cap keeps the
    shape while keeping the size on target. 1024 ordinals fit in an order key.
    """
    return max(20, min(1000, int(0.02 * target_bytes / _EST_BYTES_PER_ORDER)))


def _max_ids(conn: psycopg.Connection[Any]) -> dict[str, int]:
    row = conn.execute(
        "SELECT (SELECT coalesce(max(id), 0) FROM public.customers),"
        " (SELECT coalesce(max(id), 0) FROM public.execution_tasks)"
    ).fetchone()
    assert row is not None
    return {"customers": int(row[0]), "execution_tasks": int(row[1])}


def _pretty(size: int) -> str:
    """Bytes as a person reads them, 1024-based like pg_size_pretty."""
    if size < 10 * 1024:
        return f"{size} bytes"
    scaled = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        scaled /= 1024
        if scaled < 10 * 1024 or unit == "TB":
            break
    return f"{scaled:.1f} {unit}"
