"""The scheduled adversarial audit: a catalogue of pass/fail checks against a live stack.

``run_audit(AuditOptions(...))`` runs every check and returns an ``AuditReport``:

* ``schema_drift``: the live catalog (every schema) against the canonical
  schema, and the applied migrations' checksums against the files;
* ``restore_drill``: the newest snapshot restored on a throwaway and verified;
* ``adversarial_input``: generated invalid rows must be refused by the live
  constraints (always rolled back, proven traceless);
* ``api_probe``: the live app's API answers and refuses malformed input (at
  ``appUrl``, or, on the schedule, at a running web task inside the VPC);
* ``queue_health`` and ``security_posture``: read-only AWS calls;
* ``integrity``: INVALID indexes, unindexed foreign keys, sequence
  exhaustion, bloat, WAL held by replication slots.

A check that cannot reach a verdict is ``not_run`` with the reason, never a
pass. The exit code: 1 when any check failed, else 2 when any did not run,
else 0. The JSON report is appended to the hash-chained ``audit`` log in the
store (``rollback.ledger``), and its numbers go to CloudWatch.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import CannotRun, RollgateError
from core.progress import Progress, silent
from db.catalog import EVERY_SCHEMA
from db.config import CatalogScope
from db.migrations import BUNDLED_MIGRATIONS, BUNDLED_SCHEMA, Migration, load_migrations
from db.throwaway import ThrowawayPostgres, start_throwaway
from infra import outputs
from release.audit.model import CheckResult, Finding, NotRunnable, Status
from release.audit.thresholds import Thresholds
from rollback import ledger
from rollback.store import SnapshotStore, open_store

__all__ = [
    "AUDIT_LOG",
    "SOURCE_ENVIRONMENT",
    "SOURCE_FILE",
    "SOURCE_NONE",
    "SOURCE_TASK_VARIABLES",
    "AuditOptions",
    "AuditReport",
    "CheckResult",
    "Finding",
    "Status",
    "Thresholds",
    "run_audit",
    "stack_outputs_from_environment",
]

#: The ledger log every audit report is appended to.
AUDIT_LOG = "audit"


@dataclass(frozen=True)
class AuditOptions:
    """What to audit and how; only ``dsn`` and ``store`` are required."""

    dsn: str
    store: str | SnapshotStore
    aws_endpoint_url: str | None = None
    #: ``pulumi stack output --json``; None skips (reports as not run) the AWS checks.
    stack_outputs: Mapping[str, Any] | None = None
    #: Where ``stack_outputs`` came from (``SOURCE_*``), named in the report.
    stack_outputs_source: str | None = None
    migrations: Sequence[Migration] | None = None
    schema: Path = BUNDLED_SCHEMA
    backend: str = "embedded"
    image: str | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    #: The schema holding the app's tables (the adversarial probes' target).
    app_schema: str = "public"
    scope: CatalogScope = EVERY_SCHEMA
    #: Value of the metrics' Stack dimension; None: $ROLLGATE_STACK, else no metrics.
    stack_name: str | None = None
    #: Append the report to the audit log.
    record: bool = True
    #: Reuse a running throwaway Postgres (a rehearsal has one) instead of starting one.
    server: ThrowawayPostgres | None = None
    progress: Progress = silent


@dataclass(frozen=True)
class AuditReport:
    checks: tuple[CheckResult, ...]
    started_at: str
    seconds: float
    thresholds: Thresholds
    log_entry: str | None = None
    log_entry_sha256: str | None = None
    metrics_sent: int = 0
    notes: tuple[str, ...] = ()
    #: Leading indicators read for the trend (not checks): e.g. rejected webhooks.
    indicators: dict[str, float] = field(default_factory=dict)
    stack_outputs_source: str | None = None

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status is Status.FAILED]

    @property
    def not_run(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status is Status.NOT_RUN]

    @property
    def exit_code(self) -> int:
        """1: a check failed; 2: none failed but one could not run; 0: all passed."""
        if self.failed:
            return 1
        return 2 if self.not_run else 0

    @property
    def metrics(self) -> dict[str, float]:
        """Every check's numbers, flattened, plus the audit's own counts."""
        values: dict[str, float] = {}
        for check in self.checks:
            values.update(check.metrics)
        values.update(self.indicators)
        values["failures"] = float(len(self.failed))
        values["not_run"] = float(len(self.not_run))
        return values

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.exit_code == 0,
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "seconds": round(self.seconds, 3),
            "checks": [c.to_dict() for c in self.checks],
            "failed": [c.check for c in self.failed],
            "not_run": [c.check for c in self.not_run],
            "metrics": self.metrics,
            "thresholds": self.thresholds.to_dict(),
            "log_entry": self.log_entry,
            "log_entry_sha256": self.log_entry_sha256,
            "metrics_sent": self.metrics_sent,
            "notes": list(self.notes),
            "stack_outputs_source": self.stack_outputs_source,
        }


#: Where ``rollgate audit`` found the stack outputs (named in every report).
SOURCE_FILE = "--stack-outputs"
SOURCE_ENVIRONMENT = f"${outputs.ENV_STACK_OUTPUTS}"
SOURCE_TASK_VARIABLES = "the task's ROLLGATE_* variables (partial)"
SOURCE_NONE = "none"


def stack_outputs_from_environment(
    env: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any] | None, str]:
    """What the scheduled audit task knows of its stack, and where that came from.

    Infra gives the task ``$ROLLGATE_STACK_OUTPUTS`` (`infra.outputs.AUDIT_TASK_OUTPUTS`,
    identifiers only). Without it, the plain task variables name a few resources, too
    few for the queue-health and security-posture checks, which then say what is missing.
    """
    env = os.environ if env is None else env
    raw = env.get(outputs.ENV_STACK_OUTPUTS)
    if raw:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise CannotRun(
                f"{SOURCE_ENVIRONMENT} is not JSON ({exc}): it must hold the stack outputs "
                "as one JSON object (set by infra/audit.py)"
            ) from None
        if not isinstance(data, dict):
            raise CannotRun(f"{SOURCE_ENVIRONMENT} must be a JSON object of stack outputs")
        return data, SOURCE_ENVIRONMENT
    known = {
        outputs.QUEUE_URL: env.get(outputs.ENV_QUEUE_URL),
        outputs.DLQ_URL: env.get(outputs.ENV_DLQ_URL),
        outputs.ARTIFACT_BUCKET: env.get(outputs.ENV_ARTIFACT_BUCKET),
        outputs.DB_INSTANCE_ID: env.get(outputs.ENV_DB_INSTANCE_ID),
    }
    found = {k: v for k, v in known.items() if v}
    return (found, SOURCE_TASK_VARIABLES) if found else (None, SOURCE_NONE)


def run_audit(options: AuditOptions) -> AuditReport:
    """Run the whole catalogue; record the report in the audit log and emit metrics."""
    from release.audit.adversarial import adversarial_input
    from release.audit.api import api_check
    from release.audit.aws import queue_health, security_posture
    from release.audit.database import integrity, schema_drift
    from release.audit.restore import restore_drill

    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    say = options.progress
    thresholds = options.thresholds
    store = (
        open_store(options.store, aws_endpoint_url=options.aws_endpoint_url)
        if isinstance(options.store, str)
        else options.store
    )
    migrations = (
        list(options.migrations)
        if options.migrations is not None
        else load_migrations(BUNDLED_MIGRATIONS)
    )
    stack = options.stack_outputs
    endpoint = options.aws_endpoint_url
    notes: list[str] = []
    checks: list[CheckResult] = []
    server = options.server
    own_server: ThrowawayPostgres | None = None
    try:
        if server is None:
            say(f"starting a throwaway Postgres ({options.backend}) for drift and the drill")
            try:
                own_server = server = start_throwaway(options.backend, image=options.image)
            except RollgateError as exc:
                notes.append(f"no throwaway Postgres: {exc.message}")
        catalogue: list[tuple[str, Callable[[], CheckResult]]] = [
            (
                "schema_drift",
                lambda: schema_drift(
                    options.dsn,
                    _need_server(server),
                    options.schema,
                    migrations,
                    scope=options.scope,
                ),
            ),
            (
                "restore_drill",
                lambda: restore_drill(store, _need_server(server), migrations, thresholds),
            ),
            (
                "adversarial_input",
                lambda: adversarial_input(options.dsn, options.app_schema, thresholds),
            ),
            (
                "api_probe",
                lambda: api_check(stack, endpoint, examples=thresholds.api_examples),
            ),
            ("queue_health", lambda: queue_health(stack, endpoint, thresholds)),
            ("security_posture", lambda: security_posture(stack, endpoint)),
            ("integrity", lambda: integrity(options.dsn, thresholds)),
        ]
        for name, check in catalogue:
            say(f"audit: {name}")
            checks.append(_guarded(name, check))
    finally:
        if own_server is not None:
            own_server.close()
    report = AuditReport(
        checks=tuple(checks),
        started_at=started_at,
        seconds=time.monotonic() - started,
        thresholds=thresholds,
        notes=tuple(notes),
        stack_outputs_source=options.stack_outputs_source
        or (SOURCE_NONE if stack is None else None),
    )
    sent, indicators = _emit_metrics(report, options, notes)
    report = AuditReport(
        **{
            **report.__dict__,
            "metrics_sent": sent,
            "notes": tuple(notes),
            "indicators": indicators,
        }
    )
    if options.record:
        entry = ledger.append(store, AUDIT_LOG, report.to_dict())
        report = AuditReport(
            **{
                **report.__dict__,
                "log_entry": f"{store.uri}/logs/{AUDIT_LOG}/{entry.name}",
                "log_entry_sha256": entry.entry_sha256,
            }
        )
    return report


def _emit_metrics(
    report: AuditReport, options: AuditOptions, notes: list[str]
) -> tuple[int, dict[str, float]]:
    """Read the leading indicators and send the metrics; (metrics sent, indicators)."""
    from release.audit.aws import put_metrics, rejected_webhooks

    endpoint = options.aws_endpoint_url
    stack_name = options.stack_name or os.environ.get(outputs.ENV_STACK)
    sent = 0
    indicators: dict[str, float] = {}
    if not stack_name:
        notes.append(f"no stack name (${outputs.ENV_STACK}): metrics not sent")
        return sent, indicators
    try:
        indicators["webhook_rejected"] = rejected_webhooks(stack_name, endpoint)
    except Exception as exc:  # an indicator, not a check: its absence is a note
        notes.append(f"rejected-webhook count not read from CloudWatch: {_describe(exc)}")
    try:
        sent = put_metrics(report.metrics, stack_name, endpoint)
    except Exception as exc:  # the audit's verdict must survive a metrics outage
        notes.append(f"metrics not sent to CloudWatch: {_describe(exc)}")
    return sent, indicators


def _need_server(server: ThrowawayPostgres | None) -> ThrowawayPostgres:
    if server is None:
        raise NotRunnable("no throwaway Postgres could be started (see the notes)")
    return server


def _guarded(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    """Run one check; anything that stops it from reaching a verdict is NOT_RUN, never a pass."""
    started = time.monotonic()
    try:
        result = check()
    except NotRunnable as exc:
        result = CheckResult(name, Status.NOT_RUN, str(exc))
    except RollgateError as exc:
        result = CheckResult(name, Status.NOT_RUN, exc.message)
    except Exception as exc:
        result = CheckResult(name, Status.NOT_RUN, _describe(exc))
    return CheckResult(**{**result.__dict__, "seconds": time.monotonic() - started})


def _describe(exc: BaseException) -> str:
    from core.redaction import scrub

    text = " ".join(str(exc).split()) or type(exc).__name__
    return scrub(f"{type(exc).__name__}: {text}")[:500]
