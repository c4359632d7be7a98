"""Structured JSON logs (structlog), one line per event, with an allow-list of fields.

Privacy is enforced here rather than hoped for at every call site: only the
keys in `ALLOWED_FIELDS` reach the output, so a payload, an email or an
exception message (which can quote row values) passed by mistake is dropped.
Exceptions are reduced to their type name.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Final

import structlog

#: The only fields a log line may carry (besides the event name, level and time).
ALLOWED_FIELDS: Final = frozenset(
    {
        "role",
        "task_id",
        "message_id",
        "attempt",
        "max_attempts",
        "ai_model",
        "status",
        "outcome",
        "duration_ms",
        "retry_in_seconds",
        "error_type",
        "error_code",
        "stripe_event_id",
        "stripe_event_type",
        "method",
        "path",
        "status_code",
        "count",
        "reason",
        "setting",
        "port",
        "stack",
        "logger",
        "receive_count",
        "protected",
    }
)
_ALWAYS: Final = frozenset({"event", "level", "timestamp"})


def keep_allowed_fields(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: drop every key not on the allow-list; exceptions become a type name."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info:
        if isinstance(exc_info, BaseException):
            event_dict.setdefault("error_type", type(exc_info).__name__)
        elif isinstance(exc_info, tuple) and exc_info[0] is not None:
            event_dict.setdefault("error_type", exc_info[0].__name__)
    for key in list(event_dict):
        if key not in ALLOWED_FIELDS and key not in _ALWAYS:
            del event_dict[key]
    return event_dict


def _stdlib_message_only(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # Records from other libraries (uvicorn, botocore) carry free text that may quote
    # request data; keep their level and logger name, replace the text by a fixed one.
    record = event_dict.get("_record")
    if record is not None:
        event_dict["event"] = "library_log"
        event_dict["logger"] = record.name
        event_dict.pop("positional_args", None)
    return event_dict


_SHARED: Final[list[structlog.typing.Processor]] = [
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(level: int = logging.INFO) -> None:
    """JSON lines on stdout for structlog and for the standard library's loggers."""
    structlog.configure(
        processors=[
            *_SHARED,
            keep_allowed_fields,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED],
        processors=[
            _stdlib_message_only,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            keep_allowed_fields,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def get_logger(**context: Any) -> Any:
    """A structlog logger bound to ``context`` (allow-listed fields only)."""
    return structlog.get_logger().bind(**context)
