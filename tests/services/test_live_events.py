"""LiveEvents: the typing and presence a long-poll carries, kept briefly, scoped
by the room each was delivered to (services/live_events.py)."""

from __future__ import annotations

import pytest

from ecigdis_ws.clock import ManualClock
from ecigdis_ws.errors import ChatError
from ecigdis_ws.fanout.base import AUTHENTICATED_ROOM, conversation_room, user_room
from ecigdis_ws.services.live_events import BUFFER_MAX, MAX_AGE_S, LiveEvents


def typing(user: int, conversation: int) -> dict[str, object]:
    return {"userId": user, "conversationId": conversation, "isTyping": True}


def events(live: LiveEvents, after: int, user: int, conversations: set[int]) -> list[str]:
    return [f"{e.event}:{e.data['userId']}" for e in live.after(after, user, conversations)]


def test_typing_is_for_the_members_of_its_conversation_but_the_typer() -> None:
    live = LiveEvents(ManualClock())
    live.delivered("typing:indicator", typing(1, 7), conversation_room(7))
    assert events(live, 0, 2, {7}) == ["typing:indicator:1"]
    assert events(live, 0, 3, {8}) == []
    assert events(live, 0, 1, {7}) == []  # one's own typing is not echoed


def test_presence_follows_the_room_it_was_sent_to() -> None:
    live = LiveEvents(ManualClock())
    live.delivered("user:online", {"userId": 1, "name": "a"}, AUTHENTICATED_ROOM)
    live.delivered("user:offline", {"userId": 4, "lastSeen": "x"}, [user_room(2), user_room(5)])
    assert events(live, 0, 2, set()) == ["user:online:1", "user:offline:4"]
    assert events(live, 0, 3, set()) == ["user:online:1"]  # not 4's contact
    assert events(live, 0, 1, set()) == []


def test_other_events_and_rooms_are_not_kept() -> None:
    live = LiveEvents(ManualClock())
    live.delivered("message:new", {"userId": 1}, conversation_room(7))
    live.delivered("presence:list", {"users": []}, "some-socket-id")
    live.delivered("user:online", {"userId": 1}, "some-socket-id")
    live.delivered("typing:indicator", "not an object", conversation_room(7))
    assert live.last == 0


def test_a_position_takes_only_what_came_after_it() -> None:
    live = LiveEvents(ManualClock())
    live.delivered("typing:indicator", typing(1, 7), conversation_room(7))
    position = live.position()
    live.delivered("typing:indicator", typing(3, 7), conversation_room(7))
    assert events(live, live.parse(position), 2, {7}) == ["typing:indicator:3"]


def test_a_position_of_another_buffer_or_from_the_future_means_now() -> None:
    clock = ManualClock()
    live, other = LiveEvents(clock), LiveEvents(clock)
    live.delivered("typing:indicator", typing(1, 7), conversation_room(7))
    assert live.parse(other.position(0)) == live.last == 1
    assert live.parse(live.position(99)) == 1
    assert live.parse("") == 1
    for bad in ("1", "zz:1", f"{live.buffer_id}:", f"{live.buffer_id}:-1", f"{live.buffer_id}:a"):
        with pytest.raises(ChatError):
            live.parse(bad)


def test_events_are_kept_at_most_max_age_and_buffer_max() -> None:
    clock = ManualClock()
    live = LiveEvents(clock)
    live.delivered("typing:indicator", typing(1, 7), conversation_room(7))
    clock.advance(MAX_AGE_S + 0.1)
    live.delivered("typing:indicator", typing(3, 7), conversation_room(7))
    assert events(live, 0, 2, {7}) == ["typing:indicator:3"]
    for n in range(BUFFER_MAX + 5):
        live.delivered("typing:indicator", typing(100 + n, 7), conversation_room(7))
    kept = live.after(0, 2, {7})
    assert len(kept) == BUFFER_MAX and kept[0].data["userId"] == 105


def test_listeners_hear_each_kept_event() -> None:
    live = LiveEvents(ManualClock())
    heard: list[int] = []
    live.on_event(lambda event: heard.append(event.number))
    live.delivered("typing:indicator", typing(1, 7), conversation_room(7))
    live.delivered("message:new", {}, conversation_room(7))
    assert heard == [1]
