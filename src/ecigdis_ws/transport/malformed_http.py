"""HTTP that aiohttp cannot parse: one WARNING line, not a traceback.

aiohttp answers a request it cannot parse itself (400, connection closed): a
header line without a colon, a broken chunk size, a body that claims gzip and
is not. It logs each at ERROR with the parser's traceback, "Error handling
request" (or, for a body it fails to decode while dropping it after an early
answer, "Unhandled exception"), so any client could write tracebacks into the
log at will. This filter on aiohttp's server logger turns those records, and only
those (their exception is one of aiohttp's HTTP parsing errors, or caused by
one), into one WARNING line naming the fault; every other record passes as it is.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

SERVER_LOGGER = "aiohttp.server"


def _parse_error(exc: BaseException | None) -> HttpProcessingError | None:
    while exc is not None:
        if isinstance(exc, HttpProcessingError):
            return exc
        exc = exc.__cause__
    return None


class MalformedHttpFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        fault = _parse_error(record.exc_info[1] if record.exc_info else None)
        if fault is not None:
            record.msg = "malformed HTTP request, answered 400 and closed: %s"
            record.args = (fault.message.strip().splitlines()[0] if fault.message else "",)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_malformed_http() -> None:
    """Installed once per process, whatever number of servers it runs."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, MalformedHttpFilter) for f in logger.filters):
        logger.addFilter(MalformedHttpFilter())
