"""Which Redis channel carries an emit between nodes (FANOUT_CHANNELS=per-room).

A conversation's room and a user's room each have their own channel; a node reads
a room's channel while it has a socket in the room or a long-poll watching it
(cluster/channel_subscriptions.py counts them). Everything else
(presence to every authenticated socket, an emit to a socket of an unknown node)
goes on the node-wide channel every node reads, and what is for one node only
(python-socketio's ack callbacks) on that node's own channel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ecigdis_ws.fanout.base import AUTHENTICATED_ROOM, CONVERSATION_ROOM_PREFIX, user_room

USER_ROOM_PREFIX = user_room("")
ROOM_PREFIXES = (CONVERSATION_ROOM_PREFIX, USER_ROOM_PREFIX)
# What `ChannelNames.kind` answers (a metric label).
CHANNEL_KINDS = ("everyone", "conversation", "user", "node")


@dataclass(frozen=True)
class ChannelNames:
    """Channel names under one cluster's prefix.

    `everyone` is the node-wide channel (the single channel of FANOUT_CHANNELS=single).
    Room channels take `room_base`: on a Redis Cluster that is the prefix without its
    hash tag, so each room's channel hashes to its own slot and the rooms spread
    over the shards (the keys keep the tag: see cluster/redis_connection.key_base).
    """

    everyone: str
    room_base: str
    per_room: bool = True  # False: FANOUT_CHANNELS=single, everything on `everyone`

    def of_room(self, room: str) -> str | None:
        """The channel of a conversation's or a user's room; None for any other."""
        if self.per_room and room.startswith(ROOM_PREFIXES):
            return f"{self.room_base}:room:{room}"
        return None

    def of_node(self, host_id: str) -> str:
        return f"{self.room_base}:node:{host_id}" if self.per_room else self.everyone

    def kind(self, channel: str) -> str:
        """A metric label: everyone, conversation, user or node."""
        if channel == self.everyone:
            return "everyone"
        rest = channel[len(self.room_base):]
        if rest.startswith(":room:" + CONVERSATION_ROOM_PREFIX):
            return "conversation"
        if rest.startswith(":room:"):
            return "user"
        return "node"


Route = tuple[str, dict[str, Any]]


def routes(names: ChannelNames, message: dict[str, Any],
           is_local_socket: Callable[[str], bool]) -> list[Route]:
    """Where python-socketio's pub/sub `message` goes: (channel, message) pairs.

    An emit to a list of rooms that all have channels goes to each room's channel,
    marked with its place in the list (`part`): a node in several of them delivers
    each part only to sockets of no earlier room, so each socket gets it once. An
    emit to a socket of this node is delivered already and goes nowhere.
    """
    method = message.get("method")
    if method == "callback":  # an ack's answer, for the node that asked
        return [(names.of_node(str(message.get("host_id"))), message)]
    if method not in ("emit", "close_room"):  # a socket of some other node
        return [(names.everyone, message)]
    room = message.get("room")
    if isinstance(room, str):
        channel = names.of_room(room)
        if channel is not None:
            return [(channel, message)]
        if room != AUTHENTICATED_ROOM and is_local_socket(room):
            return []
    elif isinstance(room, list) and room and all(isinstance(one, str) for one in room):
        channels = [names.of_room(one) for one in room]
        if all(channels):
            return [(str(channel), {**message, "part": part})
                    for part, channel in enumerate(channels)]
    return [(names.everyone, message)]


def one_part(message: dict[str, Any], members: Callable[[str], Any]) -> dict[str, Any] | None:
    """The emit a node delivers for one `part` of a list emit (see `routes`): to that
    part's room, skipping the members (here) of the rooms before it. None for a
    part that makes no sense (only a bug or a forger sends one: it is signed)."""
    rooms, part = message.get("room"), message.get("part")
    if not isinstance(rooms, list) or not isinstance(part, int) or not 0 <= part < len(rooms):
        return None
    skipped = {sid for room in rooms[:part] for sid in members(room)}
    given = message.get("skip_sid")
    skipped.update(given if isinstance(given, list) else [] if given is None else [given])
    return {**message, "room": rooms[part], "skip_sid": sorted(skipped) or None}
