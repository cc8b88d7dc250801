"""One structlog configuration for every service: JSON lines when stderr is not a terminal."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(*, service: str, level: str = "info", fmt: str = "auto") -> structlog.stdlib.BoundLogger:
    """Configure structlog (and route the standard library's logging through the same output).

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
    return structlog.get_logger()

