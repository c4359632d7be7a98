"""Adversarial input: generated invalid rows must be rejected by the live constraints.

For every kind of fault (a malformed email, a non-object JSON document, an
unknown status, a negative amount, a NULL in a NOT NULL column, an over-long
string, a reference to no row...) hypothesis generates values, and each is
inserted into the app's table in its own savepoint. Postgres must refuse it
with an integrity (23xxx) or data (22xxx) error; a row it *accepts* means a
constraint is missing (dropped behind Rollgate's back) and fails the check,
with the smallest such row hypothesis could find.

It leaves no trace:

* everything happens in one transaction that always ends in ROLLBACK, with
  ``SET LOCAL lock_timeout`` / ``statement_timeout`` small, so the audit gives
  up instead of queueing behind (or in front of) the application's writers;
* probe rows carry explicit ids (``OVERRIDING SYSTEM VALUE``) from a reserved
  negative value, so no identity sequence is advanced;
* the probed tables' checksums and sequence positions are read before and
  after, from separate sessions, and must match; if the application wrote in
  between, the proof falls back to "no probe id remains" and says so.

A role without INSERT (a strictly read-only audit role) makes the check
"not run": a permission error proves nothing about the constraints.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from core.postgres import connect
from db.checksums import table_checksums
from release.audit.model import CheckResult, Finding, NotRunnable, Status, verdict
from release.audit.thresholds import Thresholds

#: Every probe row takes this id; no identity column hands out negative values.
PROBE_ID = -424_242
_EMAIL_SHAPE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class _Accepted(Exception):
    """The database accepted a row that should have been refused."""

    def __init__(self, table: str, values: dict[str, Any]) -> None:
        super().__init__(f"{table} accepted {values!r}")
        self.table = table
        self.values = values


@dataclass(frozen=True)
class Fault:
    """One kind of invalid row: which table, which columns, and how to generate values."""

    table: str
    name: str
    strategy: Callable[[], Any]  # returns a hypothesis strategy of {column: value}
    #: Only a foreign key refuses it (temporary copies of the tables carry none).
    foreign_key: bool = False


@dataclass
class _Tally:
    tried: int = 0
    rejected_by: dict[str, int] = field(default_factory=dict)


def _faults(token: str) -> list[Fault]:
    from hypothesis import strategies as st

    def col(name: str, values: Any) -> Callable[[], Any]:
        return lambda: values.map(lambda v: {name: v})

    null = st.just(None)
    not_object = st.one_of(
        st.lists(st.integers(), max_size=3),
        st.integers(),
        st.text(max_size=5),
        st.booleans(),
        st.none(),
    ).map(Jsonb)
    missing_ref = st.integers(-(2**62), -1).filter(lambda v: v != PROBE_ID)
    bad_email = st.text(alphabet="ab.@ \t-_1", max_size=30).filter(
        lambda s: not _EMAIL_SHAPE.fullmatch(s)
    )
    long_email = st.integers(255, 400).map(lambda n: "a" * (n - 12) + "@example.com")
    bad_name = st.one_of(
        st.text(alphabet=" \t", max_size=5), st.text(alphabet="xyz", min_size=101, max_size=150)
    )
    statuses = {"queued", "running", "succeeded", "failed", "dead"}
    bad_status = st.text(alphabet=string.ascii_lowercase + " _", max_size=12).filter(
        lambda s: s not in statuses
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    backwards = st.integers(1, 10**7).map(
        lambda s: {"started_at": now, "finished_at": now - timedelta(seconds=s)}
    )
    bad_currency = st.text(alphabet="abcXYZ1 ", max_size=6).filter(
        lambda s: not re.fullmatch("[a-z]{3}", s)
    )
    bad_event_id = st.text(alphabet="evt_A1-. ", max_size=12).filter(
        lambda s: not re.fullmatch("evt_[A-Za-z0-9]+", s)
    )
    bad_event_type = st.text(alphabet="ab._A1 ", max_size=12).filter(
        lambda s: not re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", s)
    )
    return [
        Fault("customers", "malformed email", col("email", bad_email)),
        Fault("customers", "over-long email", col("email", long_email)),
        Fault("customers", "blank or over-long name", col("name", bad_name)),
        Fault("customers", "NULL name", col("name", null)),
        Fault("customers", "NULL email", col("email", null)),
        Fault("orders", "non-object order_details", col("order_details", not_object)),
        Fault("orders", "NULL order_details", col("order_details", null)),
        Fault("orders", "unknown customer", col("customer_id", missing_ref), foreign_key=True),
        Fault("orders", "NULL customer_id", col("customer_id", null)),
        Fault("execution_tasks", "unknown status", col("status", bad_status)),
        Fault("execution_tasks", "NULL status", col("status", null)),
        Fault("execution_tasks", "negative attempts", col("attempts", st.integers(-(2**31), -1))),
        Fault("execution_tasks", "non-object payload", col("payload", not_object)),
        Fault(
            "execution_tasks",
            "finished before started",
            lambda: backwards,
        ),
        Fault(
            "payment_events",
            "negative amount",
            col("amount_minor", st.integers(-(2**63), -1)),
        ),
        Fault("payment_events", "NULL amount", col("amount_minor", null)),
        Fault("payment_events", "malformed currency", col("currency", bad_currency)),
        Fault("payment_events", "malformed Stripe event id", col("stripe_event_id", bad_event_id)),
        Fault("payment_events", "malformed event type", col("event_type", bad_event_type)),
        Fault(
            "payment_events",
            "unknown customer",
            col("customer_id", missing_ref),
            foreign_key=True,
        ),
        Fault("task_outbox", "unknown task", col("task_id", missing_ref), foreign_key=True),
        Fault("task_outbox", "NULL task_id", col("task_id", null)),
    ]


def _valid_rows(token: str) -> dict[str, dict[str, Any]]:
    """A row each table must accept; every fault changes one thing in it."""
    return {
        "customers": {"name": "Rollgate audit probe", "email": f"probe-{token}@example.invalid"},
        "orders": {"customer_id": PROBE_ID, "order_details": Jsonb({})},
        "execution_tasks": {"status": "queued", "payload": Jsonb({}), "attempts": 0},
        "payment_events": {
            "stripe_event_id": f"evt_auditprobe{token}",
            "event_type": "charge.succeeded",
            "amount_minor": 1,
            "currency": "usd",
        },
        "task_outbox": {"task_id": PROBE_ID},
    }


#: Tables whose probe row must stay (inside the transaction) for others to refer to it.
_PARENTS = ("customers", "execution_tasks")


def adversarial_input(dsn: str, schema: str, thresholds: Thresholds) -> CheckResult:
    """Insert generated invalid rows (always rolled back); every one must be refused."""
    try:
        import hypothesis  # noqa: F401 (a test-time library; the audit needs it too)
    except ImportError:
        return CheckResult(
            "adversarial_input", Status.NOT_RUN, "hypothesis is not installed in this environment"
        )
    token = secrets.token_hex(4)
    faults = _faults(token)
    valid = _valid_rows(token)
    with connect(dsn, application_name="rollgate-audit") as conn:
        tables = [t for t in valid if _exists(conn, schema, t)]
        insertable = all(_may_insert(conn, schema, t) for t in tables)
    if not tables:
        raise NotRunnable(f"none of the app's tables ({', '.join(valid)}) exist in {schema}")
    # A role without INSERT (the read-only audit role) probes temporary copies made with
    # LIKE ... INCLUDING CONSTRAINTS: the live CHECK and NOT NULL definitions, copied at
    # this moment; foreign keys are not copied, so those faults need a role that may insert.
    target = schema if insertable else "pg_temp"
    before = _trace(dsn, schema, tables)
    findings: list[Finding] = []
    tally = _Tally()
    with connect(dsn, application_name="rollgate-audit") as conn:
        conn.autocommit = False  # one transaction, always rolled back
        try:
            conn.execute("SET TRANSACTION READ WRITE")  # rolled back all the same
            conn.execute(f"SET LOCAL lock_timeout = '{int(thresholds.lock_timeout_ms)}ms'")
            conn.execute(
                f"SET LOCAL statement_timeout = '{int(thresholds.statement_timeout_ms)}ms'"
            )
            if not insertable:
                _temporary_copies(conn, schema, tables)
            for table in tables:
                _insert_valid(conn, target, table, valid[table], keep=table in _PARENTS)
            for fault in faults:
                if fault.table not in tables:
                    continue
                if fault.foreign_key and not insertable:
                    findings.append(
                        Finding(
                            f"{fault.table}: {fault.name}",
                            True,
                            "not probed: only a foreign key refuses it, and the role may not "
                            "INSERT into the live table (temporary copies carry no foreign key)",
                        )
                    )
                    continue
                findings.append(
                    _run_fault(
                        conn,
                        target,
                        fault,
                        valid_row=valid[fault.table],
                        tally=tally,
                        thresholds=thresholds,
                    )
                )
        finally:
            conn.rollback()  # always: nothing the audit inserted may survive
    after = _trace(dsn, schema, tables)
    findings.append(_no_trace(dsn, schema, tables, before, after))
    rejected = ", ".join(f"{name} x{count}" for name, count in sorted(tally.rejected_by.items()))
    findings.append(Finding("refused by", True, rejected or "nothing"))
    findings.append(
        Finding(
            "probed",
            True,
            f"the live tables of {schema}"
            if insertable
            else f"temporary copies of {schema}'s tables (LIKE ... INCLUDING CONSTRAINTS): "
            "the role may not INSERT into the live ones",
        )
    )
    return verdict(
        "adversarial_input",
        findings,
        f"{tally.tried} generated invalid rows for {len(tables)} tables, all refused; "
        "rolled back without a trace",
        metrics={"adversarial_rows": float(tally.tried)},
    )


def _run_fault(
    conn: psycopg.Connection[Any],
    schema: str,
    fault: Fault,
    *,
    valid_row: dict[str, Any],
    tally: _Tally,
    thresholds: Thresholds,
) -> Finding:
    """Hypothesis-drive one kind of fault; the smallest accepted row, if any, is the evidence."""
    from hypothesis import HealthCheck, given, settings

    @settings(
        max_examples=thresholds.adversarial_examples,
        database=None,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(fault.strategy())
    def probe(change: dict[str, Any]) -> None:
        _probe(conn, schema, fault.table, {**valid_row, **change}, tally)

    try:
        probe()
    except _Accepted as accepted:
        return Finding(
            f"{fault.table}: {fault.name}",
            False,
            f"ACCEPTED {_show(accepted.values)}: a constraint is missing on "
            f"{schema}.{fault.table} (dropped behind Rollgate's back?)",
        )
    return Finding(f"{fault.table}: {fault.name}", True, "every generated row refused")


def _exists(conn: psycopg.Connection[Any], schema: str, table: str) -> bool:
    row = conn.execute(
        "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL", (schema, table)
    ).fetchone()
    return bool(row and row[0])


def _may_insert(conn: psycopg.Connection[Any], schema: str, table: str) -> bool:
    row = conn.execute(
        "SELECT has_table_privilege(format('%%I.%%I', %s::text, %s::text), 'INSERT')",
        (schema, table),
    ).fetchone()
    return bool(row and row[0])


def _temporary_copies(conn: psycopg.Connection[Any], schema: str, tables: Sequence[str]) -> None:
    """pg_temp copies of ``tables`` with the live CHECK/NOT NULL constraints and defaults."""
    try:
        for table in tables:
            conn.execute(
                sql.SQL(
                    "CREATE TEMPORARY TABLE {} (LIKE {} INCLUDING CONSTRAINTS INCLUDING DEFAULTS "
                    "INCLUDING IDENTITY) ON COMMIT DROP"
                ).format(sql.Identifier(table), sql.Identifier(schema, table))
            )
    except psycopg.Error as exc:
        raise NotRunnable(
            f"the role may not INSERT into {schema}'s tables, nor create temporary copies of "
            f"them ({_reason(exc)}): grant it TEMPORARY on the database, or INSERT (the "
            "probes always roll back)"
        ) from None


def _insert_sql(schema: str, table: str, row: dict[str, Any]) -> sql.Composed:
    columns = ["id", *row]
    return sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({})").format(
        sql.Identifier(schema, table),
        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        sql.SQL(", ").join(sql.Placeholder() for _ in columns),
    )


def _insert_valid(
    conn: psycopg.Connection[Any], schema: str, table: str, row: dict[str, Any], *, keep: bool
) -> None:
    """The unchanged probe row must be accepted, or the faults would prove nothing."""
    conn.execute("SAVEPOINT rollgate_probe")
    try:
        conn.execute(_insert_sql(schema, table, row), [PROBE_ID, *row.values()])
    except psycopg.Error as exc:
        conn.execute("ROLLBACK TO SAVEPOINT rollgate_probe")
        _refuse_to_judge(exc, table)
        raise NotRunnable(
            f"{schema}.{table} refused the audit's valid probe row ({_reason(exc)}): the "
            "probes no longer match the schema and would prove nothing; update "
            "release/audit/adversarial.py"
        ) from None
    conn.execute(
        "RELEASE SAVEPOINT rollgate_probe" if keep else "ROLLBACK TO SAVEPOINT rollgate_probe"
    )


def _probe(
    conn: psycopg.Connection[Any], schema: str, table: str, row: dict[str, Any], tally: _Tally
) -> None:
    tally.tried += 1
    conn.execute("SAVEPOINT rollgate_probe")
    try:
        conn.execute(_insert_sql(schema, table, row), [PROBE_ID, *row.values()])
    except psycopg.Error as exc:
        conn.execute("ROLLBACK TO SAVEPOINT rollgate_probe")
        _refuse_to_judge(exc, table)
        name = exc.diag.constraint_name or (exc.sqlstate or "error")
        tally.rejected_by[name] = tally.rejected_by.get(name, 0) + 1
        return
    conn.execute("ROLLBACK TO SAVEPOINT rollgate_probe")
    raise _Accepted(table, {k: _plain(v) for k, v in row.items()})


def _refuse_to_judge(exc: psycopg.Error, table: str) -> None:
    """Only integrity (23) and data (22) errors are verdicts; anything else stops the check."""
    state = exc.sqlstate or ""
    if state.startswith(("22", "23")):
        return
    if state == "42501":
        raise NotRunnable(
            f"the audit role may not INSERT into {table} ({_reason(exc)}): constraints cannot "
            "be probed by a role that cannot write; grant INSERT (the probes always roll back)"
        ) from None
    if state in ("55P03", "57014"):
        raise NotRunnable(
            f"gave up on {table} rather than wait on the application's locks ({_reason(exc)})"
        ) from None
    raise NotRunnable(f"unexpected error probing {table}: {_reason(exc)}") from None


def _trace(dsn: str, schema: str, tables: Sequence[str]) -> dict[str, Any]:
    """Checksums of the probed tables, sequence positions, and any probe row left behind."""
    with connect(dsn, application_name="rollgate-audit") as conn:
        conn.read_only = True
        sums = {
            c.table: (c.rows, c.checksum)
            for c in table_checksums(conn, schemas=[schema])
            if c.table.split(".", 1)[-1] in tables
        }
        sequences = dict(
            conn.execute(
                "SELECT format('%%I.%%I', schemaname, sequencename), last_value "
                "FROM pg_catalog.pg_sequences WHERE schemaname = %s",
                (schema,),
            ).fetchall()
        )
        left = []
        for table in tables:
            found = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE id = %s").format(
                    sql.Identifier(schema, table)
                ),
                (PROBE_ID,),
            ).fetchone()
            if found and found[0]:
                left.append(table)
    return {"checksums": sums, "sequences": sequences, "probe_rows_in": left}


def _no_trace(
    dsn: str, schema: str, tables: Sequence[str], before: dict[str, Any], after: dict[str, Any]
) -> Finding:
    if after["probe_rows_in"]:
        return Finding(
            "no trace",
            False,
            f"probe rows (id {PROBE_ID}) remain in {', '.join(after['probe_rows_in'])}",
        )
    if after["sequences"] != before["sequences"]:
        moved = sorted(
            k for k in after["sequences"] if after["sequences"][k] != before["sequences"].get(k)
        )
        return Finding(
            "no trace",
            True,
            f"checksums compared; sequences moved ({', '.join(moved)}) - the application "
            "wrote meanwhile (probes use explicit ids and never draw from a sequence)",
        )
    if after["checksums"] != before["checksums"]:
        return Finding(
            "no trace",
            True,
            "tables changed during the audit (the application wrote); no probe row remains",
        )
    return Finding(
        "no trace",
        True,
        f"checksums of {len(tables)} tables and {len(after['sequences'])} sequences identical "
        "before and after",
    )


def _reason(exc: psycopg.Error) -> str:
    return f"{exc.sqlstate}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


def _plain(value: Any) -> Any:
    if isinstance(value, Jsonb):
        return value.obj
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _show(values: dict[str, Any]) -> str:
    text = repr(values)
    return text if len(text) <= 300 else text[:297] + "..."
