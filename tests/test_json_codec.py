"""json_codec.loads: nesting past the parsers' depth is JsonTooDeep, a ValueError,
whichever reader the text goes to (orjson, or the stdlib for long integers and
lone surrogates), never a RecursionError."""

from __future__ import annotations

import pytest

from ecigdis_ws import json_codec
from ecigdis_ws.json_codec import MAX_DEPTH, JsonTooDeep

PAST = MAX_DEPTH + 76


@pytest.mark.parametrize("text", [
    "[" * PAST + "]" * PAST,
    '{"a":' * PAST + "1" + "}" * PAST,
    "[" * PAST + "12345678901234567890" + "]" * PAST,  # the stdlib's reader
    '["\\ud800",' + "[" * PAST + "]" * PAST + "]",  # orjson refuses, the stdlib recurses
    ("[" * 100_000).encode(),
])
def test_json_nested_too_deeply_is_a_value_error(text: str | bytes) -> None:
    with pytest.raises(JsonTooDeep) as raised:
        json_codec.loads(text)
    assert isinstance(raised.value, ValueError)
    assert str(raised.value) == f"JSON nested deeper than {MAX_DEPTH} levels"


def test_json_as_deep_as_a_client_needs_still_reads() -> None:
    assert json_codec.loads("[" * 500 + "]" * 500) is not None
    assert json_codec.loads('{"a": [[["\\ud800"]]]}') == {"a": [[["\ud800"]]]}
    assert json_codec.loads("[[12345678901234567890]]") == [[12345678901234567890]]
