"""MainSiteVerifier: tokens the JWT check cannot decide are posted to the main
site (AUTH_VERIFY_URL). An accepted token becomes that user's identity and is
reused for AUTH_VERIFY_CACHE_S; a refusal is remembered for five seconds; a main
site that fails, answers nonsense, is unreachable or too slow refuses the token
with AUTH_FAILED, and is asked again next time; a revocation answer ends the
user's sessions here.

The main site is a real aiohttp server on a loopback port, answering as the portal's
verify endpoint would."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest

from ecigdis_ws.clock import ManualClock
from ecigdis_ws.domain import Identity
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.services.main_site import NEGATIVE_CACHE_S, MainSiteVerifier
from ecigdis_ws.settings import Settings
from tests.main_site import MainSite, main_site_running
from tests.services.conftest import ServiceHarness
from tests.support import test_settings as settings_from_env

HarnessFactory = Callable[..., AbstractAsyncContextManager[ServiceHarness]]
REFUSED = "token refused by the main site"
UNAVAILABLE = "main site unavailable to verify this token"


@pytest.fixture
async def main_site() -> AsyncIterator[MainSite]:
    async with main_site_running() as site:
        yield site


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Verifying(NamedTuple):
    """A verifier built as app.py builds it from the settings, on a manual clock."""

    verifier: MainSiteVerifier
    clock: ManualClock


@pytest.fixture
def verifying(
    tmp_path: Path, http: aiohttp.ClientSession, main_site: MainSite
) -> Callable[..., Verifying]:
    """AUTH_VERIFY_URL is the main site's unless given; other settings as env names."""

    def build(timeout_s: float | None = None, **env: str) -> Verifying:
        clock = ManualClock()
        settings = settings_from_env(tmp_path, **{"AUTH_VERIFY_URL": main_site.url, **env})
        return Verifying(verifier_for(settings, clock, http, timeout_s), clock)

    return build


def verifier_for(
    settings: Settings, clock: ManualClock, http: aiohttp.ClientSession,
    timeout_s: float | None = None,
) -> MainSiteVerifier:
    assert settings.auth_verify_url is not None
    return MainSiteVerifier(
        settings.auth_verify_url, http, clock,
        settings.auth_verify_timeout_ms / 1000 if timeout_s is None else timeout_s,
        settings.auth_verify_cache_s, settings.user_id_type,
    )


def revoking_verifier_for(harness: ServiceHarness, http: aiohttp.ClientSession) -> MainSiteVerifier:
    """As app.py builds it, sessions.end_user_sessions told of revocations."""
    verifier = verifier_for(harness.settings, harness.clock, http)
    verifier.on_revoked = harness.chat.sessions.end_user_sessions
    return verifier


async def refusal(verifier: MainSiteVerifier, token: str) -> str:
    """The AUTH_FAILED message the token is refused with."""
    with pytest.raises(ChatError) as refused:
        await verifier.verify(token)
    assert refused.value.code == ErrorCode.AUTH_FAILED
    return refused.value.message


# -- accepted tokens --------------------------------------------------------------------


async def test_a_token_the_main_site_accepts_is_that_users_identity(
    verifying: Callable[..., Verifying], main_site: MainSite
) -> None:
    main_site.accept("sess-abc", {"userId": 42, "name": "Alice", "exp": 1_800_000_600})

    identity = await verifying().verifier.verify("sess-abc")

    assert identity == Identity(42, "Alice", 1_800_000_600.0)


async def test_the_token_is_posted_as_json_and_as_a_bearer_header(
    verifying: Callable[..., Verifying], main_site: MainSite
) -> None:
    main_site.accept("sess-abc", {"userId": 42})

    await verifying().verifier.verify("sess-abc")

    assert (main_site.asked, main_site.bearers) == (["sess-abc"], ["Bearer sess-abc"])


async def test_an_identity_without_a_name_is_named_by_its_id_and_a_long_name_is_cut(
    verifying: Callable[..., Verifying], main_site: MainSite
) -> None:
    main_site.accept("no-name", {"userId": "42"})
    main_site.accept("long-name", {"userId": 43, "name": "x" * 300})
    verifier = verifying().verifier

    assert await verifier.verify("no-name") == Identity(42, "42", None)
    assert await verifier.verify("long-name") == Identity(43, "x" * 255, None)


@pytest.mark.parametrize("exp", ["soon", True, float("nan"), float("inf")],
                         ids=["text", "true", "nan", "infinity"])
async def test_an_exp_that_is_not_a_finite_time_is_refused(
    verifying: Callable[..., Verifying], main_site: MainSite, exp: object
) -> None:
    """Read as no expiry (or as 1.0, or one that never passes), such an answer
    would keep the token valid for ever: the main site's answer is refused."""
    main_site.accept("odd-exp", {"userId": 43, "exp": exp})
    verifier = verifying().verifier

    assert await refusal(verifier, "odd-exp") == (
        "main site answered an exp that is not a time in seconds")


async def test_with_string_user_ids_the_main_sites_id_is_kept_as_text(
    verifying: Callable[..., Verifying], main_site: MainSite
) -> None:
    main_site.accept("sess-abc", {"userId": 42, "name": "Alice"})

    identity = await verifying(USER_ID_TYPE="string").verifier.verify("sess-abc")

    assert identity.user_id == "42"


async def test_an_accepted_token_is_not_asked_again_for_auth_verify_cache_s(
    verifying: Callable[..., Verifying], main_site: MainSite
) -> None:
    main_site.accept("sess-abc", {"userId": 42, "name": "Alice"})
    verifier, clock = verifying(AUTH_VERIFY_CACHE_S="30")
    first = await verifier.verify("sess-abc")
    clock.advance(29.999)
    assert await verifier.verify("sess-abc") == first
    assert main_site.asked == ["sess-abc"]

    main_site.accept("sess-abc", {"userId": 42, "name": "Alice B."})
    clock.advance(0.001)

    assert (await verifier.verify("sess-abc")).name == "Alice B."
    assert main_site.asked == ["sess-abc", "sess-abc"]


async def test_an_accepted_token_is_not_served_from_the_cache_past_its_exp(
    verifying: Callable[..., Verifying], main_site: MainSite
) -> None:
    verifier, clock = verifying(AUTH_VERIFY_CACHE_S="60")
    exp = int(clock.now()) + 10
    main_site.accept("sess-short", {"userId": 42, "name": "Alice", "exp": exp})
    assert (await verifier.verify("sess-short")).expires_at == exp
    main_site.answers["sess-short"] = (401, {})  # the portal: expired, unknown now

    clock.advance(11)

    # The cache entry is still 49 s from running out, but the main site's own
    # answer said the token ends at exp: an identity past it is stale.
    assert await refusal(verifier, "sess-short") == REFUSED
    assert main_site.asked == ["sess-short", "sess-short"]


async def test_each_token_is_asked_about_on_its_own(
    verifying: Callable[..., Verifying], main_site: MainSite
) -> None:
    main_site.accept("sess-a", {"userId": 1})
    main_site.accept("sess-b", {"userId": 2})
    verifier = verifying().verifier

    users = [(await verifier.verify(token)).user_id for token in ("sess-a", "sess-b")]

    assert (users, main_site.asked) == ([1, 2], ["sess-a", "sess-b"])


# -- refused tokens ---------------------------------------------------------------------


async def test_a_token_the_main_site_does_not_accept_is_refused(
    verifying: Callable[..., Verifying], main_site: MainSite
) -> None:
    answers: list[tuple[int, Any]] = [
        (401, {}), (403, {"error": "forbidden"}), (200, {"valid": False}),
        (200, {"userId": 42}), (200, {"valid": "true", "userId": 42}),
    ]
    verifier = verifying().verifier
    for n, answer in enumerate(answers):
        main_site.answers[f"sess-{n}"] = answer
        assert await refusal(verifier, f"sess-{n}") == REFUSED, answer


async def test_a_refusal_is_remembered_for_five_seconds_then_asked_again(
    verifying: Callable[..., Verifying], main_site: MainSite
) -> None:
    verifier, clock = verifying(AUTH_VERIFY_CACHE_S="60")
    assert await refusal(verifier, "sess-new") == REFUSED
    main_site.accept("sess-new", {"userId": 42})  # fixed on the main site
    clock.advance(NEGATIVE_CACHE_S - 0.001)
    assert await refusal(verifier, "sess-new") == REFUSED
    assert main_site.asked == ["sess-new"]

    clock.advance(0.001)

    assert (await verifier.verify("sess-new")).user_id == 42
    assert main_site.asked == ["sess-new", "sess-new"]


async def test_a_valid_answer_naming_no_valid_user_is_refused(
    verifying: Callable[..., Verifying], main_site: MainSite
) -> None:
    main_site.accept("no-user", {})
    main_site.accept("zero", {"userId": 0})
    main_site.accept("word", {"userId": "bob"})
    verifier = verifying().verifier

    for token in ("no-user", "zero", "word"):
        assert await refusal(verifier, token) == "main site named no valid user"


# -- the main site failing --------------------------------------------------------------


async def test_an_error_status_refuses_the_token_and_is_not_remembered(
    verifying: Callable[..., Verifying], main_site: MainSite
) -> None:
    main_site.answers["sess-abc"] = (500, {"error": "boom"})
    verifier = verifying().verifier
    assert await refusal(verifier, "sess-abc") == "main site answered 500"
    main_site.accept("sess-abc", {"userId": 42})  # the main site recovered

    assert (await verifier.verify("sess-abc")).user_id == 42
    assert main_site.asked == ["sess-abc", "sess-abc"]


async def test_an_answer_that_is_not_json_refuses_the_token(
    verifying: Callable[..., Verifying], main_site: MainSite
) -> None:
    main_site.answers["sess-abc"] = (200, "<html>maintenance</html>")

    assert await refusal(verifying().verifier, "sess-abc") == UNAVAILABLE


async def test_an_answer_that_is_not_an_object_refuses_the_token(
    verifying: Callable[..., Verifying], main_site: MainSite
) -> None:
    main_site.answers["sess-abc"] = (200, [{"valid": True, "userId": 42}])

    message = await refusal(verifying().verifier, "sess-abc")

    assert message == "main site answered something that is not an object"


async def test_a_main_site_slower_than_the_timeout_refuses_the_token(
    verifying: Callable[..., Verifying], main_site: MainSite
) -> None:
    main_site.may_answer.clear()
    # aiohttp's timeout runs on real time, not on the injected clock: a short one
    # (AUTH_VERIFY_TIMEOUT_MS allows 50 ms at least) keeps the test quick.
    verifier = verifying(timeout_s=0.02).verifier

    assert await refusal(verifier, "sess-slow") == UNAVAILABLE
    assert main_site.asked == ["sess-slow"]


async def test_an_unreachable_main_site_refuses_the_token_and_is_asked_again(
    verifying: Callable[..., Verifying],
) -> None:
    with socket.socket() as bound:  # a port of ours on which nothing listens
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}/api/messenger/verify-token"
        verifier = verifying(AUTH_VERIFY_URL=url).verifier

        assert await refusal(verifier, "sess-abc") == UNAVAILABLE
        assert await refusal(verifier, "sess-abc") == UNAVAILABLE


# -- revocation -------------------------------------------------------------------------


async def test_a_revocation_answer_ends_the_users_sessions_here(
    make_harness: HarnessFactory, main_site: MainSite, http: aiohttp.ClientSession
) -> None:
    main_site.answers["sess-stolen"] = (200, {"valid": False, "revoked": True, "userId": 7})
    async with make_harness(AUTH_VERIFY_URL=main_site.url) as harness:
        phone, laptop, bystander = (
            await harness.user(7), await harness.user(7), await harness.user(8))

        assert await refusal(revoking_verifier_for(harness, http), "sess-stolen") == REFUSED

        revoked = {"code": "AUTH_FAILED", "message": "token revoked", "event": None}
        assert [harness.received(sid, "error") for sid in (phone, laptop, bystander)] == [
            [revoked], [revoked], []]
        assert sorted(harness.manager.disconnected) == sorted([phone, laptop])


async def test_a_refusal_that_is_not_a_revocation_ends_no_session(
    make_harness: HarnessFactory, main_site: MainSite, http: aiohttp.ClientSession
) -> None:
    main_site.answers["sess-old"] = (200, {"valid": False, "userId": 7})
    main_site.answers["sess-odd"] = (200, {"valid": False, "revoked": "yes", "userId": 7})
    async with make_harness(AUTH_VERIFY_URL=main_site.url) as harness:
        await harness.user(7)
        verifier = revoking_verifier_for(harness, http)
        for token in ("sess-old", "sess-odd"):
            assert await refusal(verifier, token) == REFUSED

        assert harness.manager.disconnected == []
