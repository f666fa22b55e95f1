"""orjson behind the stdlib json interface python-socketio expects.

orjson refuses lone surrogates that the stdlib accepts; falling back to the stdlib
for those keeps hostile payloads a validation error (INVALID_PAYLOAD) rather than
a broken packet.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(obj: Any, **kwargs: Any) -> str:
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return json.dumps(obj, **{"separators": (",", ":"), **kwargs})


def loads(text: str | bytes, **kwargs: Any) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text, **kwargs)
