"""GET /api/messenger/poll: the event log's events, the live typing and presence,
and the poller counted online while polling (services/presence.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ecigdis_ws.domain import Identity
from ecigdis_ws.services.event_feed import EventFeed
from ecigdis_ws.services.live_events import LiveEvents
from ecigdis_ws.services.presence import PresenceService


@dataclass(frozen=True)
class PollAnswer:
    cursor: int
    events: list[dict[str, Any]]  # `{event, data}`: the log's in order, then the live ones
    live: str

    def wire(self) -> dict[str, Any]:
        return {"cursor": str(self.cursor), "events": self.events, "live": self.live}


class LongPollService:
    def __init__(self, *, feed: EventFeed, live: LiveEvents, presence: PresenceService) -> None:
        self._feed = feed
        self._live = live
        self._presence = presence

    async def poll(self, identity: Identity, cursor: int | None, live: str | None) -> PollAnswer:
        """The events after `cursor` (from now without one) and, when the poll asks
        for them with `live` (empty: from now), the live events after it; held up
        to LONG_POLL_TIMEOUT_MS when there are none. Without `live` a poll gets no
        typing or presence, as before there were any: older clients see no change."""
        after = None if live is None else self._live.parse(live)
        async with self._presence.polling(identity.user_id, identity.name):
            page = await self._feed.poll_page(identity.user_id, cursor, after)
        events = [event.wire() for event in page.events]
        events += [event.wire() for event in page.live]
        return PollAnswer(page.cursor, events, self._live.position(page.live_after))
