"""A real HTTP server on a loopback port standing in for the portal's
AUTH_VERIFY_URL endpoint: it answers each token as a test says, and records
what it was asked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

VERIFY_PATH = "/api/messenger/verify-token"


@dataclass
class MainSite:
    # token -> (status, body); a str body is sent as HTML. Unknown tokens: 401.
    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    bearers: list[str | None] = field(default_factory=list)
    was_asked: asyncio.Event = field(default_factory=asyncio.Event)
    # Cleared, the site takes the request and answers nothing until it is set again
    # (it is set when the site stops).
    may_answer: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    def __post_init__(self) -> None:
        self.may_answer.set()

    def accept(self, token: str, answer: dict[str, Any]) -> None:
        self.answers[token] = (200, {"valid": True, **answer})

    async def verify(self, request: web.Request) -> web.StreamResponse:
        self.asked.append((await request.json())["token"])
        self.bearers.append(request.headers.get("Authorization"))
        self.was_asked.set()
        await self.may_answer.wait()
        status, body = self.answers.get(self.asked[-1], (401, {}))
        if isinstance(body, str):
            return web.Response(text=body, status=status, content_type="text/html")
        return web.json_response(body, status=status)


@asynccontextmanager
async def main_site_running() -> AsyncIterator[MainSite]:
    site = MainSite()
    app = web.Application()
    app.router.add_post(VERIFY_PATH, site.verify)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    site.url = f"http://127.0.0.1:{runner.addresses[0][1]}{VERIFY_PATH}"
    try:
        yield site
    finally:
        site.may_answer.set()
        await runner.cleanup()
