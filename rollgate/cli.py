"""``rollgate``: parse arguments, dispatch to a verb, print its outcome.

This module only parses and dispatches (as pre-commit's ``main``): the verbs
live in ``rollgate.commands``, human text in ``rollgate.render`` and the
error-to-exit-code mapping in ``rollgate.error_handler``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from db.config import load_config
from db.migrations import BUNDLED_MIGRATIONS, BUNDLED_SCHEMA
from db.throwaway import BACKENDS
from rollgate.commands import Options, Outcome
from rollgate.error_handler import EXIT_CANNOT_RUN, run_guarded

Verb = Callable[[Options, argparse.Namespace], Outcome]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rollgate`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # argparse: --help (0) or a usage error (2)
        return int(exit_request.code or 0)
    if not hasattr(args, "verb"):
        parser.print_help(sys.stderr)
        return EXIT_CANNOT_RUN
    as_json = bool(getattr(args, "json", False))
    command_name = args.command_name

    def invoke() -> int:
        outcome = args.verb(_resolve_options(args), args)
        if as_json:
            payload = {
                "ok": outcome.exit_code == 0,
                "command": command_name,
                "exit_code": outcome.exit_code,
                "result": outcome.result,
            }
            print(json.dumps(payload, indent=2, default=str), flush=True)
        else:
            print(outcome.text, flush=True)
        return int(outcome.exit_code)

    return run_guarded(invoke, command_name=command_name, as_json=as_json)


def build_parser() -> argparse.ArgumentParser:
    # Global options are accepted before or after the subcommand; SUPPRESS keeps
    # a later default from overwriting an earlier explicit value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dsn",
        default=argparse.SUPPRESS,
        help="database connection string (default: $DATABASE_URL)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="machine-readable output on stdout (progress stays on stderr)",
    )
    common.add_argument(
        "--migrations",
        type=Path,
        metavar="DIR",
        default=argparse.SUPPRESS,
        help=f"migrations directory (default: the bundle's {BUNDLED_MIGRATIONS.parent.name}/"
        f"{BUNDLED_MIGRATIONS.name})",
    )
    common.add_argument(
        "--schema",
        type=Path,
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="canonical schema file (default: the bundle's db/schema.sql)",
    )
    common.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="project config (default: ./rollgate.toml when present)",
    )
    common.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress messages on stderr",
    )

    parser = argparse.ArgumentParser(
        prog="rollgate",
        parents=[common],
        description="Gated, reversible rollouts for a Postgres-backed, queue-driven app.",
        epilog="exit codes: 0 done, 1 check failed or refused, 2 could not run, "
        "3 internal error, 130 interrupted",
    )
    groups = parser.add_subparsers(title="commands", metavar="COMMAND")

    db_group = groups.add_parser("db", help="schema, migrations and drift")
    db_verbs = db_group.add_subparsers(title="db commands", metavar="VERB")

    def verb(
        subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        func: Verb,
        help_text: str,
        command_name: str,
    ) -> argparse.ArgumentParser:
        sub = subparsers.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(verb=func, command_name=command_name)
        return sub

    verb(
        db_verbs,
        "status",
        _db_status,
        "show applied, pending and interrupted migrations",
        "db status",
    )

    migrate = verb(db_verbs, "migrate", _db_migrate, "apply pending migrations", "db migrate")
    migrate.add_argument("--to", type=_version, metavar="N", help="stop after version N")
    migrate.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    _plan_fingerprint_option(migrate)
    _lock_wait_option(migrate)

    revert = verb(
        db_verbs,
        "revert",
        _db_revert,
        "revert migrations newer than N (plans first, then asks)",
        "db revert",
    )
    revert.add_argument(
        "--to",
        type=_version,
        metavar="N",
        required=True,
        help="keep versions <= N (0 reverts everything)",
    )
    revert.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    revert.add_argument(
        "--yes",
        action="store_true",
        help="do not ask for confirmation (for scripts that reviewed the plan)",
    )
    _plan_fingerprint_option(revert)
    _lock_wait_option(revert)

    check = verb(
        db_verbs,
        "check",
        _db_check,
        "canonical contract, verify scripts and squawk lint on a throwaway Postgres",
        "db check",
    )
    _backend_options(check)
    check.add_argument(
        "--lint-since",
        type=_version,
        metavar="N",
        default=None,
        help="do not lint migrations <= N: they are in production already "
        "(default: lint.since in rollgate.toml, else 0)",
    )

    diff = verb(
        db_verbs,
        "diff",
        _db_diff,
        "compare a live database with the canonical schema (exit 1 on drift)",
        "db diff",
    )
    _backend_options(diff)

    baseline = verb(
        db_verbs,
        "baseline",
        _db_baseline,
        "record migrations 1..N as applied without running them, once the live catalog "
        "is proved equal to what they build",
        "db baseline",
    )
    baseline.add_argument(
        "--version",
        type=_version,
        metavar="N",
        required=True,
        help="the last migration the live database already has",
    )
    baseline.add_argument("--dry-run", action="store_true", help="prove the match; record nothing")
    _backend_options(baseline)
    _lock_wait_option(baseline)
    schema = verb(
        db_verbs,
        "schema",
        _db_schema,
        "the schema the migrations build (pg_dump --schema-only on a throwaway Postgres): "
        "print it, --write it to the schema file, or --check the file against it",
        "db schema",
    )
    schema_mode = schema.add_mutually_exclusive_group()
    schema_mode.add_argument(
        "--write", action="store_true", help="replace the schema file (atomically) with it"
    )
    schema_mode.add_argument(
        "--check", action="store_true", help="exit 1 when the schema file differs from it"
    )
    _backend_options(schema)

    sample = verb(
        groups, "sample", _sample, "fill a migrated database with production-shaped data", "sample"
    )
    sample.add_argument("--size", default="250MB", help="target size, e.g. 250MB, 1.5GB")
    sample.add_argument("--seed", type=int, default=42, help="random seed (same seed, same data)")

    db_group.set_defaults(command_name="db")
    _snapshot_verbs(groups, verb)
    return parser


def _snapshot_verbs(groups: Any, verb: Callable[..., argparse.ArgumentParser]) -> None:
    group = groups.add_parser("snapshot", help="rollback snapshots: create, verify, restore, ...")
    group.set_defaults(command_name="snapshot")
    verbs = group.add_subparsers(title="snapshot commands", metavar="VERB")

    def store_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--store",
            default=None,
            metavar="STORE",
            help="a directory, file:///DIR or s3://BUCKET/PREFIX (default: $ROLLGATE_STORE)",
        )
        parser.add_argument(
            "--aws-endpoint-url",
            default=None,
            metavar="URL",
            help="S3 endpoint (default: $AWS_ENDPOINT_URL, else AWS itself)",
        )

    create = verb(
        verbs, "create", _snapshot_create, "snapshot the database at --dsn", "snapshot create"
    )
    store_options(create)
    create.add_argument(
        "--no-slot",
        dest="slot",
        action="store_false",
        help="no replication slot: writes after the snapshot cannot be replayed at rollback",
    )
    create.add_argument("--release-commit", default=None, help="the bundle commit it protects")
    create.add_argument("--app-image", default=None, help="the app image it protects")
    create.add_argument("--jobs", type=int, default=2, help="parallel pg_dump jobs (default 2)")

    verify = verb(verbs, "verify", _snapshot_verify, "restore-test a snapshot", "snapshot verify")
    verify.add_argument("snapshot_id", metavar="ID")
    store_options(verify)
    _backend_options(verify)

    listing = verb(
        verbs, "list", _snapshot_list, "list snapshots and whether they are warm", "snapshot list"
    )
    store_options(listing)

    show = verb(verbs, "show", _snapshot_show, "one snapshot's manifest", "snapshot show")
    show.add_argument("snapshot_id", metavar="ID")
    store_options(show)

    restore = verb(
        verbs,
        "restore",
        _snapshot_restore,
        "restore a snapshot as the --dsn database",
        "snapshot restore",
    )
    restore.add_argument("snapshot_id", metavar="ID")
    store_options(restore)
    restore.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    warm = verb(
        verbs, "warm", _snapshot_warm, "restore and verify a standby beside --dsn", "snapshot warm"
    )
    warm.add_argument("snapshot_id", metavar="ID")
    store_options(warm)

    prune = verb(
        verbs, "prune", _snapshot_prune, "delete snapshots past retention", "snapshot prune"
    )
    store_options(prune)
    prune.add_argument("--keep", type=int, default=5, help="keep the newest N (default 5)")
    prune.add_argument(
        "--protect",
        action="append",
        default=[],
        metavar="COMMIT",
        help="keep every snapshot of this live release (repeatable)",
    )
    prune.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")


def _lock_wait_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lock-wait",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for another runner's lock (default: 60)",
    )


def _plan_fingerprint_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plan-fingerprint",
        metavar="SHA256",
        help="run only if the plan is still this one (plan_fingerprint from --dry-run --json)",
    )


def _backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=os.environ.get("ROLLGATE_PG_BACKEND", "embedded"),
        help="throwaway Postgres backend (default: embedded, or $ROLLGATE_PG_BACKEND)",
    )
    parser.add_argument(
        "--image",
        default=None,
        help="Postgres image for the docker backend (default: $ROLLGATE_PG_IMAGE or "
        "rollgate/postgres:18)",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"must be between 0 and 86400 seconds, not {text}")
    return value


def _version(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a migration version: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"versions are >= 0, not {value}")
    return value


def _resolve_options(args: argparse.Namespace) -> Options:
    quiet = bool(getattr(args, "quiet", False))

    def progress(message: str) -> None:
        if not quiet:
            print(f"rollgate: {message}", file=sys.stderr, flush=True)

    config = load_config(getattr(args, "config", None))
    return Options(
        dsn=getattr(args, "dsn", None) or os.environ.get("DATABASE_URL") or None,
        migrations_dir=getattr(args, "migrations", None) or config.migrations or BUNDLED_MIGRATIONS,
        schema_path=getattr(args, "schema", None) or config.schema or BUNDLED_SCHEMA,
        config=config,
        progress=progress,
        confirm=_confirm_on_terminal,
    )


def _confirm_on_terminal(question: str) -> bool:
    """Ask on the terminal; without one (CI, pipes) the answer is no."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    print(f"{question}\nType 'yes' to continue: ", end="", file=sys.stderr, flush=True)
    try:
        return sys.stdin.readline().strip().lower() == "yes"
    except (EOFError, OSError):
        return False


# --- adapters: argparse namespace -> verb keyword arguments ------------------


def _db_status(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import db

    return db.status(opts)


def _db_migrate(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import db

    return db.migrate(
        opts,
        to=args.to,
        dry_run=args.dry_run,
        lock_wait=args.lock_wait,
        plan_fingerprint=args.plan_fingerprint,
    )


def _db_revert(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import db

    return db.revert(
        opts,
        to=args.to,
        dry_run=args.dry_run,
        yes=args.yes,
        lock_wait=args.lock_wait,
        plan_fingerprint=args.plan_fingerprint,
    )


def _db_check(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import db

    return db.check(opts, backend=args.backend, image=args.image, lint_since=args.lint_since)


def _db_diff(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import db

    return db.diff(opts, backend=args.backend, image=args.image)


def _db_baseline(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import db

    return db.baseline(
        opts,
        version=args.version,
        dry_run=args.dry_run,
        backend=args.backend,
        image=args.image,
        lock_wait=args.lock_wait,
    )


def _snapshot_create(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import snapshot

    return snapshot.create(
        opts,
        store=args.store,
        aws_endpoint_url=args.aws_endpoint_url,
        slot=args.slot,
        release_commit=args.release_commit,
        app_image=args.app_image,
        jobs=args.jobs,
    )


def _snapshot_verify(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import snapshot

    return snapshot.verify(
        opts,
        snapshot_id=args.snapshot_id,
        store=args.store,
        aws_endpoint_url=args.aws_endpoint_url,
        backend=args.backend,
        image=args.image,
    )


def _snapshot_list(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import snapshot

    return snapshot.list_(opts, store=args.store, aws_endpoint_url=args.aws_endpoint_url)


def _snapshot_show(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import snapshot

    return snapshot.show(
        opts, snapshot_id=args.snapshot_id, store=args.store, aws_endpoint_url=args.aws_endpoint_url
    )


def _snapshot_restore(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import snapshot

    return snapshot.restore(
        opts,
        snapshot_id=args.snapshot_id,
        store=args.store,
        aws_endpoint_url=args.aws_endpoint_url,
        dry_run=args.dry_run,
        yes=args.yes,
    )


def _snapshot_warm(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import snapshot

    return snapshot.warm(
        opts, snapshot_id=args.snapshot_id, store=args.store, aws_endpoint_url=args.aws_endpoint_url
    )


def _snapshot_prune(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import snapshot

    return snapshot.prune(
        opts,
        store=args.store,
        aws_endpoint_url=args.aws_endpoint_url,
        keep=args.keep,
        protect=args.protect,
        dry_run=args.dry_run,
    )


def _db_schema(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import db

    return db.schema(
        opts, write=args.write, check=args.check, backend=args.backend, image=args.image
    )


def _sample(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import sample

    return sample.sample(opts, size=args.size, seed=args.seed)
