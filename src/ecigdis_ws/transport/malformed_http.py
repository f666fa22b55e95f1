"""HTTP that aiohttp cannot parse: one WARNING line, not a traceback.

aiohttp answers a request it cannot parse itself (400, connection closed): a
header line without a colon, a broken chunk size, a body that claims gzip and
is not. It logs each at ERROR with the parser's traceback, "Error handling
request" (or, for a body it fails to decode while dropping it after an early
answer, "Unhandled exception"), so any client could write tracebacks into the
log at will. This filter on aiohttp's server logger turns those records, and only
those (their exception is one of aiohttp's HTTP parsing errors, or caused by
one), into one WARNING line naming the fault; every other record passes as it is.

The line names the fault's kind, never the bytes the client sent: aiohttp's
messages quote them (a header or request line over 8190 bytes as its first 100,
`Bearer eyJhbGciOi...` and a token's payload; others a whole request line), and
a refused token would be in the log. Only the message's first line up to its
first colon or quote is kept ("Got more than 8190 bytes when reading"), after
the exception's class name.
"""

from __future__ import annotations

import logging
import re

from aiohttp.http_exceptions import HttpProcessingError

SERVER_LOGGER = "aiohttp.server"
# Where an aiohttp parser message starts quoting the client's bytes.
_QUOTED = re.compile(r"[:'\"\r\n]")
# aiohttp's own words are shorter; anything longer is cut, whatever it is.
MAX_HEAD = 60


def _parse_error(exc: BaseException | None) -> HttpProcessingError | None:
    while exc is not None:
        if isinstance(exc, HttpProcessingError):
            return exc
        exc = exc.__cause__
    return None


def describe(fault: HttpProcessingError) -> str:
    """The kind of fault, without a byte of the request: `LineTooLong (Got more
    than 8190 bytes when reading)`."""
    head = _QUOTED.split(fault.message or "", maxsplit=1)[0].strip()[:MAX_HEAD]
    kind = type(fault).__name__
    return f"{kind} ({head})" if head else kind


class MalformedHttpFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        fault = _parse_error(record.exc_info[1] if record.exc_info else None)
        if fault is not None:
            record.msg = "malformed HTTP request, answered 400 and closed: %s"
            record.args = (describe(fault),)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_malformed_http() -> None:
    """Installed once per process, whatever number of servers it runs."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, MalformedHttpFilter) for f in logger.filters):
        logger.addFilter(MalformedHttpFilter())
