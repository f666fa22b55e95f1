"""Development sign-in for the demo page: a name in, a token and the demo lobby out.

Only reachable when NODE_ENV=development (transport/client_routes.py registers
`POST /dev/token` there and nowhere else). Anyone may be anyone: it exists so a
developer can open two browser windows and chat without the portal.
"""

from __future__ import annotations

import asyncio
import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Any

from ecigdis_ws.clock import Clock
from ecigdis_ws.domain import UserId
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.services.auth import MAX_STRING_USER_ID, mint_token
from ecigdis_ws.services.server_api import ServerApiService
from ecigdis_ws.settings import Settings
from ecigdis_ws.storage.base import ConversationRecords, UserRecords

# The conversation every demo user is put in, so two windows can chat at once: the
# oldest conversation with this title, created when there is none. Found by title,
# never assumed to be conversation 1, which the README's tour (or anyone's first
# `conversation create`) may have made first.
DEMO_LOBBY_TITLE = "Lobby"
# Demo names are short display names; the token keeps the name as typed.
MAX_DEMO_NAME_LENGTH = 40
# Demo user ids start here so they do not collide with small ids used by hand.
DEMO_USER_ID_BASE = 1_000_000_000
# 48 bits of the name's hash: stable, and under 2**53 so JavaScript reads it exactly.
DEMO_USER_ID_BITS = 48
# A demo token lasts an hour unless the caller asks for less (the ChatManager's
# getToken fetches a new one when it expires).
DEFAULT_DEMO_TOKEN_TTL_S = 3600
MAX_DEMO_TOKEN_TTL_S = 86400


@dataclass(frozen=True)
class DevLogin:
    token: str
    user_id: UserId
    name: str
    expires_in_s: int
    lobby_id: int

    def wire(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "userId": self.user_id,
            "name": self.name,
            "expiresIn": self.expires_in_s,
            "lobby": {"conversationId": self.lobby_id, "title": DEMO_LOBBY_TITLE},
        }


def normalise_name(raw: object) -> str:
    """The name as shown: trimmed, NFC, 1-40 printable characters."""
    if not isinstance(raw, str):
        raise ChatError(ErrorCode.INVALID_PAYLOAD, "name must be a string")
    name = unicodedata.normalize("NFC", raw.strip())
    if not name or len(name) > MAX_DEMO_NAME_LENGTH or not name.isprintable():
        raise ChatError(
            ErrorCode.INVALID_PAYLOAD,
            f"name must be 1-{MAX_DEMO_NAME_LENGTH} printable characters",
        )
    return name


def demo_user_id(name: str, user_id_type: str) -> UserId:
    """The same user id for the same name, whatever its case.

    int: DEMO_USER_ID_BASE + the first 48 bits of SHA-256 of the case-folded name;
    string: the case-folded name itself.
    """
    key = name.casefold()
    if user_id_type == "string":
        return key[:MAX_STRING_USER_ID]
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return DEMO_USER_ID_BASE + int.from_bytes(digest[: DEMO_USER_ID_BITS // 8], "big")


class DevAccounts:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        conversations: ConversationRecords,
        users: UserRecords,
        server: ServerApiService,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._conversations = conversations
        self._users = users
        self._server = server  # adds to the lobby as the main site would: the room hears it
        self._lobby_id: int | None = None  # found once; a conversation is never deleted
        self._lobby_lock = asyncio.Lock()  # two first sign-ins create one lobby

    async def sign_in(self, raw_name: object, raw_ttl_s: object = None) -> DevLogin:
        """A token for the user this name stands for, who is made a lobby member."""
        name = normalise_name(raw_name)
        ttl_s = self._ttl(raw_ttl_s)
        user_id = demo_user_id(name, self._settings.user_id_type)
        now_ms = int(self._clock.now() * 1000)
        await self._users.upsert_user(user_id, name, now_ms)
        lobby_id = await self._lobby(now_ms)
        if await self._server.add_member(lobby_id, user_id):
            await self._own_if_unowned(lobby_id, user_id)
        token = mint_token(self._settings, self._clock, user_id, name, ttl_s)
        return DevLogin(token, user_id, name, ttl_s, lobby_id)

    async def _lobby(self, now_ms: int) -> int:
        """The id of the demo lobby: the oldest conversation titled Lobby, or a new one.

        Created with no members and looked up again, so that nodes sharing a database
        which both created one at once settle on the same (oldest) lobby; the other
        stays empty and is shown to nobody."""
        async with self._lobby_lock:
            if self._lobby_id is None:
                found = await self._conversations.oldest_conversation_titled(DEMO_LOBBY_TITLE)
                if found is None:
                    await self._conversations.create_conversation(DEMO_LOBBY_TITLE, [], now_ms)
                    found = await self._conversations.oldest_conversation_titled(DEMO_LOBBY_TITLE)
                assert found is not None
                self._lobby_id = found
            return self._lobby_id

    async def _own_if_unowned(self, lobby_id: int, user_id: UserId) -> None:
        """The first member of a lobby with no owner becomes its owner, so that the demo
        shows what owners do (rename, pin, delete others' messages) as a created
        conversation would: the lobby is created with no members, so no creator. Two
        first sign-ins at once on two nodes may both become owners; a lobby may have
        several."""
        members = await self._conversations.members(lobby_id)
        if not any(member.role == "owner" for member in members):
            await self._conversations.set_role(lobby_id, user_id, "owner")

    @staticmethod
    def _ttl(raw: object) -> int:
        if raw is None:
            return DEFAULT_DEMO_TOKEN_TTL_S
        if isinstance(raw, bool) or not isinstance(raw, int) or not (
            1 <= raw <= MAX_DEMO_TOKEN_TTL_S
        ):
            raise ChatError(
                ErrorCode.INVALID_PAYLOAD,
                f"ttlS must be an integer from 1 to {MAX_DEMO_TOKEN_TTL_S}",
            )
        return raw
