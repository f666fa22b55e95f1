"""A small HTTP client for the REST API tests (docs/openapi.yaml)."""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp

from ecigdis_ws.domain import UserId
from tests.support import WAIT_S, RunningServer

USER_API = "/api/messenger"
SERVER_API = "/api/server"
# API_KEY of the servers the `keyed` fixture starts (tests/transport/conftest.py).
SERVER_API_KEY = "main-site-key-0123456789abcdef0123456789"


@dataclasses.dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    @property
    def code(self) -> str | None:
        """The error code of a failure body."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            code: str = self.body["error"]["code"]
            return code
        return None


class Rest:
    """Requests to one running server, as a given user (a fresh token each call)."""

    def __init__(self, server: RunningServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    async def request(
        self,
        method: str,
        path: str,
        *,
        user: UserId | None = None,
        json: Any = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        wait_s: float = WAIT_S,
    ) -> Reply:
        headers = dict(headers or {})
        if user is not None:
            headers.setdefault("Authorization", f"Bearer {self.server.token(user)}")
        async with self.session.request(
            method, self.server.url + path, json=json, data=data, headers=headers,
            params=params, timeout=aiohttp.ClientTimeout(total=wait_s),
        ) as response:
            text = await response.text()
            try:
                body: Any = await response.json(content_type=None) if text else None
            except ValueError:
                body = text
            return Reply(response.status, body, response.headers)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", USER_API + path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("POST", USER_API + path, **kwargs)

    async def send(self, user: UserId, conversation: int, text: str, message_id: Any) -> Reply:
        return await self.post(
            f"/conversations/{conversation}/messages",
            user=user, json={"messageId": message_id, "text": text},
        )

    async def poll(
        self, user: UserId, cursor: str | None = None, wait_s: float = WAIT_S
    ) -> Reply:
        params = {} if cursor is None else {"cursor": cursor}
        return await self.get("/poll", user=user, params=params, wait_s=wait_s)

    async def server_call(
        self, method: str, path: str, key: str | None, json: Any = None
    ) -> Reply:
        headers = {} if key is None else {"X-API-Key": key}
        return await self.request(method, SERVER_API + path, json=json, headers=headers)
