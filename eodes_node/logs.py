"""structlog set-up: JSON lines carrying the per-message context bound with contextvars.

Every line on stderr is one JSON object, also what the libraries log through the stdlib
``logging`` (aio-pika, aiormq, asyncio), Python warnings, and an exception nobody caught.
A broker link that drops and comes back is expected: what the AMQP client logs about it
comes out as a warning naming the cause, not an error with a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from types import TracebackType
from typing import Any

import aiormq
import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

BROKER_LOGGERS = ("aiormq", "aio_pika")
# The failures of a link that a robust connection survives by reconnecting.
LINK_DOWN: tuple[type[BaseException], ...] = (
    ConnectionError,
    OSError,
    TimeoutError,
    asyncio.CancelledError,
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelClosed,
    aiormq.exceptions.ChannelInvalidStateError,
)
# aiormq logs a connection the broker closed as an error whose cause is in its arguments.
CLOSED_BY_BROKER = "Unexpected connection close from remote"
# aiormq's line for each failed connection attempt, which aio-pika's next line repeats.
ATTEMPT_FAILED = "error when creating transport"


def _dumps(value: object, **_: object) -> str:
    return orjson.dumps(value, default=str).decode()


def _connection_closed(candidate: object) -> bool:
    """aiormq's plain RuntimeError for a channel asked of a connection that closed."""
    text = str(candidate)
    return (
        isinstance(candidate, RuntimeError)
        and text.startswith("<Connection")
        and (text.endswith(" closed"))
    )


def _link_cause(event: EventDict, args: tuple[Any, ...]) -> str | None:
    """Why the link went down, if this library record is about that, else None."""
    exc_info = event.get("exc_info")
    if isinstance(exc_info, tuple):
        candidates: list[object] = [exc_info[1], *args]
    else:
        candidates = list(args)
    for candidate in candidates:
        if isinstance(candidate, LINK_DOWN) or _connection_closed(candidate):
            return f"{type(candidate).__name__}: {candidate}"
    record = event.get("_record")
    if record is not None and str(record.msg).startswith(CLOSED_BY_BROKER) and args:
        return f"broker closed the connection: {args[-1]}"
    return None


def tame_broker_records(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """An AMQP client record about a dropped link becomes a warning naming its cause."""
    args = event.pop("positional_args", ())
    record = event.get("_record")
    if record is None or not record.name.startswith(BROKER_LOGGERS):
        return event
    cause = _link_cause(event, args if isinstance(args, tuple) else ())
    if cause is not None:
        event.pop("exc_info", None)
        event["cause"] = cause
        if record.levelno >= logging.WARNING:
            event["level"] = "warning"
    return event


def _not_repeated(record: logging.LogRecord) -> bool:
    """Drops aiormq's copy of a failed connection attempt: aio-pika logs the same
    attempt, with the URL and when it tries again, right after."""
    return not (record.name == "aiormq.connection" and str(record.msg).startswith(ATTEMPT_FAILED))


def _stdlib_handler(renderer: Processor) -> logging.Handler:
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            tame_broker_records,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
        pass_foreign_args=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(_not_repeated)
    return handler


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger("eodes_node").critical("uncaught_exception", exc_info=(kind, exc, tb))


def _log_unraisable(unraisable: Any) -> None:
    logging.getLogger("eodes_node").warning(
        "unraisable_exception: %s %r",
        unraisable.err_msg or "Exception ignored in",
        unraisable.object,
        exc_info=(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback),
    )


def configure(level: str = "info", fmt: str = "json") -> None:
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(_stdlib_handler(renderer))
    # The libraries' info lines (a reconnect in progress) add nothing to ours.
    root.setLevel(max(numeric, logging.WARNING))
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    sys.unraisablehook = _log_unraisable
