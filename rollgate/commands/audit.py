"""``rollgate audit``: run the audit catalogue, verify its log, read its trends."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

from core.errors import CannotRun
from core.paths import writable_directory
from db.migrations import load_migrations
from infra import outputs
from release.audit import (
    AUDIT_LOG,
    SOURCE_FILE,
    AuditOptions,
    Thresholds,
    run_audit,
    stack_outputs_from_environment,
)
from release.audit.trend import html_report, trends
from rollback import ledger
from rollgate import render
from rollgate.commands import Options, Outcome
from rollgate.commands.snapshot import open_snapshot_store


def load_stack_outputs(path: Path | None) -> tuple[dict[str, Any] | None, str]:
    """``pulumi stack output --json`` from ``path`` (it wins); else the task's environment.

    Returns the outputs and where they came from, which the report names.
    """
    if path is None:
        return stack_outputs_from_environment()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CannotRun(f"{path}: cannot read the stack outputs ({exc})") from exc
    if not isinstance(data, dict):
        raise CannotRun(f"{path}: stack outputs must be a JSON object (pulumi stack output --json)")
    return data, f"{SOURCE_FILE} {path}"


#: libpq variables the scheduled audit task receives (infra.tasks) instead of a DSN.
_LIBPQ_ENVIRONMENT = {
    "PGHOST": "host",
    "PGPORT": "port",
    "PGDATABASE": "dbname",
    "PGUSER": "user",
    "PGPASSWORD": "password",
    "PGSSLMODE": "sslmode",
    "PGSSLROOTCERT": "sslrootcert",
}


def audit_dsn(opts: Options) -> str:
    """``--dsn`` / $DATABASE_URL, else the libpq variables the audit task is given."""
    if opts.dsn:
        return opts.dsn
    if os.environ.get("PGHOST"):
        return make_conninfo(
            **{
                key: os.environ[name]
                for name, key in _LIBPQ_ENVIRONMENT.items()
                if name in os.environ
            }
        )
    return opts.require_dsn()


def audit_store(store: str | None) -> str | None:
    """``--store`` / $ROLLGATE_STORE, else the artifact bucket the audit task is given."""
    if store or os.environ.get("ROLLGATE_STORE"):
        return store
    bucket = os.environ.get(outputs.ENV_ARTIFACT_BUCKET)
    return f"s3://{bucket}" if bucket else None


def audit(
    opts: Options,
    *,
    store: str | None,
    aws_endpoint_url: str | None,
    stack_outputs: Path | None,
    backend: str,
    image: str | None,
    stack_name: str | None,
    record: bool,
) -> Outcome:
    """Run every check; exit 1 on a failure, 2 when a check could not run."""
    stack, source = load_stack_outputs(stack_outputs)
    report = run_audit(
        AuditOptions(
            dsn=audit_dsn(opts),
            store=open_snapshot_store(audit_store(store), aws_endpoint_url),
            aws_endpoint_url=aws_endpoint_url,
            stack_outputs=stack,
            stack_outputs_source=source,
            migrations=load_migrations(opts.migrations_dir),
            schema=opts.schema_path,
            backend=backend,
            image=image,
            thresholds=Thresholds(),
            scope=opts.config.catalog,
            stack_name=stack_name,
            record=record,
            progress=opts.progress,
        )
    )
    return Outcome(report.exit_code, report.to_dict(), render.audit_report(report))


def verify_log(opts: Options, *, store: str | None, aws_endpoint_url: str | None) -> Outcome:
    """Check the audit log's hash chain; ``ChainBroken`` (exit 1) names the first bad entry."""
    report = ledger.verify_chain(open_snapshot_store(store, aws_endpoint_url), AUDIT_LOG)
    text = f"audit log intact: {report.entries} entries, head {report.head_sha256[:16]}"
    return Outcome(0, report.to_dict(), text)


def trend(
    opts: Options,
    *,
    store: str | None,
    aws_endpoint_url: str | None,
    html: Path | None,
    window: int,
) -> Outcome:
    """Flag audit metrics moving the wrong way; optionally write the HTML report."""
    target = open_snapshot_store(store, aws_endpoint_url)
    found = trends(target, AUDIT_LOG, window=window)
    if html is not None:
        writable_directory(html.parent, "the trend report (--html)")
        html.write_text(html_report(found, f"{target.uri}/logs/{AUDIT_LOG}"), encoding="utf-8")
    flagged = [t for t in found if t.flagged]
    result = {
        "trends": [t.to_dict() for t in found],
        "flagged": [t.metric for t in flagged],
        "html": str(html) if html else None,
    }
    return Outcome(1 if flagged else 0, result, render.audit_trends(found, html))
