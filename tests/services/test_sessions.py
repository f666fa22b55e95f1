"""SessionService: one session per socket. A socket opens unauthenticated and is
disconnected after AUTH_TIMEOUT_MS unless a token makes it a user's (the deadline
is its connection's, kept by the AdmissionService: tests/services/test_admission.py);
a token expiring mid-session is told with TOKEN_EXPIRED and starts the timeout
again; a socket never changes hands. It also keeps the per-user cap on connections
and the per-socket event rate (a socket that keeps flooding is disconnected),
records the user's name, and starts and ends their presence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import jwt
import pytest
from structlog.testing import capture_logs

from ecigdis_ws.domain import Actor, Identity, OnlineUser, UserId
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.services.main_site import MainSiteVerifier
from ecigdis_ws.services.sessions import FLOOD_DISCONNECT_AFTER
from tests.main_site import MainSite, main_site_running
from tests.services.conftest import ServiceHarness, make_database_read_only

HarnessFactory = Callable[..., AbstractAsyncContextManager[ServiceHarness]]

AUTH_TIMEOUT_S = 10.0  # AUTH_TIMEOUT_MS's default
LEEWAY_S = 30  # JWT_LEEWAY_S's default
GRACE_S = 2.0  # PRESENCE_GRACE_MS's default
TOKEN_EXPIRED = {"code": "TOKEN_EXPIRED", "message": "token expired", "event": None}


def refused(error: pytest.ExceptionInfo[ChatError], code: ErrorCode, message: str) -> None:
    assert (error.value.code, error.value.message) == (code, message)


def acts_as(harness: ServiceHarness, sid: str) -> Actor | None:
    """Who the socket acts as, or None while it is not authenticated."""
    try:
        return harness.actor(sid)
    except ChatError as error:
        assert error.code is ErrorCode.UNAUTHENTICATED
        return None


async def users_row(harness: ServiceHarness, user_id: UserId) -> tuple[object, ...] | None:
    engine = harness.storage.engine  # type: ignore[attr-defined]
    table = f"{harness.settings.db_table_prefix}users"
    row: tuple[object, ...] | None = await engine.fetch_one(
        f"SELECT name FROM {table} WHERE id = ?", (str(user_id),))
    return row


# -- opening and authenticating -------------------------------------------------------------


async def test_a_new_socket_has_a_session_but_acts_as_nobody(harness: ServiceHarness) -> None:
    sid = await harness.socket(ip="203.0.113.9")

    session = harness.chat.sessions.get(sid)
    assert session is not None
    assert (session.sid, session.identity, session.authenticated) == (sid, None, False)
    assert session.connection_id == harness.manager.eio_sid_from_sid(sid, "/")
    assert acts_as(harness, sid) is None
    assert harness.chat.sessions.count == 1


async def test_an_unknown_socket_acts_as_nobody(harness: ServiceHarness) -> None:
    with pytest.raises(ChatError) as error:
        harness.actor("no-such-sid")

    refused(error, ErrorCode.UNAUTHENTICATED, "authenticate first")
    assert harness.chat.sessions.get("no-such-sid") is None


async def test_a_valid_token_makes_the_socket_act_as_the_user_it_names(
    harness: ServiceHarness,
) -> None:
    sid = await harness.socket()

    identity = await harness.chat.sessions.authenticate(sid, harness.token(7, "Grace", 600))

    assert identity == Identity(7, "Grace", harness.clock.now() + 600)
    assert acts_as(harness, sid) == Actor(sid, 7, "Grace")
    assert harness.chat.presence.local_sockets(7) == frozenset({sid})


async def test_authenticating_a_socket_that_is_not_open_fails(harness: ServiceHarness) -> None:
    with pytest.raises(ChatError) as error:
        await harness.chat.sessions.authenticate("no-such-sid", harness.token(1))

    refused(error, ErrorCode.AUTH_FAILED, "no such session")
    assert harness.chat.presence.local_sockets(1) == frozenset()


async def test_a_bad_token_leaves_the_socket_unauthenticated(harness: ServiceHarness) -> None:
    sid = await harness.socket()
    forged = jwt.encode({"userId": 1, "exp": harness.clock.now() + 60},
                        "not-the-secret-not-the-secret-not-the-secret", algorithm="HS256")

    with pytest.raises(ChatError) as error:
        await harness.chat.sessions.authenticate(sid, forged)

    refused(error, ErrorCode.AUTH_FAILED, "bad signature")
    assert acts_as(harness, sid) is None
    assert harness.chat.presence.local_sockets(1) == frozenset()


async def test_a_token_that_is_no_jwt_is_refused_when_there_is_no_main_site(
    harness: ServiceHarness,
) -> None:
    sid = await harness.socket()

    with pytest.raises(ChatError) as error:
        await harness.chat.sessions.authenticate(sid, "opaque-session-token")

    refused(error, ErrorCode.AUTH_FAILED, "token is not a JWT")
    assert acts_as(harness, sid) is None


# -- the authentication timeout ------------------------------------------------------------


async def test_a_socket_that_never_authenticates_is_disconnected_after_the_auth_timeout(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(AUTH_TIMEOUT_MS="1000") as harness:
        patient = await harness.user(1)
        sid = await harness.socket()

        await harness.advance(0.5)
        assert harness.manager.disconnected == []
        await harness.advance(0.5)

        assert harness.manager.disconnected == [sid]
        assert patient not in harness.manager.disconnected


async def test_authenticating_in_time_cancels_the_auth_timeout(harness: ServiceHarness) -> None:
    sid = await harness.socket()
    await harness.advance(AUTH_TIMEOUT_S - 0.5)

    await harness.chat.sessions.authenticate(sid, harness.token(1))
    await harness.advance(AUTH_TIMEOUT_S * 10)

    assert harness.manager.disconnected == []


async def test_a_failed_authentication_leaves_the_auth_timeout_running(
    harness: ServiceHarness,
) -> None:
    sid = await harness.socket()
    await harness.advance(AUTH_TIMEOUT_S - 0.5)

    with pytest.raises(ChatError):
        await harness.chat.sessions.authenticate(sid, "not-a-token")
    await harness.advance(0.5)

    assert harness.manager.disconnected == [sid]


async def test_closing_an_unauthenticated_socket_cancels_its_auth_timeout(
    harness: ServiceHarness,
) -> None:
    timers = harness.clock.pending
    sid = await harness.socket()
    assert harness.clock.pending == timers + 1

    await harness.close(sid)

    assert harness.clock.pending == timers
    closed = list(harness.manager.disconnected)
    await harness.advance(AUTH_TIMEOUT_S * 2)
    assert harness.manager.disconnected == closed


async def test_closing_an_authenticated_socket_cancels_its_expiry_timer(
    harness: ServiceHarness,
) -> None:
    timers = harness.clock.pending
    sid = await harness.user(1)
    assert harness.clock.pending == timers + 1  # the token's expiry

    await harness.chat.sessions.close(sid)
    await harness.advance(GRACE_S)  # presence's grace timer runs out

    assert harness.clock.pending == timers
    await harness.advance(3600 + LEEWAY_S)
    assert harness.received(sid, "error") == []


# -- token expiry mid-session ---------------------------------------------------------------


async def test_a_token_expiring_mid_session_is_told_with_token_expired(
    harness: ServiceHarness,
) -> None:
    bystander = await harness.user(2)
    sid = await harness.socket()
    await harness.chat.sessions.authenticate(sid, harness.token(1, ttl_s=60))

    await harness.advance(60 + LEEWAY_S - 0.5)
    assert harness.received(sid, "error") == []
    assert acts_as(harness, sid) == Actor(sid, 1, "user1")
    await harness.advance(0.5)

    assert harness.received(sid, "error") == [TOKEN_EXPIRED]
    assert harness.received(bystander, "error") == []
    assert acts_as(harness, sid) is None
    assert harness.manager.disconnected == []


async def test_an_expired_socket_is_disconnected_after_the_auth_timeout(
    harness: ServiceHarness,
) -> None:
    sid = await harness.socket()
    await harness.chat.sessions.authenticate(sid, harness.token(1, ttl_s=60))
    await harness.advance(60 + LEEWAY_S)

    await harness.advance(AUTH_TIMEOUT_S - 0.5)
    assert harness.manager.disconnected == []
    await harness.advance(0.5)

    assert harness.manager.disconnected == [sid]
    assert harness.received(sid, "error") == [TOKEN_EXPIRED]  # told once


async def test_a_fresh_token_after_expiry_carries_on_with_no_new_arrival(
    harness: ServiceHarness,
) -> None:
    observer = await harness.user(2, "Bob")
    sid = await harness.socket()
    await harness.chat.sessions.authenticate(sid, harness.token(1, "Alice", ttl_s=60))
    await harness.advance(60 + LEEWAY_S)

    await harness.chat.sessions.authenticate(sid, harness.token(1, "Alice", ttl_s=3600))
    await harness.advance(AUTH_TIMEOUT_S * 10)

    assert harness.manager.disconnected == []
    assert acts_as(harness, sid) == Actor(sid, 1, "Alice")
    assert harness.received(observer, "user:online") == [{"userId": 1, "name": "Alice"}]
    assert harness.received(observer, "user:offline") == []


async def test_an_expired_socket_stays_in_its_rooms_until_it_is_disconnected(
    harness: ServiceHarness,
) -> None:
    sid = await harness.socket()
    await harness.chat.sessions.authenticate(sid, harness.token(1, ttl_s=60))
    await harness.advance(60 + LEEWAY_S)

    await harness.user(3, "Cy")

    assert harness.received(sid, "user:online") == [{"userId": 3, "name": "Cy"}]
    assert harness.chat.presence.local_sockets(1) == frozenset({sid})


async def test_a_fresh_token_for_the_same_user_extends_the_session(
    harness: ServiceHarness,
) -> None:
    observer = await harness.user(2)
    sid = await harness.socket()
    await harness.chat.sessions.authenticate(sid, harness.token(1, ttl_s=60))
    await harness.advance(50)

    await harness.chat.sessions.authenticate(sid, harness.token(1, ttl_s=3600))
    await harness.advance(3600)

    assert harness.received(sid, "error") == []  # the first token's expiry was replaced
    assert acts_as(harness, sid) == Actor(sid, 1, "user1")
    assert harness.received(observer, "user:online") == [{"userId": 1, "name": "user1"}]
    await harness.advance(LEEWAY_S)
    assert harness.received(sid, "error") == [TOKEN_EXPIRED]  # the second one's applies


async def test_a_token_without_exp_never_expires_when_exp_is_not_required(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(JWT_REQUIRE_EXP="false") as harness:
        sid = await harness.socket()
        timers = harness.clock.pending
        token = jwt.encode({"userId": 1, "name": "Ada"}, harness.settings.effective_jwt_secret)

        await harness.chat.sessions.authenticate(sid, token)
        assert harness.clock.pending == timers - 1  # the auth timeout, and no expiry
        await harness.advance(365 * 86400)

        assert harness.received(sid, "error") == []
        assert harness.manager.disconnected == []
        assert acts_as(harness, sid) == Actor(sid, 1, "Ada")


# -- a socket never changes hands ----------------------------------------------------------


async def test_a_token_for_another_user_is_refused_on_an_authenticated_socket(
    harness: ServiceHarness,
) -> None:
    observer = await harness.user(3)
    sid = await harness.user(1, "Alice")

    with pytest.raises(ChatError) as error:
        await harness.chat.sessions.authenticate(sid, harness.token(2, "Mallory"))

    refused(error, ErrorCode.AUTH_FAILED, "socket is authenticated as another user")
    assert acts_as(harness, sid) == Actor(sid, 1, "Alice")
    assert await harness.chat.presence.online(among=[2]) == []
    assert [e["userId"] for e in harness.received(observer, "user:online")] == [1]


async def test_a_token_for_another_user_is_refused_once_the_first_has_expired(
    harness: ServiceHarness,
) -> None:
    sid = await harness.socket()
    await harness.chat.sessions.authenticate(sid, harness.token(1, "Alice", ttl_s=60))
    await harness.advance(60 + LEEWAY_S)

    with pytest.raises(ChatError) as error:
        await harness.chat.sessions.authenticate(sid, harness.token(2, "Mallory"))

    refused(error, ErrorCode.AUTH_FAILED, "socket is authenticated as another user")
    assert acts_as(harness, sid) is None
    await harness.chat.sessions.authenticate(sid, harness.token(1, "Alice"))
    assert acts_as(harness, sid) == Actor(sid, 1, "Alice")


# -- connections per user ---------------------------------------------------------------------


async def test_a_users_connections_past_the_per_user_cap_are_refused(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MAX_CONNECTIONS_PER_USER="2") as harness:
        phone, laptop = await harness.user(1), await harness.user(1)
        third = await harness.socket()

        with pytest.raises(ChatError) as error:
            await harness.chat.sessions.authenticate(third, harness.token(1))

        refused(error, ErrorCode.RATE_LIMITED, "too many connections for this user")
        assert acts_as(harness, third) is None
        assert harness.chat.presence.local_sockets(1) == frozenset({phone, laptop})
        await harness.advance(AUTH_TIMEOUT_S)
        assert harness.manager.disconnected == [third]  # its auth timeout still ran


async def test_the_per_user_cap_counts_each_user_on_their_own(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MAX_CONNECTIONS_PER_USER="2") as harness:
        await harness.user(1)
        await harness.user(1)

        sockets = [await harness.user(2), await harness.user(2)]

        assert harness.chat.presence.local_sockets(2) == frozenset(sockets)


async def test_a_socket_at_the_per_user_cap_may_renew_its_token(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MAX_CONNECTIONS_PER_USER="2") as harness:
        await harness.user(1)
        sid = await harness.user(1)

        identity = await harness.chat.sessions.authenticate(sid, harness.token(1, ttl_s=7200))

        assert identity.expires_at == harness.clock.now() + 7200


async def test_a_closed_connection_frees_its_place_for_the_user(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(MAX_CONNECTIONS_PER_USER="2") as harness:
        phone, laptop = await harness.user(1), await harness.user(1)

        await harness.close(phone)
        tablet = await harness.user(1)

        assert harness.chat.presence.local_sockets(1) == frozenset({laptop, tablet})


async def test_a_per_user_cap_of_zero_is_no_cap(make_harness: HarnessFactory) -> None:
    async with make_harness(MAX_CONNECTIONS_PER_USER="0") as harness:
        for _ in range(25):  # more than the default cap of 20
            await harness.user(1)

        assert len(harness.chat.presence.local_sockets(1)) == 25


# -- the per-socket event rate and flooding ----------------------------------------------------


async def refuse_events(harness: ServiceHarness, sid: str, times: int) -> None:
    session = harness.chat.sessions.get(sid)
    assert session is not None
    for _ in range(times):
        assert not harness.chat.sessions.allow_event(session)
    await harness.chat.tasks.drain()


async def spend_burst(harness: ServiceHarness, sid: str) -> None:
    """RATE_LIMIT_EVENTS=1: a burst of two events, then refusals."""
    session = harness.chat.sessions.get(sid)
    assert session is not None
    assert [harness.chat.sessions.allow_event(session) for _ in range(2)] == [True, True]


async def test_a_socket_refused_flood_disconnect_after_times_in_a_row_is_disconnected(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(RATE_LIMIT_EVENTS="1") as harness:
        flooder, calm = await harness.user(1), await harness.user(2)
        await spend_burst(harness, flooder)

        await refuse_events(harness, flooder, FLOOD_DISCONNECT_AFTER - 1)
        assert harness.manager.disconnected == []
        await refuse_events(harness, flooder, 1)

        assert harness.manager.disconnected == [flooder]
        assert calm not in harness.manager.disconnected


async def test_a_flooding_socket_is_disconnected_once(make_harness: HarnessFactory) -> None:
    async with make_harness(RATE_LIMIT_EVENTS="1") as harness:
        flooder = await harness.user(1)
        await spend_burst(harness, flooder)

        await refuse_events(harness, flooder, FLOOD_DISCONNECT_AFTER)
        session = harness.chat.sessions.get(flooder)
        assert session is not None

        # Refusals that arrive before the transport has closed the socket start nothing.
        for _ in range(FLOOD_DISCONNECT_AFTER * 2):
            assert not harness.chat.sessions.allow_event(session)
        assert len(harness.chat.tasks) == 0
        await harness.chat.tasks.drain()
        assert harness.manager.disconnected == [flooder]


async def test_an_allowed_event_ends_the_run_of_refusals(make_harness: HarnessFactory) -> None:
    async with make_harness(RATE_LIMIT_EVENTS="1") as harness:
        sid = await harness.user(1)
        session = harness.chat.sessions.get(sid)
        assert session is not None
        await spend_burst(harness, sid)
        await refuse_events(harness, sid, FLOOD_DISCONNECT_AFTER - 1)

        await harness.advance(1)  # one event's worth of tokens
        assert harness.chat.sessions.allow_event(session)
        await refuse_events(harness, sid, FLOOD_DISCONNECT_AFTER - 1)

        assert harness.manager.disconnected == []


async def test_the_event_rate_is_counted_per_socket(make_harness: HarnessFactory) -> None:
    async with make_harness(RATE_LIMIT_EVENTS="1") as harness:
        phone, laptop = await harness.user(1), await harness.user(1)
        await spend_burst(harness, phone)

        await spend_burst(harness, laptop)  # the same user's other socket has its own

        await refuse_events(harness, phone, 1)


async def test_unauthenticated_sockets_are_rate_limited_too(make_harness: HarnessFactory) -> None:
    async with make_harness(RATE_LIMIT_EVENTS="1") as harness:
        sid = await harness.socket()
        await spend_burst(harness, sid)

        await refuse_events(harness, sid, FLOOD_DISCONNECT_AFTER)

        assert harness.manager.disconnected == [sid]


# -- closing ------------------------------------------------------------------------------


async def test_closing_a_socket_forgets_its_session(harness: ServiceHarness) -> None:
    keep, sid = await harness.user(1), await harness.user(2)

    await harness.chat.sessions.close(sid)

    assert harness.chat.sessions.get(sid) is None
    assert acts_as(harness, sid) is None
    assert harness.chat.sessions.count == 1
    assert harness.chat.sessions.get(keep) is not None


async def test_closing_the_last_socket_of_a_user_starts_their_departure(
    harness: ServiceHarness,
) -> None:
    observer = await harness.user(1)
    sid = await harness.user(2)

    await harness.chat.sessions.close(sid)
    await harness.advance(GRACE_S)

    assert harness.received(observer, "user:offline") == [
        {"userId": 2, "lastSeen": "2027-01-15T08:00:00.000Z"}
    ]


async def test_closing_an_unauthenticated_socket_announces_nothing(
    harness: ServiceHarness,
) -> None:
    observer = await harness.user(1)
    sid = await harness.socket()

    await harness.chat.sessions.close(sid)
    await harness.advance(GRACE_S)

    assert harness.received(observer) == []


async def test_closing_a_socket_twice_or_one_never_opened_is_harmless(
    harness: ServiceHarness,
) -> None:
    observer = await harness.user(1)
    sid = await harness.user(2)

    await harness.chat.sessions.close(sid)
    await harness.advance(1)
    await harness.chat.sessions.close(sid)
    await harness.chat.sessions.close("never-opened")
    await harness.advance(GRACE_S * 10)

    assert harness.received(observer, "user:offline") == [
        {"userId": 2, "lastSeen": "2027-01-15T08:00:00.000Z"}
    ]


async def test_closing_a_socket_ends_its_typing_at_once(harness: ServiceHarness) -> None:
    conversation = await harness.conversation(1, 2)
    typist, reader = await harness.user(1), await harness.user(2)
    for sid in (typist, reader):
        await harness.chat.conversations.join(harness.actor(sid), conversation, None)
    await harness.chat.typing.start(harness.actor(typist), conversation)

    await harness.chat.sessions.close(typist)

    assert harness.received(reader, "typing:indicator") == [
        {"userId": 1, "conversationId": conversation, "isTyping": True},
        {"userId": 1, "conversationId": conversation, "isTyping": False},
    ]


# -- recording the user ---------------------------------------------------------------------


async def test_authenticating_records_the_users_name(harness: ServiceHarness) -> None:
    await harness.user(4, "Dana")

    assert await users_row(harness, 4) == ("Dana",)


async def test_a_new_name_in_a_later_token_is_recorded(harness: ServiceHarness) -> None:
    await harness.user(4, "Dana")

    await harness.user(4, "Dana Scully")

    assert await users_row(harness, 4) == ("Dana Scully",)


async def test_a_reconnect_with_the_same_name_writes_nothing(harness: ServiceHarness) -> None:
    await harness.user(4, "Dana")
    table = f"{harness.settings.db_table_prefix}users"
    engine = harness.storage.engine  # type: ignore[attr-defined]
    await engine.execute(f"UPDATE {table} SET name = 'edited elsewhere' WHERE id = '4'")

    await harness.user(4, "Dana")

    assert await users_row(harness, 4) == ("edited elsewhere",)


async def test_a_user_comes_online_though_the_database_cannot_record_them(
    harness: ServiceHarness,
) -> None:
    observer = await harness.user(1)
    await make_database_read_only(harness)

    with capture_logs() as logs:
        sid = await harness.socket()
        await harness.chat.sessions.authenticate(sid, harness.token(5, "Eve"))

    assert acts_as(harness, sid) == Actor(sid, 5, "Eve")
    assert harness.received(observer, "user:online") == [{"userId": 5, "name": "Eve"}]
    assert [entry["event"] for entry in logs] == ["user not recorded: database unavailable"]


async def test_a_user_not_recorded_is_tried_again_at_their_next_authentication(
    harness: ServiceHarness,
) -> None:
    await make_database_read_only(harness)

    with capture_logs() as logs:
        await harness.user(5, "Eve")
        await harness.user(5, "Eve")

    assert [entry["event"] for entry in logs] == [
        "user not recorded: database unavailable"] * 2


# -- ending a user's sessions -------------------------------------------------------------


async def test_ending_a_users_sessions_tells_and_disconnects_each_of_their_sockets(
    harness: ServiceHarness,
) -> None:
    phone, laptop, bystander = await harness.user(7), await harness.user(7), await harness.user(8)

    await harness.chat.sessions.end_user_sessions(7)

    revoked = {"code": "AUTH_FAILED", "message": "token revoked", "event": None}
    assert [harness.received(sid, "error") for sid in (phone, laptop, bystander)] == [
        [revoked], [revoked], []]
    assert sorted(harness.manager.disconnected) == sorted([phone, laptop])


async def test_ending_the_sessions_of_a_user_not_connected_does_nothing(
    harness: ServiceHarness,
) -> None:
    bystander = await harness.user(8)

    await harness.chat.sessions.end_user_sessions(7)

    assert harness.received(bystander) == []
    assert harness.manager.disconnected == []


# -- tokens the JWT check cannot decide ----------------------------------------------------


@pytest.fixture
async def main_site(harness: ServiceHarness) -> AsyncIterator[MainSite]:
    """A MainSite the harness's sessions ask, as app.py wires AUTH_VERIFY_URL."""
    async with main_site_running() as site, aiohttp.ClientSession() as http:
        harness.chat.sessions.main_site = MainSiteVerifier(
            site.url, http, harness.clock, 2.0, 60, harness.settings.user_id_type)
        yield site


async def test_a_token_the_main_site_vouches_for_makes_the_socket_that_users(
    harness: ServiceHarness, main_site: MainSite,
) -> None:
    exp = harness.clock.now() + 120
    main_site.accept("sess-1", {"userId": 42, "name": "Portal User", "exp": exp})
    sid = await harness.socket()

    identity = await harness.chat.sessions.authenticate(sid, "sess-1")

    assert identity == Identity(42, "Portal User", exp)
    assert acts_as(harness, sid) == Actor(sid, 42, "Portal User")
    assert await harness.chat.presence.online(among=[42]) == [OnlineUser(42, "Portal User")]
    await harness.advance(120 + LEEWAY_S)
    assert harness.received(sid, "error") == [TOKEN_EXPIRED]


async def test_a_token_the_jwt_check_refuses_is_never_asked_of_the_main_site(
    harness: ServiceHarness, main_site: MainSite,
) -> None:
    sid = await harness.socket()
    expired = harness.token(1, ttl_s=-3600)
    unsigned = "eyJhbGciOiJub25lIn0.eyJ1c2VySWQiOjF9."

    for token in (expired, unsigned, "x" * 9000, "é"):
        with pytest.raises(ChatError):
            await harness.chat.sessions.authenticate(sid, token)

    assert main_site.asked == []
    assert acts_as(harness, sid) is None


# -- a socket closing while it authenticates ------------------------------------------------


async def test_a_socket_that_closes_while_the_main_site_checks_its_token_is_refused_quietly(
    harness: ServiceHarness, main_site: MainSite,
) -> None:
    main_site.accept("sess-1", {"userId": 42, "name": "Late"})
    main_site.may_answer.clear()
    observer = await harness.user(1)
    sid = await harness.socket()
    authenticating = asyncio.create_task(harness.chat.sessions.authenticate(sid, "sess-1"))
    await main_site.was_asked.wait()

    await harness.close(sid)  # e.g. its auth timeout, or the client went away
    main_site.may_answer.set()
    # Refused, never an internal error from the rooms of a socket that is gone
    # (the transport would log it as a failed handler).
    with pytest.raises(ChatError) as refused:
        await authenticating
    assert refused.value.code == ErrorCode.AUTH_FAILED
    await harness.advance(GRACE_S)

    assert harness.chat.presence.local_sockets(42) == frozenset()
    assert await harness.chat.presence.online(among=[42]) == []
    assert harness.received(observer, "user:online") == []


async def test_a_socket_that_closes_while_its_user_is_recorded_is_refused_quietly(
    harness: ServiceHarness,
) -> None:
    engine = harness.storage.engine  # type: ignore[attr-defined]
    writes_held, release_writes = asyncio.Event(), asyncio.Event()

    async def hold_writes() -> None:  # a slow database: the users write waits
        async with engine.transaction():
            writes_held.set()
            await release_writes.wait()

    observer = await harness.user(1)
    holder = asyncio.create_task(hold_writes())
    await writes_held.wait()
    sid = await harness.socket()
    authenticating = asyncio.create_task(
        harness.chat.sessions.authenticate(sid, harness.token(42, "Late")))
    session = harness.chat.sessions.get(sid)
    assert session is not None
    await asyncio.sleep(0)  # authenticate runs until it waits on the users write
    assert session.online

    await harness.close(sid)  # the socket goes away meanwhile
    release_writes.set()
    await holder
    with pytest.raises(ChatError) as refused:  # as above: never an internal error
        await authenticating
    assert refused.value.code == ErrorCode.AUTH_FAILED
    await harness.advance(GRACE_S)

    assert harness.chat.presence.local_sockets(42) == frozenset()
    assert await harness.chat.presence.online(among=[42]) == []
    assert harness.received(observer, "user:online") == []
