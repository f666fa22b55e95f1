"""Who is online: user:online on a user's first socket anywhere in the cluster,
user:offline once their last socket closed and the grace period passed, or once
their node stopped refreshing its lease (PRESENCE_TTL_MS).

A user on the REST long-poll counts as online too, like one more socket of theirs
(POLL_SID) on the node they poll: from their first poll until POLL_GAP_S after
their last poll was answered with no new one, then the grace period as for a
socket. A poller is online while polling, as Phoenix counts a connection."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable

from ecigdis_ws import events
from ecigdis_ws.clock import Clock, Timer
from ecigdis_ws.cluster.presence import PresenceRegistry
from ecigdis_ws.domain import Actor, OnlineUser, UserId, iso_ms
from ecigdis_ws.errors import StorageUnavailable
from ecigdis_ws.fanout.base import AUTHENTICATED_ROOM, Fanout, user_room
from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.observability.metrics import Metrics
from ecigdis_ws.services.tasks import BackgroundTasks
from ecigdis_ws.settings import PresenceScope
from ecigdis_ws.storage.base import ConversationRecords, UserRecords

log = get_logger(__name__)

# Three heartbeats per lease, so one late beat does not declare a node dead.
HEARTBEATS_PER_TTL = 3
# Stands for a user's long-polls among their sockets: Engine.IO ids are 20
# random characters, so no socket has it.
POLL_SID = "long-poll"
# A poller polls again as soon as an answer arrives: this long without a poll,
# they stopped (the grace period follows). Covers a slow round trip and a retry.
POLL_GAP_S = 10.0


class PresenceService:
    def __init__(
        self,
        *,
        fanout: Fanout,
        conversations: ConversationRecords,
        users: UserRecords,
        clock: Clock,
        tasks: BackgroundTasks,
        registry: PresenceRegistry,
        grace_ms: int,
        ttl_ms: int,
        parse_user_id: Callable[[str], UserId],
        metrics: Metrics,
        scope: PresenceScope = "global",
    ) -> None:
        self._scope = scope
        self._metrics = metrics
        metrics.track_graces(lambda: self.graces_pending)
        self._fanout = fanout
        self._conversations = conversations
        self._users = users
        self._clock = clock
        self._tasks = tasks
        self._registry = registry
        self._grace_s = grace_ms / 1000
        self._beat_s = ttl_ms / 1000 / HEARTBEATS_PER_TTL
        self._parse_user_id = parse_user_id
        self._sockets: dict[UserId, set[str]] = {}  # this node's sockets per user
        self._names: dict[UserId, str] = {}
        self._going_offline: dict[UserId, Timer] = {}
        self._graces_ending = 0  # grace periods whose end is being announced
        self._beat: Timer | None = None
        self._polls: dict[UserId, int] = {}  # long-polls held per user on this node
        self._polls_stopping: dict[UserId, Timer] = {}  # POLL_GAP_S after the last one

    def _now_ms(self) -> int:
        return int(self._clock.now() * 1000)

    async def start(self) -> None:
        """Join the cluster before accepting sockets, then keep the lease fresh."""
        await self._heartbeat()

    async def _heartbeat(self) -> None:
        try:
            still_there, gone = await self._registry.heartbeat(self._now_ms())
            if not still_there and self._names:
                # Redis came back empty (restart without persistence, failover):
                # put this node's users back before anyone asks who is online.
                log.warning("presence lost in Redis; restoring this node's users",
                            users=len(self._names))
                await self._registry.restore(
                    {user: len(self._sockets.get(user, ())) for user in self._names},
                    dict(self._names),
                )
        except Exception as exc:  # Redis down: keep serving, try again next beat
            log.warning("presence heartbeat failed", reason=str(exc) or type(exc).__name__)
            gone = []
        for user in gone:
            await self._announce_offline(self._parse_user_id(user), self._now_ms())
        self._metrics.presence_heartbeats.inc()
        self._beat = self._clock.call_later(
            self._beat_s, lambda: self._tasks.spawn(self._heartbeat())
        )

    async def beat_now(self) -> None:
        """Renew the lease (and restore lost entries) now, not at the next beat."""
        if self._beat is not None:
            self._beat.cancel()
        await self._heartbeat()

    async def stop(self) -> None:
        """This node goes away: its users connected nowhere else go offline now."""
        if self._beat is not None:
            self._beat.cancel()
        for timer in [*self._going_offline.values(), *self._polls_stopping.values()]:
            timer.cancel()
        self._going_offline.clear()
        self._polls_stopping.clear()
        try:
            gone = await self._registry.leave_cluster(self._now_ms())
        except Exception as exc:
            log.warning("presence not cleared", reason=str(exc) or type(exc).__name__)
            return
        for user in gone:
            await self._announce_offline(self._parse_user_id(user), self._now_ms(), False)

    async def _audience(self, user_id: UserId) -> str | list[str]:
        """Who hears that the user came or went (PRESENCE_SCOPE): every
        authenticated socket, or the sockets of those who share a conversation."""
        if self._scope == "global":
            return AUTHENTICATED_ROOM
        try:
            contacts = await self._conversations.contact_ids(user_id)
            return [user_room(contact) for contact in contacts]
        except StorageUnavailable:
            log.warning("presence not announced: database unavailable", user_id=user_id)
            return []

    async def socket_online(self, actor: Actor) -> None:
        self._fanout.enter_room(actor.sid, AUTHENTICATED_ROOM)
        self._fanout.enter_room(actor.sid, user_room(actor.user_id))
        # Before `authenticated` goes out: what another node tells this user from
        # then on (conversation:added, contacts' presence) reaches this node.
        await self._fanout.entered(user_room(actor.user_id))
        await self._arrived(actor)

    async def _arrived(self, actor: Actor) -> None:
        self._sockets.setdefault(actor.user_id, set()).add(actor.sid)
        self._names[actor.user_id] = actor.name
        pending = self._going_offline.pop(actor.user_id, None)
        if pending is not None:
            pending.cancel()  # back within the grace period: they never went offline
        try:
            first = await self._registry.join(actor.user_id, actor.name, self._now_ms())
        except Exception as exc:
            log.warning("presence not shared", reason=str(exc) or type(exc).__name__)
            first = pending is None and len(self._sockets[actor.user_id]) == 1
        if first:
            audience = await self._audience(actor.user_id)
            if audience:
                await self._fanout.emit(
                    events.USER_ONLINE,
                    {"userId": actor.user_id, "name": actor.name},
                    room=audience,
                    skip_sid=actor.sid,
                )

    async def socket_offline(self, actor: Actor) -> None:
        sockets = self._sockets.get(actor.user_id)
        if sockets is None or actor.sid not in sockets:
            return
        sockets.discard(actor.sid)
        try:
            await self._registry.leave(actor.user_id)
        except Exception as exc:
            log.warning("presence not shared", reason=str(exc) or type(exc).__name__)
        if not sockets:
            # lastSeen is when the last connection closed, not when the grace ran out.
            last_seen_ms = self._now_ms()
            self._going_offline[actor.user_id] = self._clock.call_later(
                self._grace_s,
                lambda: self._tasks.spawn(self._grace_over(actor.user_id, last_seen_ms)),
            )

    # -- long-polls -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def polling(self, user_id: UserId, name: str) -> AsyncIterator[None]:
        """Around one long-poll of the user: online from the first one on."""
        held = self._polls.get(user_id, 0)
        self._polls[user_id] = held + 1  # (before any await: concurrent polls count)
        try:
            stopping = self._polls_stopping.pop(user_id, None)
            if stopping is not None:
                stopping.cancel()  # the next poll, in time: still online
            elif held == 0 and POLL_SID not in self._sockets.get(user_id, ()):
                await self._arrived(Actor(POLL_SID, user_id, name))
            yield
        finally:
            self._poll_answered(user_id)

    def _poll_answered(self, user_id: UserId) -> None:
        held = self._polls.pop(user_id, 1) - 1
        if held:
            self._polls[user_id] = held
            return
        self._polls_stopping[user_id] = self._clock.call_later(
            POLL_GAP_S, lambda: self._tasks.spawn(self._polls_stopped(user_id))
        )

    async def _polls_stopped(self, user_id: UserId) -> None:
        self._polls_stopping.pop(user_id, None)
        if not self._polls.get(user_id):
            await self.socket_offline(Actor(POLL_SID, user_id, self._names.get(user_id, "")))

    async def _grace_over(self, user_id: UserId, last_seen_ms: int) -> None:
        self._going_offline.pop(user_id, None)
        self._graces_ending += 1
        try:
            await self._end_grace(user_id, last_seen_ms)
        finally:
            self._graces_ending -= 1

    async def _end_grace(self, user_id: UserId, last_seen_ms: int) -> None:
        if self._sockets.get(user_id):
            return  # back just as the grace ran out
        self._sockets.pop(user_id, None)
        self._names.pop(user_id, None)
        try:
            gone = await self._registry.release(user_id, self._now_ms())
        except Exception as exc:
            log.warning("presence not shared", reason=str(exc) or type(exc).__name__)
            gone = True
        if gone:
            await self._announce_offline(user_id, last_seen_ms)
        self._metrics.presence_graces_ended.inc()  # (counted once it is announced)

    async def _announce_offline(self, user_id: UserId, last_seen_ms: int,
                                record: bool = True) -> None:
        if record:
            try:
                await self._users.set_last_seen(user_id, last_seen_ms)
            except StorageUnavailable:
                log.warning("last seen not stored: database unavailable", user_id=user_id)
        audience = await self._audience(user_id)
        if audience:
            await self._fanout.emit(
                events.USER_OFFLINE, {"userId": user_id, "lastSeen": iso_ms(last_seen_ms)},
                room=audience,
            )

    async def online(self, among: Iterable[UserId] | None = None) -> list[OnlineUser]:
        """Online users of the whole cluster (grace periods included), optionally `among`."""
        try:
            everyone = {
                self._parse_user_id(user): name
                for user, name in (await self._registry.online(self._now_ms())).items()
            }
        except Exception as exc:  # Redis down: this node's users are what we know
            log.warning("cluster presence unavailable", reason=str(exc) or type(exc).__name__)
            everyone = dict(self._names)
        candidates = everyone.keys() if among is None else among
        return [OnlineUser(user, everyone[user]) for user in candidates if user in everyone]

    async def visible_to(self, user_id: UserId) -> list[OnlineUser]:
        """The online users `user_id` may see (presence:request without a
        conversation): everyone under PRESENCE_SCOPE=global; under `contacts` the
        user and those who share a conversation with them, the very relation
        `_audience` announces arrivals to, so the list tells no more than the
        user:online events do. (A database that cannot be read is UNAVAILABLE,
        never the whole cluster.)"""
        if self._scope == "global":
            return await self.online()
        contacts = await self._conversations.contact_ids(user_id)
        return await self.online(dict.fromkeys([user_id, *contacts]))

    def local_sockets(self, user_id: UserId) -> frozenset[str]:
        """The user's sockets on this node (the per-user connection cap counts them),
        their long-polls not included."""
        return frozenset(sid for sid in self._sockets.get(user_id, ()) if sid != POLL_SID)

    def is_online_here(self, user_id: UserId) -> bool:
        return user_id in self._names

    @property
    def graces_pending(self) -> int:
        """Users in a grace period here, until its end has been announced."""
        return len(self._going_offline) + self._graces_ending

    @property
    def user_count(self) -> int:
        """Distinct users with a socket or a long-poll (or in a grace period) here."""
        return len(self._names)
