"""JWT verification and minting (docs/protocol.md, Connection and authentication)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import jwt

from ecigdis_ws.clock import Clock
from ecigdis_ws.domain import Identity, UserId
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.settings import Settings

log = get_logger(__name__)

USER_ID_CLAIMS = ("userId", "user_id", "sub")
NAME_CLAIMS = ("name", "username")
# A user id of type string is 1-64 characters (docs/protocol.md, Conventions).
MAX_STRING_USER_ID = 64
# Larger integers do not fit the BIGINT-sized columns and are surely forged.
MAX_INT_USER_ID = 2**63 - 1
# Its decimal digits: a longer digit string is refused without converting it.
MAX_INT_USER_ID_DIGITS = len(str(MAX_INT_USER_ID))
# The largest integer a float holds (times in seconds beyond it are not numbers).
MAX_FLOAT_INT = int(sys.float_info.max)
# Names longer than this are cut, not refused: the token is the portal's word.
MAX_NAME_LENGTH = 255
# A real token is well under 2 KiB; refusing giants early keeps decoding cheap.
MAX_TOKEN_LENGTH = 8192


def _fail(message: str) -> ChatError:
    return ChatError(ErrorCode.AUTH_FAILED, message)


class TokenUndecided(ChatError):
    """The JWT check cannot decide this token: not a JWT, or signed with an
    algorithm this server holds no key for. The main site may know it."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.AUTH_FAILED, message)


class TokenExpired(ChatError):
    """A valid token past exp (plus leeway): AUTH_FAILED at a socket handshake, as
    before; the REST API answers TOKEN_EXPIRED so the client refreshes it."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.AUTH_FAILED, "token expired")


def log_refused(error: ChatError, via: str, **context: Any) -> None:
    """One INFO line for a refused token, with the reason and never the token: a
    token signed with another JWT_SECRET shows up in the server's log, not only in
    the client's `bad signature`. An expired token is the normal refresh path and
    is not logged (as Centrifugo does)."""
    if error.code is ErrorCode.AUTH_FAILED and not isinstance(error, TokenExpired):
        log.info("token refused", reason=error.message, via=via, **context)


class TokenVerifier:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._algorithms = list(settings.jwt_algorithms)
        self._hmac_key = settings.effective_jwt_secret
        self._public_key = (
            Path(settings.jwt_public_key_path).read_text()
            if settings.jwt_public_key_path
            else None
        )

    def _key_for(self, algorithm: str) -> str:
        if algorithm.startswith("HS"):
            return self._hmac_key
        if self._public_key is None:
            raise _fail("no public key configured")
        return self._public_key

    def verify(self, token: object) -> Identity:
        """Return who the token names, or raise AUTH_FAILED saying why."""
        if not isinstance(token, str) or not token:
            raise _fail("token must be a non-empty string")
        if len(token) > MAX_TOKEN_LENGTH:
            raise _fail("token too long")
        if not token.isascii():
            raise _fail("token is not ASCII (neither a JWT nor a session token)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenUndecided("token is not a JWT") from None
        algorithm = header.get("alg")
        if algorithm in (None, "none", "None", "NONE"):
            raise _fail("unsigned tokens are never accepted")
        if algorithm not in self._algorithms:
            raise TokenUndecided(f"algorithm {algorithm!r} not accepted")
        claims = self._decode(token, algorithm)
        return Identity(
            user_id=self._user_id(claims),
            name=self._name(claims),
            expires_at=float(claims["exp"]) if "exp" in claims else None,
        )

    def _decode(self, token: str, algorithm: str) -> dict[str, Any]:
        required = ["exp"] if self._settings.jwt_require_exp else []
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key_for(algorithm),
                algorithms=[algorithm],
                issuer=self._settings.jwt_issuer,
                audience=self._settings.jwt_audience,
                # exp and nbf are checked below against the injected clock.
                options={
                    "require": required,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": self._settings.jwt_audience is not None,
                    "verify_iss": self._settings.jwt_issuer is not None,
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            raise _fail(f"token has no {exc.claim!r} claim") from None
        except jwt.InvalidIssuerError:
            raise _fail("wrong issuer") from None
        except jwt.InvalidAudienceError:
            raise _fail("wrong audience") from None
        except jwt.InvalidSignatureError:
            raise _fail("bad signature") from None
        except jwt.PyJWTError as exc:
            raise _fail(f"invalid token: {type(exc).__name__}") from None
        self._check_times(claims)
        return claims

    def _check_times(self, claims: dict[str, Any]) -> None:
        now = self._clock.now()
        leeway = self._settings.jwt_leeway_s
        for claim in ("exp", "nbf"):
            if claim in claims and not is_finite_number(claims[claim]):
                raise _fail(f"{claim!r} must be a number")
        if "exp" in claims and now > float(claims["exp"]) + leeway:
            raise TokenExpired()
        max_ttl = self._settings.jwt_max_ttl_s
        if max_ttl and "exp" in claims and float(claims["exp"]) > now + max_ttl + leeway:
            # A token the portal meant to expire does not outlive JWT_MAX_TTL_S,
            # whatever its exp says (a token without exp is JWT_REQUIRE_EXP's call).
            raise _fail(f"token expires more than JWT_MAX_TTL_S ({max_ttl} s) from now")
        if "nbf" in claims and now < float(claims["nbf"]) - leeway:
            raise _fail("token not yet valid")

    def _user_id(self, claims: dict[str, Any]) -> UserId:
        raw = next((claims[c] for c in USER_ID_CLAIMS if claims.get(c) is not None), None)
        if raw is None:
            raise _fail("token names no user (userId, user_id or sub)")
        parsed = parse_user_id(raw, self._settings.user_id_type)
        if parsed is None:
            raise _fail(f"user id is not a valid {self._settings.user_id_type}")
        return parsed

    def _name(self, claims: dict[str, Any]) -> str:
        for claim in NAME_CLAIMS:
            value = claims.get(claim)
            if isinstance(value, str) and value.strip():
                return value[:MAX_NAME_LENGTH]
        return str(self._user_id(claims))

    def expires_in(self, identity: Identity) -> float | None:
        """Seconds until the token stops being accepted (exp plus leeway)."""
        if identity.expires_at is None:
            return None
        return identity.expires_at + self._settings.jwt_leeway_s - self._clock.now()


def is_finite_number(value: object) -> bool:
    """A finite number: JSON's true is not one, nor the NaN and Infinity that
    Python's JSON reader (and so PyJWT) accepts, nor an integer too large for a
    float (math.isfinite would raise OverflowError on it)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int):
        return abs(value) <= MAX_FLOAT_INT
    return math.isfinite(value)


def parse_user_id(raw: object, user_id_type: str) -> UserId | None:
    """An int, or a decimal string read as that int; or a 1-64 character string.
    Bounds are checked before any conversion: int() of a long digit string, or
    str() of a huge int, raises ValueError past Python's 4,300-digit limit."""
    if user_id_type == "int":
        if isinstance(raw, bool):
            return None
        if isinstance(raw, int):
            value = raw
        elif (isinstance(raw, str) and raw.isascii() and raw.isdigit()
              and len(raw) <= MAX_INT_USER_ID_DIGITS):
            value = int(raw)
        else:
            return None
        return value if 0 < value <= MAX_INT_USER_ID else None
    if isinstance(raw, int) and not isinstance(raw, bool):
        if abs(raw) >= 10**MAX_STRING_USER_ID:
            return None
        raw = str(raw)
    if isinstance(raw, str) and 1 <= len(raw) <= MAX_STRING_USER_ID and raw.isprintable():
        return raw
    return None


def mint_token(
    settings: Settings, clock: Clock, user_id: UserId, name: str, ttl_s: float
) -> str:
    """A token signed with the configured secret (development and smoke tests)."""
    now = int(clock.now())
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "userId": user_id,
        "name": name,
        "iat": now,
        "exp": now + int(ttl_s),
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    algorithm = next((a for a in settings.jwt_algorithms if a.startswith("HS")), None)
    if algorithm is None:
        raise ValueError("minting needs an HS* algorithm in JWT_ALGORITHMS")
    return jwt.encode(claims, settings.effective_jwt_secret, algorithm=algorithm)
