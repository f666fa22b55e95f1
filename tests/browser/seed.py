"""A long conversation for the demo page's tests: messages sent through the REST API
by a demo user (POST /dev/token, then POST .../messages), as another window would
send them, before the page under test opens."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from typing import Any

from tests.browser.support import ChatServer

REQUEST_TIMEOUT_S = 10


def _post(url: str, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
        return json.loads(response.read())


def _send_all(server_url: str, name: str, texts: list[str]) -> int:
    login = _post(f"{server_url}/dev/token", {"name": name})
    lobby: int = login["lobby"]["conversationId"]
    for text in texts:
        _post(f"{server_url}/api/messenger/conversations/{lobby}/messages",
              {"text": text, "messageId": str(uuid.uuid4())}, login["token"])
    return lobby


async def seed_lobby(server: ChatServer, name: str, texts: list[str]) -> int:
    """`name` signs in and sends `texts` to the Lobby, in order; the Lobby's id."""
    return await asyncio.to_thread(_send_all, server.url, name, texts)
