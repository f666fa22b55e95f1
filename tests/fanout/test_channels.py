"""Where an emit goes between nodes (fanout/channels.py), and how a node delivers one
part of an emit to several rooms so that each socket gets it once."""

from __future__ import annotations

from typing import Any

from ecigdis_ws.fanout.channels import ChannelNames, one_part, routes

PER_ROOM = ChannelNames("{p}:fanout", "p")
SINGLE = ChannelNames("{p}:fanout", "p", per_room=False)


def emit(room: Any, **extra: Any) -> dict[str, Any]:
    return {"method": "emit", "event": "e", "data": [1], "room": room, "host_id": "h1", **extra}


def nowhere(_: str) -> bool:
    return False


def test_a_conversation_or_user_room_goes_on_its_own_channel_without_the_hash_tag() -> None:
    message = emit("conversation:7")
    assert routes(PER_ROOM, message, nowhere) == [("p:room:conversation:7", message)]
    assert routes(PER_ROOM, emit("user:42"), nowhere)[0][0] == "p:room:user:42"


def test_everyone_authenticated_and_no_room_go_on_the_node_wide_channel() -> None:
    for room in ("authenticated", None):
        assert routes(PER_ROOM, emit(room), lambda _: True) == [("{p}:fanout", emit(room))]


def test_an_emit_to_a_socket_of_this_node_is_not_published() -> None:
    assert routes(PER_ROOM, emit("sid-here"), lambda sid: sid == "sid-here") == []
    assert routes(SINGLE, emit("sid-here"), lambda sid: sid == "sid-here") == []


def test_an_emit_to_a_socket_elsewhere_goes_to_every_node() -> None:
    assert routes(PER_ROOM, emit("sid-there"), nowhere)[0][0] == "{p}:fanout"


def test_a_list_of_rooms_goes_to_each_rooms_channel_numbered() -> None:
    message = emit(["user:1", "user:2"])
    assert routes(PER_ROOM, message, nowhere) == [
        ("p:room:user:1", {**message, "part": 0}),
        ("p:room:user:2", {**message, "part": 1}),
    ]


def test_a_list_with_a_room_without_a_channel_goes_whole_to_every_node() -> None:
    message = emit(["user:1", "authenticated"])
    assert routes(PER_ROOM, message, nowhere) == [("{p}:fanout", message)]


def test_an_acks_answer_goes_to_the_node_that_asked() -> None:
    answer = {"method": "callback", "host_id": "h9", "sid": "s", "id": 1, "args": []}
    assert routes(PER_ROOM, answer, nowhere) == [("p:node:h9", answer)]
    assert routes(SINGLE, answer, nowhere) == [("{p}:fanout", answer)]


def test_a_disconnect_of_a_socket_elsewhere_goes_to_every_node() -> None:
    message = {"method": "disconnect", "sid": "s", "namespace": "/", "host_id": "h1"}
    assert routes(PER_ROOM, message, nowhere) == [("{p}:fanout", message)]


def test_with_a_single_channel_everything_goes_on_it() -> None:
    for room in ("conversation:7", "user:1", ["user:1", "user:2"]):
        assert routes(SINGLE, emit(room), nowhere) == [("{p}:fanout", emit(room))]


def test_a_part_skips_the_sockets_of_earlier_rooms_and_the_given_one() -> None:
    rooms = {"user:1": {"a": 1, "b": 1}, "user:2": {"b": 1, "c": 1, "d": 1}}
    part = one_part(emit(["user:1", "user:2"], part=1, skip_sid="d"),
                    lambda room: rooms.get(room, {}))
    assert part is not None
    assert (part["room"], part["skip_sid"]) == ("user:2", ["a", "b", "d"])
    first = one_part(emit(["user:1", "user:2"], part=0), lambda room: rooms.get(room, {}))
    assert first is not None
    assert (first["room"], first["skip_sid"]) == ("user:1", None)


def test_a_part_out_of_range_or_without_a_list_is_refused() -> None:
    for bad in (emit(["user:1"], part=1), emit(["user:1"], part=-1), emit("user:1", part=0),
                emit(["user:1"], part="0")):
        assert one_part(bad, lambda room: {}) is None
