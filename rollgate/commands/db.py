"""``rollgate db``: status, migrate, revert, check, diff, baseline, schema, bootstrap-roles."""

from __future__ import annotations

import os

from core.errors import CheckFailed
from db.baseline import baseline as run_baseline
from db.check import run_check
from db.drift import detect_drift
from db.migrations import load_migrations
from db.roles import bootstrap_roles as run_bootstrap_roles
from db.roles import roles_from_environment
from db.runner import MigrationRunner
from db.schemafile import read_schema_file, schema_from_migrations, write_atomically
from db.throwaway import start_throwaway
from db.throwaway.extensions import required_extensions, start_for_extensions
from infra import outputs
from rollgate import render
from rollgate.commands import Options, Outcome


def status(opts: Options) -> Outcome:
    """Where the database stands; exit 1 when history is inconsistent or half-done."""
    migrations = load_migrations(opts.migrations_dir)
    with MigrationRunner(opts.require_dsn(), migrations) as runner:
        report = runner.status()
    return Outcome(0 if report.healthy else 1, report.to_dict(), render.status(report))


def migrate(
    opts: Options,
    *,
    to: int | None,
    dry_run: bool,
    lock_wait: float,
    plan_fingerprint: str | None = None,
) -> Outcome:
    """Apply pending migrations (up to ``to``); ``dry_run`` only plans.

    ``plan_fingerprint`` (from a ``--dry-run --json`` run): apply only if the plan
    is still exactly that one, else refuse and change nothing.
    """
    migrations = load_migrations(opts.migrations_dir)
    with MigrationRunner(
        opts.require_dsn(), migrations, lock_wait=lock_wait, progress=opts.progress
    ) as runner:
        report = runner.migrate(to, dry_run=dry_run, expected_plan=plan_fingerprint)
    return Outcome(0, report.to_dict(), render.run(report))


def revert(
    opts: Options,
    *,
    to: int,
    dry_run: bool,
    yes: bool,
    lock_wait: float,
    plan_fingerprint: str | None = None,
) -> Outcome:
    """Revert to version ``to``: always plans first, then acts only when confirmed.

    What runs is exactly the plan that was shown: its fingerprint is carried
    into the locked phase, and if the database moved on meanwhile (another
    runner applied or reverted something) the revert refuses and changes nothing.
    ``plan_fingerprint`` (from ``--dry-run --json``) pins the plan for scripts.
    """
    migrations = load_migrations(opts.migrations_dir)
    with MigrationRunner(
        opts.require_dsn(), migrations, lock_wait=lock_wait, progress=opts.progress
    ) as runner:
        plan_report = runner.revert(to, dry_run=True)
        confirmed = plan_fingerprint or plan_report.plan.fingerprint()
        if dry_run or (plan_report.plan.empty and plan_fingerprint is None):
            return Outcome(0, plan_report.to_dict(), render.run(plan_report))
        if not yes:
            opts.progress(render.run(plan_report))
            question = (
                f"Revert {len(plan_report.plan.steps)} migration(s) to {to:04d}? "
                "Down migrations can drop columns and tables and the data in them."
            )
            if not opts.confirm(question):
                raise CheckFailed(
                    "revert refused: not confirmed. Review the plan above (or run with "
                    "--dry-run), then pass --yes to proceed without a prompt",
                    details={"plan": plan_report.to_dict()["plan"]},
                )
        report = runner.revert(to, expected_plan=confirmed)
    return Outcome(0, report.to_dict(), render.run(report))


def check(
    opts: Options, *, backend: str, image: str | None, lint_since: int | None = None
) -> Outcome:
    """Contract, verify scripts and lint on a throwaway Postgres; exit 1 on any finding.

    ``lint_since`` (the ``--lint-since`` flag) overrides ``lint.since`` from the config.
    """
    report = run_check(
        opts.migrations_dir,
        opts.schema_path,
        backend=backend,
        image=image,
        scope=opts.config.catalog,
        lint_since=opts.config.lint_since if lint_since is None else lint_since,
        progress=opts.progress,
    )
    return Outcome(0 if report.ok else 1, report.to_dict(), render.check(report))


def diff(opts: Options, *, backend: str, image: str | None) -> Outcome:
    """Compare the live database with the canonical schema; exit 1 on drift."""
    migrations = load_migrations(opts.migrations_dir)
    dsn = opts.require_dsn()
    needed = required_extensions([read_schema_file(opts.schema_path).script])
    with start_for_extensions(backend, needed, image=image, progress=opts.progress) as server:
        report = detect_drift(
            dsn,
            server,
            opts.schema_path,
            migrations,
            scope=opts.config.catalog,
            progress=opts.progress,
        )
    return Outcome(1 if report.drifted else 0, report.to_dict(), render.drift(report))


def baseline(
    opts: Options,
    *,
    version: int,
    dry_run: bool,
    backend: str,
    image: str | None,
    lock_wait: float,
) -> Outcome:
    """Record 1..``version`` as applied, once the live catalog is proved equal; exit 1 if not."""
    migrations = load_migrations(opts.migrations_dir)
    dsn = opts.require_dsn()
    with start_throwaway(backend, image=image, progress=opts.progress) as server:
        report = run_baseline(
            dsn,
            server,
            migrations,
            version,
            dry_run=dry_run,
            scope=opts.config.catalog,
            lock_wait=lock_wait,
            progress=opts.progress,
        )
    return Outcome(0 if report.matches else 1, report.to_dict(), render.baseline(report))


def schema(opts: Options, *, write: bool, check: bool, backend: str, image: str | None) -> Outcome:
    """The schema the migrations build (pg_dump --schema-only): print, ``write`` or ``check`` it.

    ``check`` exits 1 when the schema file differs from what the migrations
    build; ``write`` replaces the file atomically (only when it differs).
    """
    migrations = load_migrations(opts.migrations_dir)
    generated = schema_from_migrations(
        migrations, backend=backend, image=image, progress=opts.progress
    )
    path = opts.schema_path
    try:
        current: bytes | None = path.read_bytes()
    except OSError:
        current = None
    up_to_date = current == generated.text.encode("utf-8")
    result = {
        "path": str(path),
        "backend": generated.backend,
        "server_major": generated.server_major,
        "migrations": list(generated.migrations),
        "warnings": list(generated.warnings),
        "up_to_date": up_to_date,
        "written": False,
    }
    if write:
        if not up_to_date:
            write_atomically(path, generated.text)
        result["written"] = not up_to_date
        return Outcome(0, result, render.schema_written(result))
    if check:
        return Outcome(0 if up_to_date else 1, result, render.schema_checked(result))
    return Outcome(0, {**result, "schema": generated.text}, generated.text.rstrip("\n"))


def bootstrap_roles(opts: Options) -> Outcome:
    """Create or re-password the app and audit roles from the migrate task's environment.

    Runs as the owner (the master secret's DSN); idempotent: a second run changes nothing.
    """
    roles = roles_from_environment(
        os.environ,
        app_user_variable=outputs.SECRET_DB_APP_USER,
        app_password_variable=outputs.SECRET_DB_APP_PASSWORD,
        audit_user_variable=outputs.SECRET_DB_AUDIT_USER,
        audit_password_variable=outputs.SECRET_DB_AUDIT_PASSWORD,
    )
    report = run_bootstrap_roles(opts.require_dsn(), roles, progress=opts.progress)
    return Outcome(0, report.to_dict(), render.bootstrap_roles(report))
