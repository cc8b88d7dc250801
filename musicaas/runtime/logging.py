"""One structlog configuration for every service: JSON lines when stderr is not a terminal,
each line inside a span carrying that span's ``trace_id`` and ``span_id`` (W3C hex), so that
logs and traces join up."""

from __future__ import annotations

import logging
import sys

import structlog

from musicaas.runtime import telemetry


def add_trace_ids(logger, method_name: str, event_dict: dict) -> dict:
    """structlog processor: ``trace_id`` (32 hex digits) and ``span_id`` (16) of the current
    OpenTelemetry span, when there is one."""
    ids = telemetry.current_trace_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


def configure_logging(*, service: str, level: str = "info", fmt: str = "auto") -> structlog.stdlib.BoundLogger:
    """Configure structlog (and route the standard library's logging through the same output),
    and tracing (:func:`musicaas.runtime.telemetry.configure_tracing`: the tracer provider
    named after ``service``, client spans on every ``grpc.aio`` channel opened from now on),
    so that the first call every service makes sets up both before it opens any channel.

    Parameters
    ----------
    service : str
        Name bound to every line as ``service``.
    level : str
        ``debug``, ``info``, ``warning``, ``error``.
    fmt : str
        ``json``, ``console``, or ``auto`` (JSON unless stderr is a terminal).
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    structlog.contextvars.bind_contextvars(service=service)
    telemetry.configure_tracing(service)
    return structlog.get_logger()

