"""The browser side served beside Socket.IO: ChatManager.js, the demo page, /dev/token.

- `GET /client/chat-manager.js` (and its source map): the ChatManager bundle that
  `make client` builds from client/ into static/build/. Without a build the route
  answers 404 with a text saying so; the rest of the server does not need it.
- `GET /` and `/demo/...`: the demo page, when DEMO_PAGE is on (default: in
  development only).
- `POST /dev/token` `{ name, ttlS? }`: a token for the demo user of that name, who
  is made a member of the demo lobby. Registered only when NODE_ENV=development.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from ecigdis_ws import json_codec
from ecigdis_ws.services.dev_accounts import DevAccounts
from ecigdis_ws.settings import Settings
from ecigdis_ws.transport.app_keys import SERVICES
from ecigdis_ws.transport.http_errors import answer, invalid_body
from ecigdis_ws.transport.limits import read_body

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
BUILD_DIR = STATIC_DIR / "build"
DEMO_DIR = STATIC_DIR / "demo"
# The files `make client` writes; nothing else in build/ is served.
BUNDLE_FILES = {
    "chat-manager.js": "text/javascript",
    "chat-manager.js.map": "application/json",
}
# A sign-in body is a name and a number; anything bigger is not one.
MAX_DEV_TOKEN_BODY_BYTES = 1024
# Development files change under the developer's hands: always revalidate.
NO_CACHE = {"Cache-Control": "no-cache"}

NOT_BUILT = (
    "chat-manager.js has not been built. Run `make client` in the repository "
    "(npm installs socket.io-client and esbuild bundles client/src/chat-manager.js "
    "into src/ecigdis_ws/static/build/), then reload.\n"
)


async def client_bundle(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    content_type = BUNDLE_FILES.get(name)
    if content_type is None:
        raise web.HTTPNotFound(text=f"no such client file: {name[:100]}\n")
    path = BUILD_DIR / name
    if not path.is_file():
        return web.Response(status=404, text=NOT_BUILT, content_type="text/plain")
    return web.FileResponse(path, headers={**NO_CACHE, "Content-Type": content_type})


async def demo_index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(DEMO_DIR / "index.html", headers=NO_CACHE)


async def dev_token(request: web.Request) -> web.StreamResponse:
    return await answer(request, _sign_in)


async def _sign_in(request: web.Request) -> web.Response:
    chat = request.app[SERVICES]
    raw = await read_body(request, MAX_DEV_TOKEN_BODY_BYTES, chat.clock,
                          chat.settings.http_body_timeout_ms / 1000)
    try:
        body: Any = json_codec.loads(raw or b"null")
    except json_codec.JsonTooDeep as exc:
        raise invalid_body(f"body is not JSON this server reads: {exc}") from None
    except ValueError:  # (UnicodeDecodeError included)
        raise invalid_body("body is not JSON") from None
    if not isinstance(body, dict):
        raise invalid_body("expected { name, ttlS? }")
    accounts = DevAccounts(chat.settings, chat.clock, chat.storage.conversations,
                           chat.storage.users, chat.server)
    login = await accounts.sign_in(body.get("name"), body.get("ttlS"))
    return web.json_response(login.wire(), headers={"Cache-Control": "no-store"})


def add_client_routes(app: web.Application, settings: Settings) -> None:
    app.router.add_get("/client/{name}", client_bundle)
    if settings.serves_demo_page:
        app.router.add_get("/", demo_index)
        app.router.add_static("/demo/", DEMO_DIR, append_version=False)
    if settings.environment == "development":
        app.router.add_post("/dev/token", dev_token)
