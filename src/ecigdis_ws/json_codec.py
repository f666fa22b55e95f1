"""orjson behind the stdlib json interface python-socketio expects.

orjson refuses lone surrogates that the stdlib accepts; falling back to the stdlib
for those keeps hostile payloads a validation error (INVALID_PAYLOAD) rather than
a broken packet. orjson also reads an integer beyond 64 bits as a float, losing
digits (a messageId of 2**64 + 1 would be echoed as 2**64): text with a run of 19
or more digits is read by the stdlib, which keeps integers exact up to MAX_INT_DIGITS.
A longer integer literal is read as a float, as JavaScript's JSON.parse reads
every number: the stdlib would raise ValueError past Python's 4,300-digit limit
(a closed connection, or a 500), and no field takes such a number anyway, so
validation refuses it (INVALID_PAYLOAD) like any other wrong type.

Nesting deeper than orjson's limit (1024 arrays or objects) raises JsonTooDeep, a
ValueError, at once: the stdlib fallback would only recurse into RecursionError
(not a ValueError, so a caller catching ValueError let it through: a REST body of
1,100 nested arrays was a 500 with two chained tracebacks).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# 19 digits can exceed a signed 64-bit integer (9223372036854775807).
_LONG_DIGITS = re.compile(r"\d{19}")
_LONG_DIGITS_BYTES = re.compile(rb"\d{19}")
# No field takes a longer integer (ids fit 19 digits, a client's messageId 64
# characters); converting longer ones exactly costs time quadratic in digits.
MAX_INT_DIGITS = 64


class JsonTooDeep(ValueError):
    """JSON nested past what either parser reads; every caller that refuses text
    that is not JSON (ValueError) refuses this too."""

    def __init__(self) -> None:
        super().__init__(f"JSON nested deeper than {MAX_DEPTH} levels")


# orjson's own limit; the stdlib's recursion limit (1000 frames) lies about here too.
MAX_DEPTH = 1024
_ORJSON_TOO_DEEP = "depth limit exceeded"


def _stdlib_loads(text: str | bytes, kwargs: dict[str, Any]) -> Any:
    try:
        return json.loads(text, **{"parse_int": _int_or_float, **kwargs})
    except RecursionError:
        raise JsonTooDeep() from None


def _int_or_float(literal: str) -> int | float:
    """An integer literal: exact while it is short, a float (maybe inf) beyond."""
    if len(literal) - literal.startswith("-") > MAX_INT_DIGITS:
        return float(literal)
    return int(literal)


def dumps(obj: Any, **kwargs: Any) -> str:
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return json.dumps(obj, **{"separators": (",", ":"), **kwargs})


def loads(text: str | bytes, **kwargs: Any) -> Any:
    digits = _LONG_DIGITS.search(text) if isinstance(text, str) else (
        _LONG_DIGITS_BYTES.search(text))
    if digits is not None:
        return _stdlib_loads(text, kwargs)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith(_ORJSON_TOO_DEEP):
            raise JsonTooDeep() from None
        return _stdlib_loads(text, kwargs)
