"""structlog set-up: console in development, JSON lines in production.

Socket id and user id are bound per event through contextvars, so every line a
handler logs carries them. Tokens and message text are never passed to a logger.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from ecigdis_ws.settings import Settings

# The socket event being handled: (sid, user id, event name). One ContextVar set
# per event is far cheaper than structlog's bound_contextvars on this hot path.
EVENT_CONTEXT: contextvars.ContextVar[tuple[str, Any, str] | None] = contextvars.ContextVar(
    "ecigdis_ws_event", default=None
)


def merge_event_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    context = EVENT_CONTEXT.get()
    if context is not None:
        sid, user_id, event = context
        event_dict.setdefault("sid", sid)
        event_dict.setdefault("user_id", user_id)
        event_dict.setdefault("socket_event", event)
    return event_dict


def configure_logging(settings: Settings) -> None:
    level = logging.getLevelName(settings.log_level.upper())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if settings.json_logs
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        merge_event_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Library loggers (aiohttp, engineio) follow the same level and the same format:
    # in production each of their records, a traceback included, is one JSON line.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.WARNING))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
