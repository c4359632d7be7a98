"""``run_smoke``: the smoke suite as an API, for ``rollgate smoke`` and the gate.

The suite itself is plain pytest (``pytest smoke``); this module only maps
``SmokeOptions`` to the suite's pytest options, runs ``python -m pytest smoke``
in a subprocess (so a crashing check can never take the caller down, and the
exit code is pytest's own), and reads back the JSON summary that the suite's
conftest writes next to the JUnit XML.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import CannotRun
from core.paths import writable_directory
from db.throwaway.attached import HANDOFF_VARIABLE

#: The directory holding the suite (this package) and the repository root above it.
SUITE_DIR = Path(__file__).resolve().parent
REPO_ROOT = SUITE_DIR.parent

JUNIT_XML = "smoke-junit.xml"
JSON_SUMMARY = "smoke-summary.json"
MARKDOWN_SUMMARY = "smoke-summary.md"
PYTEST_LOG = "smoke-pytest.log"


@dataclass(frozen=True)
class SmokeOptions:
    """What to smoke-test and how; field names are part of the API (the gate calls it)."""

    migrations: Path
    schema: Path
    output_dir: Path
    snapshot: str | None = None
    store: str | None = None
    aws_endpoint_url: str | None = None
    backend: str = "auto"
    image: str | None = None
    app_image: str | None = None
    previous_app_image: str | None = None
    sample_size: str = "25MB"
    from_version: int | None = None
    lock_budget_seconds: float = 5.0
    post_deploy: bool = False
    stack_outputs: Path | None = None
    # Additions (all defaulted):
    #: How long the app may take to answer /readyz with 200.
    ready_timeout_seconds: float = 60.0
    #: How long a poison message may take to reach the DLQ.
    dlq_timeout_seconds: float = 45.0
    #: False creates the pre-deploy queue without a redrive policy (a seeded violation).
    queue_redrive: bool = True
    #: CA bundle that signs the app's TLS certificate (post-deploy); default: the system's.
    ca_bundle: Path | None = None
    #: A pytest ``-k`` expression: run only some checks.
    select: str | None = None
    extra_pytest_args: tuple[str, ...] = field(default=())
    #: Start from this database, at the start version, on the server ``server_handoff``
    #: describes (``db.throwaway.attached``), instead of restoring or sampling on a new
    #: server: the gate hands over the copy it has just restored and verified.
    database: str | None = None
    #: ``db.throwaway.attached.handoff(server)``; passed in the environment (it holds
    #: the throwaway server's passwords), never on the command line.
    server_handoff: str | None = field(default=None, repr=False)
    #: The start database's checksums, summed by the caller just before
    #: (``smoke.prepare.write_checksums``); only with ``database``.
    start_checksums: Path | None = None
    #: The caller proves the revert itself, and says how: no clone, the check is skipped
    #: with this reason (the gate reverts the same copy against the snapshot).
    reversibility_proven_by: str | None = None


@dataclass(frozen=True)
class SmokeReport:
    """pytest's exit code, where the reports are, and the parsed JSON summary."""

    exit_code: int
    junit_xml: Path
    json_summary: Path
    markdown_summary: Path
    summary: dict[str, Any]
    pytest_log: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "junit_xml": str(self.junit_xml),
            "json_summary": str(self.json_summary),
            "markdown_summary": str(self.markdown_summary),
            "pytest_log": str(self.pytest_log) if self.pytest_log else None,
            "summary": self.summary,
        }


def pytest_args(options: SmokeOptions) -> list[str]:
    """The ``python -m pytest`` argument list for ``options``."""
    if options.backend not in ("auto", "docker", "embedded"):
        raise CannotRun(
            f"unknown Postgres backend {options.backend!r}: choose auto, docker or embedded"
        )
    if options.post_deploy and options.stack_outputs is None:
        raise CannotRun("--post-deploy needs --stack-outputs FILE (or - for stdin)")
    if options.snapshot and not options.store:
        raise CannotRun("--snapshot needs --store (the snapshot store it lives in)")
    if options.database and not options.server_handoff:
        raise CannotRun("a start database needs the server it lives on (server_handoff)")
    if options.start_checksums and not options.database:
        raise CannotRun("start checksums are given only with the database they describe")
    out = options.output_dir
    args = [
        str(SUITE_DIR),
        "-p",
        "no:cacheprovider",
        # The project's own addopts deselect slow/docker tests; the suite runs everything.
        "-m",
        "",
        "-q",
        "-rfEs",
        f"--junitxml={out / JUNIT_XML}",
        f"--rootdir={REPO_ROOT}",
        f"--smoke-output-dir={out}",
        f"--smoke-migrations={options.migrations}",
        f"--smoke-schema={options.schema}",
        f"--smoke-backend={options.backend}",
        f"--smoke-sample-size={options.sample_size}",
        f"--smoke-lock-budget={options.lock_budget_seconds}",
        f"--smoke-ready-timeout={options.ready_timeout_seconds}",
        f"--smoke-dlq-timeout={options.dlq_timeout_seconds}",
    ]
    optional = {
        "--smoke-snapshot": options.snapshot,
        "--smoke-store": options.store,
        "--smoke-aws-endpoint-url": options.aws_endpoint_url,
        "--smoke-image": options.image,
        "--smoke-app-image": options.app_image,
        "--smoke-previous-app-image": options.previous_app_image,
        "--smoke-from-version": options.from_version,
        "--smoke-stack-outputs": options.stack_outputs,
        "--smoke-ca-bundle": options.ca_bundle,
        "--smoke-database": options.database,
        "--smoke-start-checksums": options.start_checksums,
        "--smoke-reversibility-proven-by": options.reversibility_proven_by,
    }
    args += [f"{flag}={value}" for flag, value in optional.items() if value is not None]
    if not options.queue_redrive:
        args.append("--smoke-no-redrive")
    if options.post_deploy:
        args.append("--smoke-post-deploy")
    if options.select:
        args += ["-k", options.select]
    args += list(options.extra_pytest_args)
    return args


def run_smoke(options: SmokeOptions) -> SmokeReport:
    """Run the suite in a subprocess; the report's exit code is pytest's."""
    args = pytest_args(options)
    out = options.output_dir
    writable_directory(out, "the smoke suite's reports (--output-dir)")
    for stale in (JUNIT_XML, JSON_SUMMARY, MARKDOWN_SUMMARY):
        (out / stale).unlink(missing_ok=True)
    python_path = [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, python_path))}
    # The suite uses no third-party pytest plugin; autoloading the installed ones
    # (hypothesis, schemathesis, benchmark, anyio) cost ~2 s of every run's start.
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env.pop(HANDOFF_VARIABLE, None)
    if options.server_handoff:
        env[HANDOFF_VARIABLE] = options.server_handoff
    stdin = None if options.stack_outputs == Path("-") else subprocess.DEVNULL
    # pytest's own report goes to a log beside the summaries: stdout stays for --json.
    with (out / PYTEST_LOG).open("wb") as log:
        completed = subprocess.run(
            [sys.executable, "-m", "pytest", *args],
            cwd=REPO_ROOT,
            env=env,
            stdin=stdin,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    summary_path = out / JSON_SUMMARY
    summary: dict[str, Any] = {}
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
    else:
        summary = {"error": f"pytest exited {completed.returncode} before writing a summary"}
    return SmokeReport(
        exit_code=completed.returncode,
        junit_xml=out / JUNIT_XML,
        json_summary=summary_path,
        markdown_summary=out / MARKDOWN_SUMMARY,
        summary=summary,
        pytest_log=out / PYTEST_LOG,
    )
