"""``rollgate``: parse arguments, dispatch to a verb, print its outcome.

This module only parses and dispatches (as pre-commit's ``main``): the verbs
live in ``rollgate.commands``, human text in ``rollgate.render`` and the
error-to-exit-code mapping in ``rollgate.error_handler``.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from core.errors import CannotRun
from core.postgres import check_libpq_environment, register_dsn_secrets
from core.redaction import forget_secrets, register_secret
from db.config import load_config
from db.migrations import BUNDLED_MIGRATIONS, BUNDLED_SCHEMA
from db.throwaway import BACKENDS
from rollback.aws import ENDPOINT_FORM, is_endpoint_url
from rollgate.commands import Options, Outcome, libpq_environment_dsn
from rollgate.commands.sample import DEFAULT_MAX_SAMPLE_SIZE
from rollgate.error_handler import (
    UsageError,
    control_character_in,
    envelope,
    report_usage_error,
    run_guarded,
    write_err,
    write_json,
    write_out,
)

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

Verb = Callable[[Options, argparse.Namespace], Outcome]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rollgate`` console script; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    _register_secrets(arguments)
    # Known before parsing, so that even a usage error answers in JSON.
    as_json = _wants_json(arguments)
    parser = build_parser()
    for position, argument in enumerate(arguments, start=1):
        # Values end up in manifests, logs and reports: none takes an escape
        # sequence, a carriage return or a bidi override (a forged line).
        if found := control_character_in(argument):
            refused = UsageError(
                f"argument {position} holds the control character {found}; no option takes one",
                usage=parser.format_usage(),
            )
            return report_usage_error(refused, _command_name(parser, arguments), as_json)
    try:
        args = parser.parse_args(arguments)
    except UsageError as error:
        return report_usage_error(error, _command_name(parser, arguments), as_json)
    except SystemExit as exit_request:  # --help: argparse printed it and asks for 0
        return exit_request.code if isinstance(exit_request.code, int) else 0
    command_name: str | None = getattr(args, "command_name", None)
    if not hasattr(args, "verb"):
        group: argparse.ArgumentParser = getattr(args, "group_parser", parser)
        missing = UsageError(
            "no command given", usage=group.format_usage(), help_text=group.format_help()
        )
        return report_usage_error(missing, command_name, as_json)

    def invoke() -> int:
        check_libpq_environment(os.environ)
        outcome = args.verb(_resolve_options(args), args)
        if as_json:
            write_json(envelope(command_name, outcome.exit_code, result=outcome.result))
        else:
            write_out(outcome.text)
        return int(outcome.exit_code)

    return run_guarded(invoke, command_name=command_name, as_json=as_json)


def _register_secrets(arguments: list[str]) -> None:
    """Register every password this run could meet, before anything can print it.

    A fresh registry per invocation: ``main`` is also called in-process (tests).
    """
    forget_secrets()
    for value in (*arguments, os.environ.get("DATABASE_URL", "")):
        register_dsn_secrets(value)
    register_secret(os.environ.get("PGPASSWORD", ""))


def _wants_json(arguments: list[str]) -> bool:
    """Whether ``--json`` (or an abbreviation argparse accepts) is among the options."""
    for argument in arguments:
        if argument == "--":
            return False
        if len(argument) >= 3 and "--json".startswith(argument):
            return True
    return False


class _Parser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` instead of exiting, and prints through the handler."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, usage=self.format_usage())

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        if message:
            (write_out if file is sys.stdout else write_err)(message.rstrip("\n"))


def _command_name(parser: argparse.ArgumentParser, arguments: list[str]) -> str | None:
    """The command words in ``arguments`` ("db revert"), as far as they name commands."""
    words: list[str] = []
    current = parser
    remaining: Iterator[str] = iter(arguments)
    for argument in remaining:
        if argument == "--":
            break
        if argument.startswith("-"):
            action = current._option_string_actions.get(argument)
            if action is not None and action.nargs != 0:
                next(remaining, None)  # the option's value
            continue
        commands = _subcommands(current)
        if argument not in commands:
            break
        words.append(argument)
        current = commands[argument]
    return " ".join(words) or None


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def build_parser() -> argparse.ArgumentParser:
    # Global options are accepted before or after the subcommand; SUPPRESS keeps
    # a later default from overwriting an earlier explicit value.
    common = _Parser(add_help=False)
    common.add_argument(
        "--dsn",
        type=_dsn_option,
        default=argparse.SUPPRESS,
        help="database connection string (default: $DATABASE_URL, else libpq's PG* "
        "variables when PGHOST or PGSERVICE is set; an empty value is an error)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="machine-readable output on stdout (progress stays on stderr)",
    )
    common.add_argument(
        "--migrations",
        type=_path_option,
        metavar="DIR",
        default=argparse.SUPPRESS,
        help=f"migrations directory (default: the bundle's {BUNDLED_MIGRATIONS.parent.name}/"
        f"{BUNDLED_MIGRATIONS.name})",
    )
    common.add_argument(
        "--schema",
        type=_path_option,
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="canonical schema file (default: the bundle's db/schema.sql)",
    )
    common.add_argument(
        "--config",
        type=_path_option,
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

    parser = _Parser(
        prog="rollgate",
        parents=[common],
        description="Gated, reversible rollouts for a Postgres-backed, queue-driven app.",
        epilog="exit codes: 0 done, 1 check failed or refused, 2 could not run, "
        "3 internal error, 130 interrupted. A closed stdout (rollgate ... | head) "
        "ends output quietly and keeps the exit code of the work",
    )
    groups = parser.add_subparsers(title="commands", metavar="COMMAND")

    def verb(
        subparsers: argparse._SubParsersAction[_Parser],
        name: str,
        func: Verb,
        help_text: str,
        command_name: str,
    ) -> argparse.ArgumentParser:
        sub = subparsers.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(verb=func, command_name=command_name)
        return sub

    _db_verbs(groups, verb)
    _snapshot_verbs(groups, verb)
    _rollback_verbs(groups, verb)
    _smoke_verbs(groups, verb)
    _audit_verbs(groups, verb)
    _gate_verbs(groups, verb)
    return parser


def _db_verbs(groups: Any, verb: Callable[..., argparse.ArgumentParser]) -> None:
    db_group = groups.add_parser("db", help="schema, migrations and drift")
    db_verbs = db_group.add_subparsers(title="db commands", metavar="VERB")

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
    # The file it writes need not exist yet.
    schema.set_defaults(writes_schema=True)
    schema_mode = schema.add_mutually_exclusive_group()
    schema_mode.add_argument(
        "--write", action="store_true", help="replace the schema file (atomically) with it"
    )
    schema_mode.add_argument(
        "--check", action="store_true", help="exit 1 when the schema file differs from it"
    )
    _backend_options(schema)

    verb(
        db_verbs,
        "bootstrap-roles",
        _db_bootstrap_roles,
        "as the owner: create or re-password the app and audit roles from "
        "$ROLLGATE_DB_{APP,AUDIT}_{USER,PASSWORD} and make them members of "
        "rollgate_writer / rollgate_reader (idempotent)",
        "db bootstrap-roles",
    )

    sample = verb(
        groups, "sample", _sample, "fill a migrated database with production-shaped data", "sample"
    )
    sample.add_argument("--size", default="250MB", help="target size, e.g. 250MB, 1.5GB")
    sample.add_argument(
        "--seed",
        type=_whole_number(0, 2**31 - 1),
        default=42,
        help="random seed (same seed, same data)",
    )
    sample.add_argument(
        "--max-size",
        default=DEFAULT_MAX_SAMPLE_SIZE,
        metavar="SIZE",
        help=f"refuse a --size above this cap (default: {DEFAULT_MAX_SAMPLE_SIZE}); the free "
        "space of a server on this machine is checked as well",
    )

    db_group.set_defaults(command_name="db", group_parser=db_group)


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=None,
        metavar="STORE",
        help="a directory, file:///DIR or s3://BUCKET/PREFIX (default: $ROLLGATE_STORE)",
    )
    parser.add_argument(
        "--aws-endpoint-url",
        default=os.environ.get("AWS_ENDPOINT_URL") or None,
        type=_endpoint_url,
        metavar="URL",
        help="AWS endpoint for S3 and ECS (default: $AWS_ENDPOINT_URL, else AWS itself)",
    )


def _rollback_verbs(groups: Any, verb: Callable[..., argparse.ArgumentParser]) -> None:
    release = groups.add_parser("release", help="record and list deployed releases")
    release.set_defaults(command_name="release", group_parser=release)
    release_verbs = release.add_subparsers(title="release commands", metavar="VERB")
    record = verb(
        release_verbs,
        "record",
        _release_record,
        "record the release deployed now (ECS task definitions, schema version)",
        "release record",
    )
    _store_options(record)
    record.add_argument("--cluster", required=True, help="ECS cluster name")
    record.add_argument("--web-service", required=True, help="ECS web service name")
    record.add_argument("--worker-service", required=True, help="ECS worker service name")
    record.add_argument("--commit", type=_label, default=None, help="the bundle commit deployed")
    record.add_argument("--app-image", type=_label, default=None, help="the app image deployed")
    record.add_argument("--gate-entry", default=None, help="the gate report this rollout passed")
    listing = verb(release_verbs, "list", _release_list, "list recorded releases", "release list")
    _store_options(listing)

    group = groups.add_parser("rollback", help="roll the app and database back to a release")
    group.set_defaults(command_name="rollback", group_parser=group)
    verbs = group.add_subparsers(title="rollback commands", metavar="VERB")
    for name, func, help_text in (
        ("plan", _rollback_plan, "show how the rollback would go; change nothing"),
        ("run", _rollback_run, "plan, confirm, then roll back (or finish an interrupted one)"),
    ):
        sub = verb(verbs, name, func, help_text, f"rollback {name}")
        _store_options(sub)
        sub.add_argument(
            "--to",
            default=None,
            metavar="RELEASE",
            help="release sequence or commit (default: previous)",
        )
        sub.add_argument(
            "--accept-data-loss",
            action="store_true",
            help="allow down migrations that destroy data when no verified snapshot protects it",
        )
        if name == "run":
            sub.add_argument("--yes", action="store_true", help="do not ask for confirmation")
            sub.add_argument(
                "--plan-fingerprint",
                default=None,
                help="run only if the plan is still exactly this one (from `rollback plan`)",
            )


def _gate_verbs(groups: Any, verb: Callable[..., argparse.ArgumentParser]) -> None:
    gate = verb(
        groups,
        "gate",
        _gate,
        "the go/no-go before a rollout: static checks, snapshot, verify, rehearse, budget "
        "(exit 0 go, 1 no-go, 2 inconclusive)",
        "gate",
    )
    _store_options(gate)
    gate.add_argument("--app-image", type=_label, default=None, help="the new release's app image")
    gate.add_argument(
        "--previous-app-image",
        type=_label,
        default=None,
        help="the app image running now (release N)",
    )
    gate.add_argument(
        "--stack", type=_stack_name, default=None, help="Pulumi stack whose config is validated"
    )
    gate.add_argument(
        "--rto-seconds",
        type=_positive_seconds,
        # A string default goes through `type` when parsed, so a bad environment
        # value is a usage error (exit 2), not a crash while building the parser.
        default=os.environ.get("ROLLGATE_RTO_SECONDS") or "900",
        help="recovery-time window the rollback plan must fit (default: "
        "$ROLLGATE_RTO_SECONDS, else 900)",
    )
    gate.add_argument(
        "--lock-budget-seconds",
        type=_positive_seconds,
        default=5.0,
        help="longest a migration may block writers of a table (default: 5)",
    )
    gate.add_argument(
        "--allow-incompatible",
        action="store_true",
        help="accept a release whose schema release N's app cannot run on (recorded)",
    )
    gate.add_argument(
        "--report-dir", type=_path_option, default=Path("gate-report"), help="where reports go"
    )
    gate.add_argument("--commit", type=_label, default=None, help="the bundle commit being gated")
    gate.add_argument(
        "--backend",
        default="embedded",
        choices=("embedded", "docker"),
        help="throwaway Postgres for verify and rehearse (default: embedded)",
    )

    rehearse = verb(
        groups,
        "rehearse",
        _rehearse,
        "rehearse a whole release on this machine: deploy N, gate and deploy N+1 under "
        "traffic, an incident, `rollback run`, and the proof (no cloud; the app image when "
        "Docker has it, else processes)",
        "rehearse",
    )
    rehearse.add_argument(
        "--size", default="25MB", help="sample data in the stand-in production (default: 25MB)"
    )
    rehearse.add_argument(
        "--scenario",
        default="healthy",
        help="the N+1 release: healthy (default) or a broken one (see release/scenarios/)",
    )
    rehearse.add_argument(
        "--report-dir", type=_path_option, default=Path("rehearsal-report"), help="where reports go"
    )
    rehearse.add_argument(
        "--rto-seconds",
        type=_positive_seconds,
        default=900.0,
        help="recovery-time budget (default: 900)",
    )
    rehearse.add_argument(
        "--app-runner",
        default="auto",
        choices=("auto", "image", "processes"),
        help="how the app runs: its image (a container per role), processes (python -m app), "
        "or auto: the image when Docker answers and it is built, else processes (default)",
    )
    rehearse.add_argument(
        "--app-image",
        type=_label,
        default="rollgate/app:dev",
        help="the app image releases N and N+1 run from (default: rollgate/app:dev, "
        "what `bash app/image/build.sh` builds)",
    )


def _gate(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import gate

    return gate.gate(
        opts,
        store=args.store,
        aws_endpoint_url=args.aws_endpoint_url,
        app_image=args.app_image,
        previous_app_image=args.previous_app_image,
        stack=args.stack,
        rto_seconds=args.rto_seconds,
        lock_budget_seconds=args.lock_budget_seconds,
        allow_incompatible=args.allow_incompatible,
        report_dir=args.report_dir,
        commit=args.commit,
        backend=args.backend,
    )


def _rehearse(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import gate

    return gate.rehearse(
        opts,
        size=args.size,
        scenario=args.scenario,
        report_dir=args.report_dir,
        rto_seconds=args.rto_seconds,
        app_runner=args.app_runner,
        app_image=args.app_image,
    )


def _snapshot_verbs(groups: Any, verb: Callable[..., argparse.ArgumentParser]) -> None:
    group = groups.add_parser("snapshot", help="rollback snapshots: create, verify, restore, ...")
    group.set_defaults(command_name="snapshot", group_parser=group)
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
            type=_endpoint_url,
            metavar="URL",
            help="S3 and RDS endpoint (default: $AWS_ENDPOINT_URL, else AWS itself)",
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
    create.add_argument(
        "--release-commit", type=_label, default=None, help="the bundle commit it protects"
    )
    create.add_argument("--app-image", type=_label, default=None, help="the app image it protects")
    create.add_argument(
        "--jobs", type=_whole_number(1, 64), default=2, help="parallel pg_dump jobs (default 2)"
    )
    create.add_argument(
        "--rds",
        default=None,
        metavar="INSTANCE",
        help="take an RDS manual snapshot of this DB instance instead of a logical dump",
    )
    create.add_argument(
        "--mask",
        action="store_true",
        help="mask personal data (db/masking.toml) for a snapshot that leaves production",
    )
    create.add_argument(
        "--masking-file",
        default=None,
        type=_path_option,
        metavar="FILE",
        help="masking rules for --mask (default: the bundled db/masking.toml)",
    )
    _backend_options(create)

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
    prune.add_argument(
        "--keep", type=_whole_number(1, 10_000), default=5, help="keep the newest N (default 5)"
    )
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


def _dsn_option(text: str) -> str:
    # An empty --dsn must never mean "whatever $DATABASE_URL or libpq's PG*
    # variables point at": that is how a command reaches the wrong database.
    # The value is never echoed: it may hold a password.
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "must not be empty (omit --dsn to use $DATABASE_URL deliberately)"
        )
    return text


def _path_option(text: str) -> Path:
    # Path("") is ".", the current directory: an empty value is a mistake.
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    if "\x00" in text:
        raise argparse.ArgumentTypeError("must not contain a NUL character")
    return Path(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"must be between 0 and 86400 seconds, not {text}")
    return value


def _endpoint_url(text: str) -> str:
    """An AWS endpoint (the option or $AWS_ENDPOINT_URL), as ``rollback.aws`` accepts it."""
    if not is_endpoint_url(text):
        raise argparse.ArgumentTypeError(
            f"not an endpoint URL: {text!r} (from the option or $AWS_ENDPOINT_URL); "
            f"expected {ENDPOINT_FORM}"
        )
    return text


def _positive_seconds(text: str) -> float:
    """A budget or window in seconds: a finite number above 0 (at most a day)."""
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def _label(text: str) -> str:
    """A commit, an image, a name: one line, recorded in manifests, logs and reports.

    A newline in one would split a line of every text report that shows it (and
    the control characters are refused for every argument before parsing).
    """
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    if "\n" in text or len(text) > 512:
        raise argparse.ArgumentTypeError("must be one line of at most 512 characters")
    return text


def _stack_name(text: str) -> str:
    """A Pulumi stack name: it names the file ``Pulumi.<stack>.yaml`` beside the program."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", text) or ".." in text:
        raise argparse.ArgumentTypeError(
            f"not a stack name: {text!r} (letters, digits, '-', '_' and '.')"
        )
    return text


def _whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high], refused clearly otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, not {value}")
        return value

    return parse


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
            write_err(f"rollgate: {message}")

    config_path = getattr(args, "config", None)
    if config_path is not None:
        _refuse_unusable_path(config_path, "--config", "config file", directory=False)
    config = load_config(config_path)
    migrations = getattr(args, "migrations", None) or config.migrations
    schema = getattr(args, "schema", None) or config.schema
    if migrations is not None:
        _refuse_unusable_path(migrations, "--migrations", "migrations directory", directory=True)
    if schema is not None:
        _refuse_unusable_path(
            schema,
            "--schema",
            "schema file",
            directory=False,
            may_be_missing=bool(getattr(args, "writes_schema", False)),
        )
    dsn = getattr(args, "dsn", None)
    return Options(
        dsn=dsn
        if dsn is not None
        else os.environ.get("DATABASE_URL") or libpq_environment_dsn(os.environ),
        migrations_dir=migrations or BUNDLED_MIGRATIONS,
        schema_path=schema or BUNDLED_SCHEMA,
        config=config,
        progress=progress,
        confirm=_confirm_on_terminal,
    )


def _refuse_unusable_path(
    path: Path, option: str, what: str, *, directory: bool, may_be_missing: bool = False
) -> None:
    """Refuse a path that is missing, unreadable or of the wrong kind, by name.

    Checked before anything opens it: a FIFO given as a file would block the
    first read forever, and an over-long or looping name would surface as a
    raw OSError. ``may_be_missing``: for a file the command is about to write.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if may_be_missing:
            return
        raise CannotRun(f"{path}: {what} not found (check {option})") from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CannotRun(f"{path}: cannot use this {what} ({option}): {reason}") from None
    if directory and not stat.S_ISDIR(mode):
        raise CannotRun(f"{path}: not a directory, so not a {what} (check {option})")
    if not directory and not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise CannotRun(f"{path}: {kind}, so not a usable {what} (check {option})")


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


def _db_bootstrap_roles(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import db

    return db.bootstrap_roles(opts)


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


def _release_record(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import rollback

    return rollback.release_record(
        opts,
        store=args.store,
        aws_endpoint_url=args.aws_endpoint_url,
        cluster=args.cluster,
        web_service=args.web_service,
        worker_service=args.worker_service,
        commit=args.commit,
        app_image=args.app_image,
        gate_entry=args.gate_entry,
    )


def _release_list(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import rollback

    return rollback.release_list(opts, store=args.store, aws_endpoint_url=args.aws_endpoint_url)


def _rollback_plan(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import rollback

    return rollback.plan(
        opts,
        store=args.store,
        aws_endpoint_url=args.aws_endpoint_url,
        to=args.to,
        accept_data_loss=args.accept_data_loss,
    )


def _rollback_run(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import rollback

    return rollback.run(
        opts,
        store=args.store,
        aws_endpoint_url=args.aws_endpoint_url,
        to=args.to,
        accept_data_loss=args.accept_data_loss,
        plan_fingerprint=args.plan_fingerprint,
        yes=args.yes,
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
        rds_instance=args.rds,
        mask=args.mask,
        masking_file=args.masking_file,
        backend=args.backend,
        image=args.image,
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

    return sample.sample(opts, size=args.size, seed=args.seed, max_size=args.max_size)


def _smoke_verbs(groups: Any, verb: Callable[..., argparse.ArgumentParser]) -> None:
    sub = verb(
        groups,
        "smoke",
        _smoke,
        "run the smoke suite (pytest smoke): pre-deploy on a throwaway Postgres, or "
        "--post-deploy against the live stack; the exit code is pytest's",
        "smoke",
    )
    sub.add_argument("--snapshot", default=None, metavar="ID", help="start from this snapshot")
    sub.add_argument("--store", default=None, metavar="STORE", help="the snapshot's store")
    sub.add_argument(
        "--aws-endpoint-url",
        default=os.environ.get("AWS_ENDPOINT_URL") or None,
        type=_endpoint_url,
        metavar="URL",
        help="SQS/S3 endpoint (default: $AWS_ENDPOINT_URL; pre-deploy: moto on 127.0.0.1)",
    )
    sub.add_argument(
        "--backend",
        choices=("auto", "docker", "embedded"),
        default="auto",
        help="throwaway Postgres backend (auto: docker, embedded when Docker is absent)",
    )
    sub.add_argument("--image", default=None, help="Postgres image for the docker backend")
    sub.add_argument("--app-image", type=_label, default=None, help="this release's app image")
    sub.add_argument(
        "--previous-app-image", type=_label, default=None, help="the previous release's image"
    )
    sub.add_argument("--sample-size", default="25MB", help="sample data without --snapshot")
    sub.add_argument(
        "--from-version", type=_version, default=None, metavar="N", help="start version"
    )
    sub.add_argument(
        "--lock-budget",
        type=_positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="longest a migration may block writers (default 5)",
    )
    sub.add_argument(
        "--output-dir",
        type=_path_option,
        default=Path("smoke-report"),
        help="JUnit XML, JSON and Markdown summaries go here (default: ./smoke-report)",
    )
    sub.add_argument("--post-deploy", action="store_true", help="check the live stack instead")
    sub.add_argument(
        "--stack-outputs",
        type=_path_option,
        default=None,
        metavar="FILE",
        help="`pulumi stack output --json` (a file, or - for stdin)",
    )
    sub.add_argument(
        "--ca-bundle", type=_path_option, default=None, help="CA for the app's TLS name"
    )
    sub.add_argument("-k", dest="select", default=None, help="run only checks matching (pytest)")


def _smoke(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import smoke

    return smoke.smoke(
        opts,
        snapshot=args.snapshot,
        store=args.store,
        aws_endpoint_url=args.aws_endpoint_url,
        backend=args.backend,
        image=args.image,
        app_image=args.app_image,
        previous_app_image=args.previous_app_image,
        sample_size=args.sample_size,
        from_version=args.from_version,
        lock_budget_seconds=args.lock_budget,
        output_dir=args.output_dir,
        post_deploy=args.post_deploy,
        stack_outputs=args.stack_outputs,
        ca_bundle=args.ca_bundle,
        select=args.select,
    )


def _audit_verbs(groups: Any, verb: Callable[..., argparse.ArgumentParser]) -> None:
    # `rollgate audit` runs the checks itself; verify-log and trend are its sub-verbs.
    group = verb(
        groups,
        "audit",
        _audit,
        "run every audit check against the live stack (exit 1: a check failed, 2: a check "
        "could not run); or verify-log, or trend",
        "audit",
    )
    _store_options(group)
    _backend_options(group)
    group.add_argument(
        "--stack-outputs",
        type=_path_option,
        default=None,
        metavar="FILE",
        help="`pulumi stack output --json` of the stack (default: $ROLLGATE_STACK_OUTPUTS, "
        "which infra gives the scheduled audit task); the report names the source",
    )
    group.add_argument(
        "--stack-name",
        default=None,
        help="the metrics' Stack dimension (default: $ROLLGATE_STACK; none: no metrics)",
    )
    group.add_argument(
        "--no-record", dest="record", action="store_false", help="do not append to the audit log"
    )
    verbs = group.add_subparsers(title="audit commands", metavar="VERB")
    verify = verb(
        verbs,
        "verify-log",
        _audit_verify_log,
        "check the audit log's hash chain; exit 1 naming the first tampered entry",
        "audit verify-log",
    )
    _store_options(verify)
    trend = verb(
        verbs,
        "trend",
        _audit_trend,
        "flag audit metrics moving the wrong way; --html draws them",
        "audit trend",
    )
    _store_options(trend)
    trend.add_argument(
        "--html", type=_path_option, default=None, metavar="FILE", help="write the report"
    )
    trend.add_argument(
        "--window",
        type=_whole_number(1, 1000),
        default=5,
        help="runs compared: last N against the N before",
    )


def _audit(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import audit

    return audit.audit(
        opts,
        store=args.store,
        aws_endpoint_url=args.aws_endpoint_url,
        stack_outputs=args.stack_outputs,
        backend=args.backend,
        image=args.image,
        stack_name=args.stack_name,
        record=args.record,
    )


def _audit_verify_log(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import audit

    return audit.verify_log(opts, store=args.store, aws_endpoint_url=args.aws_endpoint_url)


def _audit_trend(opts: Options, args: argparse.Namespace) -> Outcome:
    from rollgate.commands import audit

    return audit.trend(
        opts,
        store=args.store,
        aws_endpoint_url=args.aws_endpoint_url,
        html=args.html,
        window=args.window,
    )
