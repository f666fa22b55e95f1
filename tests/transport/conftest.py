from __future__ import annotations

from tests.support import ChatClient, RunningServer


async def room(server: RunningServer, *users: int) -> tuple[int, list[ChatClient]]:
    """A conversation of `users`, each connected and joined."""
    conversation = await server.conversation(*users)
    clients = []
    for user in users:
        client = await server.client(user, f"user{user}")
        assert (await client.call("conversation:join", {"conversationId": conversation}))["ok"]
        clients.append(client)
    return conversation, clients
