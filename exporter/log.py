"""Structured logging: JSON lines when stderr is not a terminal, readable console output otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from exporter.core import redact


def _redact_strings(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Last line of defence: no connection string with credentials leaves the process.
    """Scrub credentials from any connection string in an event's values."""
    for key, value in event.items():
        if isinstance(value, str) and "@" in value:
            event[key] = redact(value)
    return event


class RateLimit(logging.Filter):
    """Lets at most `burst` records per logger and message through each `window` seconds, then one summary.

    When the machine runs out of file descriptors, asyncio logs a traceback per refused accept
    (tens of thousands a second); this keeps the log readable and small.
    """

    def __init__(self, burst: int = 5, window: float = 10.0) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """True to emit the record."""
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        start, count = self._seen.get(key, (now, 0))
        if now - start > self.window:
            if count > self.burst:
                record.msg = f"{record.msg} (and {count - self.burst} more like it in {self.window:g} s)"
            self._seen[key] = (now, 1)
            return True
        self._seen[key] = (start, count + 1)
        return count < self.burst


def setup_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger (uvicorn, apscheduler) to render alike."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_strings,
    ]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The scheduler logs every run at INFO and every skipped overlap at WARNING; our own
    # refresh events already say what matters.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.getLogger("pymongo").setLevel(logging.WARNING)
    # Under a flood of bad or refused connections these two log one line per connection.
    for name in ("asyncio", "uvicorn.error"):
        target = logging.getLogger(name)
        if not any(isinstance(f, RateLimit) for f in target.filters):
            target.addFilter(RateLimit())


def get_logger(name: str = "exporter") -> structlog.stdlib.BoundLogger:
    """A structlog logger; events are short lowercase names with key-value context."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
