"""Socket sessions: authentication, token expiry mid-session, and the presence that
follows from them. (The way in, before a socket first authenticates, is the
AdmissionService's: the per-address cap and the deadline.)"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ecigdis_ws.clock import Clock, Timer
from ecigdis_ws.domain import Actor, Identity, UserId
from ecigdis_ws.errors import ChatError, ErrorCode, StorageUnavailable
from ecigdis_ws.fanout.base import Fanout
from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.services.admission import AdmissionService
from ecigdis_ws.services.auth import TokenUndecided, TokenVerifier, log_refused
from ecigdis_ws.services.error_reports import ErrorReports
from ecigdis_ws.services.main_site import MainSiteVerifier
from ecigdis_ws.services.presence import PresenceService
from ecigdis_ws.services.rate_limit import RateLimiter
from ecigdis_ws.services.tasks import BackgroundTasks
from ecigdis_ws.services.typing_indicators import TypingService
from ecigdis_ws.storage.base import UserRecords

log = get_logger(__name__)


# A socket whose events are refused this many times in a row keeps flooding
# after being told (RATE_LIMITED each time): it is disconnected.
FLOOD_DISCONNECT_AFTER = 20
# Users whose name this node wrote last, so a reconnect writes nothing; about
# one entry per user of a busy node, the least recently seen forgotten first.
RECORDED_USERS_KEPT = 50_000


@dataclass(frozen=True)
class SessionLimits:
    auth_timeout_ms: int  # to re-authenticate once a token has expired
    max_connections_per_user: int  # on this node; 0: no cap


@dataclass
class Session:
    sid: str
    connection_id: str = ""  # the Engine.IO connection it came on
    refused_in_a_row: int = 0
    identity: Identity | None = None
    authenticated: bool = False
    online: bool = False  # counted by presence
    timers: dict[str, Timer] = field(default_factory=dict)

    def actor(self) -> Actor:
        if not self.authenticated or self.identity is None:
            raise ChatError(ErrorCode.UNAUTHENTICATED, "authenticate first")
        return Actor(self.sid, self.identity.user_id, self.identity.name)

    def arm(self, name: str, timer: Timer) -> None:
        self.disarm(name)
        self.timers[name] = timer

    def disarm(self, name: str) -> None:
        timer = self.timers.pop(name, None)
        if timer is not None:
            timer.cancel()


class SessionService:
    def __init__(
        self,
        *,
        verifier: TokenVerifier,
        presence: PresenceService,
        typing: TypingService,
        users: UserRecords,
        fanout: Fanout,
        clock: Clock,
        tasks: BackgroundTasks,
        event_limiter: RateLimiter,
        limits: SessionLimits,
        admission: AdmissionService,
        errors: ErrorReports,
        # Asked about tokens the JWT check cannot decide (AUTH_VERIFY_URL); it ends
        # the sessions of a user it says was revoked.
        main_site: MainSiteVerifier | None = None,
    ) -> None:
        self._errors = errors
        self._verifier = verifier
        self._presence = presence
        self._typing = typing
        self._users = users
        self._fanout = fanout
        self._clock = clock
        self._tasks = tasks
        self._event_limiter = event_limiter
        self._auth_timeout_s = limits.auth_timeout_ms / 1000
        self._limits = limits
        self._sessions: dict[str, Session] = {}
        self._admission = admission
        self.main_site = main_site
        if main_site is not None:
            main_site.on_revoked = self.end_user_sessions
        self._recorded: OrderedDict[UserId, str] = OrderedDict()

    def open(self, sid: str, connection_id: str = "") -> Session:
        """A new socket, unauthenticated: its connection's admission deadline runs
        until it authenticates."""
        session = self._sessions[sid] = Session(sid, connection_id)
        return session

    def get(self, sid: str) -> Session | None:
        return self._sessions.get(sid)

    async def authenticate(self, sid: str, token: object) -> Identity:
        """Verify the token and make the socket that user's; a fresh token for the
        same user extends the session, one for another user is refused."""
        session = self._sessions.get(sid)
        if session is None:
            raise ChatError(ErrorCode.AUTH_FAILED, "no such session")
        identity = await self.identify(token, "socket", sid=sid)
        self._still_open(session)  # (the main site may have taken a while)
        if session.identity is not None and session.identity.user_id != identity.user_id:
            raise ChatError(ErrorCode.AUTH_FAILED, "socket is authenticated as another user")
        users_sockets = self._presence.local_sockets(identity.user_id)
        cap = self._limits.max_connections_per_user
        if cap and sid not in users_sockets and len(users_sockets) >= cap:
            raise ChatError(ErrorCode.RATE_LIMITED, "too many connections for this user")
        self._admission.authenticated(session.connection_id)
        session.identity = identity
        session.authenticated = True
        session.disarm("auth_timeout")
        self._arm_expiry(session, identity)
        if not session.online:
            session.online = True
            await self._record_user(identity)
            self._still_open(session)  # (and the database)
            await self._presence.socket_online(session.actor())
        return identity

    def _still_open(self, session: Session) -> None:
        """The socket may have closed while authentication waited: then it is
        refused, and nothing is done for a socket that is gone."""
        if self._sessions.get(session.sid) is not session:
            raise ChatError(ErrorCode.AUTH_FAILED, "the socket closed during authentication")

    async def identify(self, token: object, via: str, **context: object) -> Identity:
        """Who the token says, by the JWT check or else the main site; a refusal is
        logged (never the token) with `via` (socket or rest) and `context`."""
        try:
            try:
                return self._verifier.verify(token)
            except TokenUndecided:
                if self.main_site is None or not isinstance(token, str):
                    raise
                return await self.main_site.verify(token)
        except ChatError as exc:
            log_refused(exc, via, **context)
            raise

    async def end_user_sessions(self, user_id: UserId) -> None:
        """The main site revoked the user's token: their sockets here are closed."""
        revoked = ChatError(ErrorCode.AUTH_FAILED, "token revoked")
        for sid in self._presence.local_sockets(user_id):
            await self._errors.tell_socket(sid, revoked, None)
            await self._fanout.disconnect(sid)

    async def _record_user(self, identity: Identity) -> None:
        if self._recorded.get(identity.user_id) == identity.name:
            self._recorded.move_to_end(identity.user_id)
            return  # a reconnect with the same name: nothing to write
        try:
            await self._users.upsert_user(
                identity.user_id, identity.name, int(self._clock.now() * 1000)
            )
        except StorageUnavailable:
            # The token is the authority on who the user is; the users table only
            # mirrors names, so chat goes on while the database recovers.
            log.warning("user not recorded: database unavailable", user_id=identity.user_id)
            return
        self._recorded[identity.user_id] = identity.name
        while len(self._recorded) > RECORDED_USERS_KEPT:
            self._recorded.popitem(last=False)

    def allow_event(self, session: Session) -> bool:
        """The per-socket rate limit; a socket that keeps flooding is disconnected."""
        if self._event_limiter.allow(session.sid):
            session.refused_in_a_row = 0
            return True
        session.refused_in_a_row += 1
        if session.refused_in_a_row == FLOOD_DISCONNECT_AFTER:
            log.warning("disconnecting a flooding socket", sid=session.sid)
            self._tasks.spawn(self._fanout.disconnect(session.sid))
        return False

    async def close(self, sid: str) -> None:
        session = self._sessions.pop(sid, None)
        if session is None:
            return
        for name in list(session.timers):
            session.disarm(name)
        self._event_limiter.forget(sid)
        await self._typing.socket_gone(sid)
        if session.online and session.identity is not None:
            await self._presence.socket_offline(
                Actor(sid, session.identity.user_id, session.identity.name)
            )

    def _arm_auth_timeout(self, session: Session) -> None:
        session.arm(
            "auth_timeout",
            self._clock.call_later(self._auth_timeout_s, lambda: self._auth_timed_out(session)),
        )

    def _auth_timed_out(self, session: Session) -> None:
        if not session.authenticated and session.sid in self._sessions:
            log.info("disconnecting unauthenticated socket", sid=session.sid)
            self._tasks.spawn(self._fanout.disconnect(session.sid))

    def _arm_expiry(self, session: Session, identity: Identity) -> None:
        remaining = self._verifier.expires_in(identity)
        if remaining is None:
            session.disarm("expiry")
            return
        session.arm(
            "expiry", self._clock.call_later(remaining, lambda: self._token_expired(session))
        )

    def _token_expired(self, session: Session) -> None:
        if session.sid not in self._sessions:
            return
        session.authenticated = False
        self._arm_auth_timeout(session)
        expired = ChatError(ErrorCode.TOKEN_EXPIRED, "token expired")
        self._tasks.spawn(self._errors.tell_socket(session.sid, expired, None))

    @property
    def count(self) -> int:
        return len(self._sessions)
