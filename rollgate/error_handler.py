"""The one place where failures become exit codes, and where output is written.

    0    done
    1    a check failed or an action was refused   (CheckFailed)
    2    could not run: usage, config, unreachable  (CannotRun, UsageError, and
         database failures that are not Rollgate's: a lost connection, a
         terminated backend, a missing privilege, a server out of resources)
    3    internal error: a bug in Rollgate          (anything else)
    130  interrupted (Ctrl-C, SIGTERM)

Expected failures print ``FAILED: <message>`` on stderr, never a traceback.
A bug prints one line on stderr and writes the traceback to a crash file, so
the 3 a.m. terminal stays readable and the evidence is kept.

Everything Rollgate prints goes through ``write_out``, ``write_err`` or
``write_json`` here. They scrub every secret registered with
``core.redaction`` (so do crash files), and they survive a reader that went
away: when stdout is a closed pipe (``rollgate db status | head -0``) the
rest of the output is dropped quietly and the exit code stays the one the
work earned. Exiting 141 (SIGPIPE) instead would make ``set -o pipefail``
report a completed migrate as failed; the reader's own exit status already
tells its side of the story.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TextIO

import psycopg

from core.errors import CannotRun, CheckFailed
from core.redaction import holds_secret, scrub, scrub_data

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_CANNOT_RUN = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130

# SQLSTATEs that mean the session is gone (besides class 08, connection exception).
_SESSION_ENDED = frozenset({"57P01", "57P02", "57P03"})  # admin/crash shutdown, cannot connect now


class Interrupted(BaseException):
    """SIGTERM, raised like Ctrl-C so every ``with`` block unwinds and rolls back."""


class UsageError(CannotRun):
    """The command line itself is wrong (argparse's complaint); ``usage`` shows the right form."""

    def __init__(self, message: str, *, usage: str = "", help_text: str = "") -> None:
        super().__init__(message, details={"usage": usage} if usage else None)
        self.usage = usage
        self.help_text = help_text  # shown on stderr instead of the usage line, when given


def exit_code_for(error: BaseException) -> int:
    """The exit code of a failure; the single mapping in the code base."""
    return _classify(error)[0]


def _classify(error: BaseException) -> tuple[int, str]:
    """Exit code and message of a failure ("" for a message of the error's own)."""
    interrupt = _interrupt_underneath(error)
    if interrupt is not None and interrupt is not error:
        # Ctrl-C or SIGTERM landed inside a library's cleanup (psycopg leaving
        # pipeline mode, a rollback on a busy connection), which raised its own
        # error on the way out: the run was still interrupted, not broken.
        return EXIT_INTERRUPTED, (
            "interrupted; work in progress was rolled back or left resumable "
            f"(while stopping: {_one_line(error)})"
        )
    if isinstance(error, CheckFailed):
        return EXIT_CHECK_FAILED, ""
    if isinstance(error, CannotRun):
        return EXIT_CANNOT_RUN, ""
    if isinstance(error, KeyboardInterrupt | Interrupted):
        return EXIT_INTERRUPTED, "interrupted; work in progress was rolled back or left resumable"
    outside_failure = _database_failure(error) or _aws_setup_failure(error)
    if outside_failure:
        return EXIT_CANNOT_RUN, outside_failure
    return EXIT_INTERNAL, ""


# botocore's names for "this machine's AWS setup cannot reach AWS": no region,
# no or bad credentials, a broken config file or profile, an endpoint that does
# not answer. The operator fixes them, not Rollgate; a refused API call of any
# other kind still reaches the callers that name the resource.
_AWS_SETUP_ERRORS = (
    "NoRegionError",
    "InvalidRegionError",
    "NoCredentialsError",
    "PartialCredentialsError",
    "CredentialRetrievalError",
    "TokenRetrievalError",
    "SSOError",
    "ProfileNotFound",
    "ConfigParseError",
    "InvalidConfigError",
    "InvalidEndpointConfigurationError",
    "ConnectionError",
    "HTTPClientError",
)


def _aws_setup_failure(error: BaseException) -> str:
    """The message for an AWS configuration or reachability failure, else ""."""
    # By name along the class chain: botocore is imported only by commands that use AWS.
    if not type(error).__module__.startswith("botocore"):
        return ""
    names = {cls.__name__ for cls in type(error).__mro__}
    if names.isdisjoint(_AWS_SETUP_ERRORS):
        return ""
    return (
        f"AWS is not usable from here: {_one_line(error)} ({type(error).__name__}). Check the "
        "region (AWS_DEFAULT_REGION or the profile's), the credentials (AWS_PROFILE, "
        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and AWS_ENDPOINT_URL or --aws-endpoint-url; "
        "nothing was changed by the failed call"
    )


def _interrupt_underneath(error: BaseException) -> BaseException | None:
    """The Ctrl-C or SIGTERM that ``error`` was raised while handling, if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt | Interrupted):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _database_failure(error: BaseException) -> str:
    """The message for a database failure that is not Rollgate's fault, else ""."""
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        return (
            "the database role lacks a privilege this command needs: "
            f"{error.diag.message_primary or _one_line(error)} "
            "(SQLSTATE 42501). Grant it to the role (GRANT ... ON ... TO ...), or run as a "
            "role that has it; statements of the failed step were rolled back"
        )
    if isinstance(error, psycopg.OperationalError):
        state = error.sqlstate or ""
        if not state or state.startswith("08") or state in _SESSION_ENDED:
            return (
                f"lost the connection to the database: {_one_line(error)}. The transaction in "
                "flight was rolled back by the server; run the command again when the server "
                "is back"
            )
        if state.startswith("53"):  # disk full, out of memory, too many connections
            return (
                f"the database server ran out of resources: {_one_line(error)} "
                f"(SQLSTATE {state}); the transaction in flight was rolled back"
            )
    return ""


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """CI cancels with SIGTERM: unwind cleanly (transactions roll back) instead of dying."""

    def raise_interrupted(signum: int, frame: FrameType | None) -> None:
        raise Interrupted()

    previous = signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _LibraryWarnings(logging.Handler):
    """Libraries' log records (psycopg's "error ignored in rollback"), scrubbed, on stderr.

    Without a handler Python prints them raw through ``logging.lastResort``,
    past the secret scrubber and the closed-pipe handling of ``write_err``.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            write_err(f"rollgate: {record.name}: {' '.join(record.getMessage().split())}")
        except Exception:  # a log line must never turn into the run's failure
            self.handleError(record)


@contextmanager
def library_warnings_scrubbed() -> Iterator[None]:
    """Route warnings of loggers nobody configured through ``write_err`` for the run."""
    root = logging.getLogger()
    if root.handlers:  # configured by the caller (a test, an embedding program)
        yield
        return
    handler = _LibraryWarnings(logging.WARNING)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def run_guarded(command: Callable[[], int], *, command_name: str | None, as_json: bool) -> int:
    """Run ``command`` and turn whatever it raises into an exit code and a message."""
    _lost_output.clear()
    code = _run_and_classify(command, command_name=command_name, as_json=as_json)
    for stream, reason in _lost_output:
        if stream is sys.stdout:
            # The results never reached their reader: not a success, whatever the work did.
            write_err(f"FAILED: could not write the output to stdout: {reason}")
            return code or EXIT_CANNOT_RUN
    return code


def _run_and_classify(
    command: Callable[[], int], *, command_name: str | None, as_json: bool
) -> int:
    try:
        with sigterm_as_interrupt(), library_warnings_scrubbed():
            return command()
    except (Exception, KeyboardInterrupt, Interrupted) as error:
        code, message = _classify(error)
        if code == EXIT_INTERNAL:  # a bug: keep the evidence, spare the terminal
            crash_file = _write_crash_file(error)
            message = (
                f"internal error ({type(error).__name__}: {error}). "
                f"This is a bug in Rollgate; the traceback is in {crash_file}"
            )
        return report_failure(error, code, command_name, as_json, message=message)


def report_failure(
    error: BaseException,
    code: int,
    command_name: str | None,
    as_json: bool,
    *,
    message: str = "",
) -> int:
    """Print a failure: a JSON envelope on stdout, or ``FAILED: ...`` on stderr."""
    text = message or getattr(error, "message", "") or _one_line(error)
    if as_json:
        details = dict(getattr(error, "details", {}))
        if isinstance(error, psycopg.Error) and error.sqlstate:
            details["sqlstate"] = error.sqlstate
        write_json(
            envelope(
                command_name,
                code,
                error={"type": type(error).__name__, "message": text, "details": details},
            )
        )
    else:
        write_err(f"FAILED: {text}")
    return code


def report_usage_error(error: UsageError, command_name: str | None, as_json: bool) -> int:
    """argparse's complaint: usage and message on stderr; under --json also one envelope."""
    program = "rollgate" + (f" {command_name}" if command_name else "")
    write_err(f"{(error.help_text or error.usage).rstrip()}\n{program}: error: {error.message}")
    if as_json:
        write_json(
            envelope(
                command_name,
                EXIT_CANNOT_RUN,
                error={"type": "UsageError", "message": error.message, "details": error.details},
            )
        )
    return EXIT_CANNOT_RUN


def envelope(
    command_name: str | None,
    exit_code: int,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``--json`` document: one per run, on stdout."""
    document: dict[str, Any] = {"ok": exit_code == 0, "command": command_name}
    document["exit_code"] = exit_code
    if error is None:
        document["result"] = result
    else:
        document["error"] = error
    return document


# --- writing ------------------------------------------------------------------

# Streams whose reader went away; nothing more is written to them.
_closed_streams: list[TextIO] = []
# Streams a write failed on for another reason than a reader leaving.
_lost_output: list[tuple[TextIO, str]] = []


def write_out(text: str) -> None:
    """A line of results on stdout, scrubbed."""
    _write(sys.stdout, text)


def write_err(text: str) -> None:
    """A line for the person (progress, failures) on stderr, scrubbed."""
    _write(sys.stderr, text)


def write_json(document: dict[str, Any]) -> None:
    """One JSON document on stdout, with every string in it scrubbed."""
    text = json.dumps(document, indent=2, default=str)
    if holds_secret(text):  # round-trip: scrub values, never the JSON syntax
        text = json.dumps(scrub_data(json.loads(text)), indent=2)
    _write(sys.stdout, text)


# Characters that let a value rewrite the terminal or forge lines: C0 controls
# but tab and newline (escape sequences, carriage return), DEL, C1 controls,
# and the bidirectional overrides that make text read backwards.
_TERMINAL_CONTROLS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def control_character_in(text: str) -> str:
    """The first terminal control or bidi character in ``text`` (escaped), or "".

    Tab and newline are not among them: a file name may hold them, and the
    path options name such a file in their message.
    """
    found = _TERMINAL_CONTROLS.search(text)
    return _escaped(found) if found else ""


def _escaped(match: re.Match[str]) -> str:
    return match[0].encode("unicode_escape").decode("ascii")


def _write(stream: TextIO | None, text: str) -> None:
    if stream is None or any(stream is closed for closed in _closed_streams):
        return
    encoding = getattr(stream, "encoding", None) or "utf-8"
    # A value from a store or a hand-edited file prints as \x1b, never as the
    # escape sequence it holds; undecodable bytes from argv print as \udcff.
    printable = _TERMINAL_CONTROLS.sub(_escaped, scrub(text))
    printable = printable.encode(encoding, "backslashreplace").decode(encoding, "replace")
    try:
        stream.write(printable + "\n")
        stream.flush()
    except OSError as exc:
        if not isinstance(exc, BrokenPipeError) and exc.errno != errno.EPIPE:
            # A full disk, an I/O error: unlike a reader that left, nobody
            # chose to drop this output. Raising here would lose the exit code
            # the work earned (and, while reporting a failure, print a
            # traceback); run_guarded reports it once the command returns.
            _lost_output.append((stream, exc.strerror or type(exc).__name__))
        _closed_streams.append(stream)
        _discard_pending_output(stream)


def _discard_pending_output(stream: TextIO) -> None:
    """Point the stream's descriptor at /dev/null (Python's advice for EPIPE).

    What is still buffered then drains into /dev/null at exit instead of
    raising a second BrokenPipeError from the interpreter's final flush.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (an in-process capture): nothing is flushed at exit


def _write_crash_file(error: BaseException) -> str:
    handle, path = tempfile.mkstemp(prefix="rollgate-crash-", suffix=".log")
    with os.fdopen(handle, "w", encoding="utf-8", errors="backslashreplace") as crash:
        crash.write(scrub("".join(traceback.format_exception(error))))
    return path
