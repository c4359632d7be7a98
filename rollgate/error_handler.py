"""The one place where failures become exit codes and messages.

    0    done
    1    a check failed or an action was refused   (CheckFailed)
    2    could not run: usage, config, unreachable  (CannotRun)
    3    internal error: a bug in Rollgate          (anything else)
    130  interrupted (Ctrl-C, SIGTERM)

Expected failures print ``FAILED: <message>`` on stderr, never a traceback.
A bug prints one line on stderr and writes the traceback to a crash file, so
the 3 a.m. terminal stays readable and the evidence is kept.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from core.errors import CannotRun, CheckFailed, RollgateError

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_CANNOT_RUN = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


class Interrupted(BaseException):
    """SIGTERM, raised like Ctrl-C so every ``with`` block unwinds and rolls back."""


def exit_code_for(error: BaseException) -> int:
    """The exit code of a failure; the single mapping in the code base."""
    if isinstance(error, CheckFailed):
        return EXIT_CHECK_FAILED
    if isinstance(error, CannotRun):
        return EXIT_CANNOT_RUN
    if isinstance(error, KeyboardInterrupt | Interrupted):
        return EXIT_INTERRUPTED
    return EXIT_INTERNAL


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


def run_guarded(command: Callable[[], int], *, command_name: str, as_json: bool) -> int:
    """Run ``command`` and turn whatever it raises into an exit code and a message."""
    try:
        with sigterm_as_interrupt():
            return command()
    except RollgateError as error:
        return _report(error, exit_code_for(error), command_name, as_json)
    except (KeyboardInterrupt, Interrupted) as error:
        message = "interrupted; work in progress was rolled back or left resumable"
        return _report(error, EXIT_INTERRUPTED, command_name, as_json, message=message)
    except Exception as error:  # a bug: keep the evidence, spare the terminal
        crash_file = _write_crash_file(error)
        message = (
            f"internal error ({type(error).__name__}: {error}). "
            f"This is a bug in Rollgate; the traceback is in {crash_file}"
        )
        return _report(error, EXIT_INTERNAL, command_name, as_json, message=message)


def _report(
    error: BaseException, code: int, command_name: str, as_json: bool, *, message: str = ""
) -> int:
    text = message or getattr(error, "message", str(error))
    if as_json:
        payload: dict[str, Any] = {
            "ok": False,
            "command": command_name,
            "exit_code": code,
            "error": {
                "type": type(error).__name__,
                "message": text,
                "details": getattr(error, "details", {}),
            },
        }
        print(json.dumps(payload, indent=2, default=str), flush=True)
    else:
        print(f"FAILED: {text}", file=sys.stderr, flush=True)
    return code


def _write_crash_file(error: BaseException) -> str:
    handle, path = tempfile.mkstemp(prefix="rollgate-crash-", suffix=".log")
    with os.fdopen(handle, "w") as crash:
        crash.write("".join(traceback.format_exception(error)))
    return path
