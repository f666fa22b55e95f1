"""Tokens the JWT check cannot decide, asked of the main site (AUTH_VERIFY_URL).

The request: `POST AUTH_VERIFY_URL` with `{"token": "..."}` (and the token as a
Bearer header). The answer: `200 {"valid": true, "userId": 42, "name": "Alice",
"exp": 1800000000}`; `200 {"valid": false, "revoked": true, "userId": 42}` (a
revoked token: that user's sessions here are ended); 401 or 403 for an unknown
token. Answers are cached (AUTH_VERIFY_CACHE_S) by a hash of the token, so a
reconnect storm does not become a storm on the main site. When the main site
does not answer within AUTH_VERIFY_TIMEOUT_MS, the token is refused at once
with AUTH_FAILED; tokens that verify locally never depend on the main site.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from ecigdis_ws.clock import Clock
from ecigdis_ws.domain import Identity, UserId
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.services.auth import MAX_NAME_LENGTH, is_finite_number, parse_user_id

log = get_logger(__name__)

# Answers kept at most; the oldest go first (a small LRU).
CACHE_ENTRIES = 10_000
# A refusal is remembered briefly, so a token fixed on the main site works soon.
NEGATIVE_CACHE_S = 5.0

OnRevoked = Callable[[UserId], Awaitable[None]]


def _fail(message: str) -> ChatError:
    return ChatError(ErrorCode.AUTH_FAILED, message)


class MainSiteVerifier:
    def __init__(
        self,
        url: str,
        http: aiohttp.ClientSession,
        clock: Clock,
        timeout_s: float,
        cache_s: float,
        user_id_type: str,
    ) -> None:
        self._url = url
        self._http = http
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._cache_s = cache_s
        self._user_id_type = user_id_type
        self._cache: OrderedDict[str, tuple[float, Identity | None]] = OrderedDict()
        self.on_revoked: OnRevoked | None = None

    async def verify(self, token: str) -> Identity:
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._clock.now():
            if cached[1] is None:
                raise _fail("token refused by the main site")
            return cached[1]
        answer = await self._ask(token)
        identity = await self._identity(answer)
        ttl = self._cache_s if identity is not None else NEGATIVE_CACHE_S
        if identity is not None and identity.expires_at is not None:
            # Never served from the cache past the expiry the main site gave.
            ttl = min(ttl, identity.expires_at - self._clock.now())
        self._remember(key, identity, ttl)
        if identity is None:
            raise _fail("token refused by the main site")
        return identity

    def _remember(self, key: str, identity: Identity | None, ttl_s: float) -> None:
        self._cache[key] = (self._clock.now() + ttl_s, identity)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)

    async def _ask(self, token: str) -> dict[str, Any]:
        try:
            async with self._http.post(
                self._url,
                json={"token": token},
                headers={"Authorization": f"Bearer {token}"},
                timeout=self._timeout,
            ) as response:
                if response.status in (401, 403):
                    return {"valid": False}
                if response.status != 200:
                    raise _fail(f"main site answered {response.status}")
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("main site unreachable for token check",
                        reason=str(exc) or type(exc).__name__)
            raise _fail("main site unavailable to verify this token") from None
        if not isinstance(answer, dict):
            raise _fail("main site answered something that is not an object")
        return answer

    async def _identity(self, answer: dict[str, Any]) -> Identity | None:
        user_id = parse_user_id(answer.get("userId"), self._user_id_type)
        if answer.get("valid") is not True:
            if answer.get("revoked") is True and user_id is not None and self.on_revoked:
                log.info("main site revoked a token; ending the user's sessions",
                         user_id=user_id)
                await self.on_revoked(user_id)
            return None
        if user_id is None:
            raise _fail("main site named no valid user")
        name = answer.get("name")
        exp = answer.get("exp")
        if exp is not None and not is_finite_number(exp):
            raise _fail("main site answered an exp that is not a time in seconds")
        return Identity(
            user_id=user_id,
            name=name[:MAX_NAME_LENGTH] if isinstance(name, str) and name else str(user_id),
            expires_at=float(exp) if exp is not None else None,
        )
