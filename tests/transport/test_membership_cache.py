"""Membership checks come from a cache (services/access.py), bounded by MEMBERSHIP_CACHE_S."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from tests.support import RunningServer
from tests.transport.conftest import room

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]


async def _remove_behind_the_servers_back(server: RunningServer, conversation: int) -> None:
    """As another node or an operator would: straight in the database."""
    storage = server.chat.storage
    prefix = server.settings.db_table_prefix
    await storage.engine.execute(  # type: ignore[attr-defined]
        f"DELETE FROM {prefix}members WHERE conversation_id = ? AND user_id = ?",
        (conversation, "1"),
    )


async def _send(server: RunningServer, conversation: int, message_id: str) -> dict[str, object]:
    [alice] = server.clients[:1]
    reply: dict[str, object] = await alice.call("message:send", {
        "conversationId": conversation, "text": "hi", "messageId": message_id
    })
    return reply


async def test_a_membership_removed_elsewhere_is_honoured_once_the_cache_entry_expires(
    make_server: ServerFactory,
) -> None:
    async with make_server(MEMBERSHIP_CACHE_S="30") as server:
        conversation, _ = await room(server, 1)
        assert (await _send(server, conversation, "before"))["ok"]
        await _remove_behind_the_servers_back(server, conversation)
        assert (await _send(server, conversation, "cached"))["ok"]  # within the 30 s
        await server.advance(31)
        reply = await _send(server, conversation, "after")
        assert reply["ok"] is False and reply["error"]["code"] == "FORBIDDEN"  # type: ignore[index]


async def test_with_the_cache_off_a_removed_membership_is_refused_at_once(
    make_server: ServerFactory,
) -> None:
    async with make_server(MEMBERSHIP_CACHE_S="0") as server:
        conversation, _ = await room(server, 1)
        assert (await _send(server, conversation, "before"))["ok"]
        await _remove_behind_the_servers_back(server, conversation)
        reply = await _send(server, conversation, "after")
        assert reply["ok"] is False and reply["error"]["code"] == "FORBIDDEN"  # type: ignore[index]
