"""DevAccounts: the demo page's sign-in. A name (trimmed, NFC, 1-40 printable
characters) stands for one user whatever its case: with USER_ID_TYPE=int the id is
1000000000 plus the first 48 bits of SHA-256 of the case-folded name, with string
ids the case-folded name. The user gets a token and is put in the demo lobby."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from ecigdis_ws.domain import Identity
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.services.auth import TokenExpired, TokenVerifier
from ecigdis_ws.services.dev_accounts import DEMO_LOBBY_TITLE, DevAccounts, demo_user_id
from tests.services.conftest import ServiceHarness

HarnessFactory = Callable[..., AbstractAsyncContextManager[ServiceHarness]]


def accounts_of(harness: ServiceHarness) -> DevAccounts:
    """Built as transport/client_routes.py builds it."""
    return DevAccounts(harness.settings, harness.clock, harness.storage.conversations,
                       harness.storage.users, harness.chat.server)


async def roles_in(harness: ServiceHarness, conversation_id: int) -> dict[str, str]:
    """Each member's name and role."""
    members = await harness.storage.conversations.members(conversation_id)
    return {member.name: member.role for member in members}


# -- user ids ---------------------------------------------------------------------------


def test_an_int_id_is_the_base_plus_the_first_48_bits_of_the_names_sha256() -> None:
    # 1000000000 + int.from_bytes(sha256(b"alice").digest()[:6], "big")
    assert demo_user_id("alice", "int") == 48_207_826_798_862
    digest = hashlib.sha256(b"alice").digest()
    assert demo_user_id("alice", "int") == 1_000_000_000 + int.from_bytes(digest[:6], "big")


def test_an_id_is_derived_from_the_case_folded_name_not_the_lower_cased_one() -> None:
    # "ß".lower() is "ß" but "ß".casefold() is "ss"
    assert demo_user_id("Straße", "int") == demo_user_id("STRASSE", "int") == 25_124_030_698_103
    assert demo_user_id("Straße", "string") == demo_user_id("STRASSE", "string") == "strasse"


def test_a_string_id_is_the_case_folded_name_cut_to_64_characters() -> None:
    assert demo_user_id("Alice", "string") == "alice"
    assert demo_user_id("ß" * 40, "string") == "s" * 64  # folds to 80 characters


async def test_the_same_name_in_another_case_signs_in_as_the_same_user(
    harness: ServiceHarness,
) -> None:
    accounts = accounts_of(harness)

    first = await accounts.sign_in("Alice")
    again = await accounts.sign_in("ALICE")

    assert first.user_id == again.user_id == 48_207_826_798_862
    assert (first.name, again.name) == ("Alice", "ALICE")  # the name as typed


async def test_a_decomposed_name_signs_in_as_the_user_of_the_composed_one(
    harness: ServiceHarness,
) -> None:
    accounts = accounts_of(harness)

    decomposed = await accounts.sign_in("Zoe\u0301")
    composed = await accounts.sign_in("ZO\u00c9")

    assert decomposed.user_id == composed.user_id
    assert decomposed.name == "Zo\u00e9"


async def test_with_string_ids_the_user_is_the_case_folded_name(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(USER_ID_TYPE="string") as harness:
        login = await accounts_of(harness).sign_in("  Alice ")

        assert (login.user_id, login.name) == ("alice", "Alice")
        assert await harness.storage.conversations.is_member(login.lobby_id, "alice")


# -- the token and the lobby ------------------------------------------------------------


async def test_the_token_names_the_user_as_typed_and_lasts_an_hour_by_default(
    harness: ServiceHarness,
) -> None:
    login = await accounts_of(harness).sign_in("Alice")

    identity = TokenVerifier(harness.settings, harness.clock).verify(login.token)

    assert identity == Identity(login.user_id, "Alice", harness.clock.now() + 3600)
    assert login.expires_in_s == 3600


async def test_a_token_asked_for_a_shorter_time_expires_then(harness: ServiceHarness) -> None:
    login = await accounts_of(harness).sign_in("Alice", 60)
    verifier = TokenVerifier(harness.settings, harness.clock)
    leeway = harness.settings.jwt_leeway_s

    await harness.advance(60 + leeway)
    assert verifier.verify(login.token).user_id == login.user_id
    await harness.advance(1)

    with pytest.raises(TokenExpired):
        verifier.verify(login.token)
    assert login.expires_in_s == 60


async def test_signing_in_puts_the_user_in_the_lobby_with_everyone_else(
    harness: ServiceHarness,
) -> None:
    accounts = accounts_of(harness)

    alice = await accounts.sign_in("Alice")
    bob = await accounts.sign_in("Bob")
    await accounts.sign_in("alice")

    assert alice.lobby_id == bob.lobby_id == 1  # on a fresh database, the first conversation
    assert sorted(await harness.storage.conversations.member_ids(alice.lobby_id)) == sorted(
        [alice.user_id, bob.user_id])


async def test_the_first_member_of_the_lobby_is_its_owner_and_the_others_members(
    harness: ServiceHarness,
) -> None:
    accounts = accounts_of(harness)

    alice = await accounts.sign_in("Alice")
    bob = await accounts.sign_in("Bob")
    await accounts.sign_in("Alice")  # again: still the owner, no second owner made

    assert await roles_in(harness, alice.lobby_id) == {"Alice": "owner", "Bob": "member"}
    assert bob.lobby_id == alice.lobby_id


async def test_a_lobby_whose_owner_left_gets_the_next_newcomer_as_owner(
    harness: ServiceHarness,
) -> None:
    accounts = accounts_of(harness)
    alice = await accounts.sign_in("Alice")
    await harness.storage.conversations.remove_member(alice.lobby_id, alice.user_id)

    await accounts.sign_in("Bob")

    assert await roles_in(harness, alice.lobby_id) == {"Bob": "owner"}


async def test_the_lobby_is_not_a_conversation_made_before_it_by_another_title(
    harness: ServiceHarness,
) -> None:
    # The README's tour first: `conversation create --title Team --members 1,2` is 1.
    team = await harness.storage.conversations.create_conversation("Team", [1, 2], 0)

    alice = await accounts_of(harness).sign_in("Alice")

    assert alice.lobby_id != team
    assert alice.wire()["lobby"] == {"conversationId": alice.lobby_id, "title": "Lobby"}
    assert await harness.storage.conversations.oldest_conversation_titled(
        DEMO_LOBBY_TITLE
    ) == alice.lobby_id
    assert await harness.storage.conversations.member_ids(
        team
    ) == [1, 2]  # the demo user is not in it


async def test_after_a_restart_the_same_lobby_is_found_by_its_title(
    harness: ServiceHarness,
) -> None:
    alice = await accounts_of(harness).sign_in("Alice")
    later = await harness.storage.conversations.create_conversation("Team", [1, 2], 0)

    bob = await accounts_of(harness).sign_in("Bob")  # a new server process, the same database

    assert bob.lobby_id == alice.lobby_id != later
    assert sorted(await harness.storage.conversations.member_ids(alice.lobby_id)) == sorted(
        [alice.user_id, bob.user_id])


async def test_first_sign_ins_at_once_make_one_lobby(harness: ServiceHarness) -> None:
    accounts = accounts_of(harness)

    logins = await asyncio.gather(*(accounts.sign_in(f"user {n}") for n in range(5)))

    assert {login.lobby_id for login in logins} == {1}
    assert await harness.storage.conversations.conversation_exists(1)
    assert not await harness.storage.conversations.conversation_exists(2)


async def test_a_signed_in_user_may_join_the_lobby_room(harness: ServiceHarness) -> None:
    login = await accounts_of(harness).sign_in("Alice")
    sid = await harness.socket()
    await harness.chat.sessions.authenticate(sid, login.token)

    joined = await harness.chat.conversations.join(harness.actor(sid), login.lobby_id, None)

    assert joined.online_user_ids == [login.user_id]


async def test_the_login_is_sent_as_token_user_name_expiry_and_lobby(
    harness: ServiceHarness,
) -> None:
    login = await accounts_of(harness).sign_in("Alice", 120)

    assert login.wire() == {
        "token": login.token,
        "userId": 48_207_826_798_862,
        "name": "Alice",
        "expiresIn": 120,
        "lobby": {"conversationId": 1, "title": "Lobby"},
    }


# -- refusals ---------------------------------------------------------------------------


async def test_a_name_that_is_not_1_to_40_printable_characters_is_refused(
    harness: ServiceHarness,
) -> None:
    accounts = accounts_of(harness)
    for name in ("", "   ", "x" * 41, "a\nb", "tab\there", None, 5, ["Alice"]):
        with pytest.raises(ChatError) as refused:
            await accounts.sign_in(name)
        assert refused.value.code == ErrorCode.INVALID_PAYLOAD, name

    # nothing written
    assert await harness.storage.conversations.oldest_conversation_titled(DEMO_LOBBY_TITLE) is None


async def test_a_name_of_40_characters_after_trimming_is_accepted(
    harness: ServiceHarness,
) -> None:
    login = await accounts_of(harness).sign_in("  " + "x" * 40 + "  ")

    assert login.name == "x" * 40


async def test_a_ttl_that_is_not_an_integer_from_1_to_86400_is_refused(
    harness: ServiceHarness,
) -> None:
    accounts = accounts_of(harness)
    for ttl in (0, -1, 86401, True, 1.5, "60"):
        with pytest.raises(ChatError) as refused:
            await accounts.sign_in("Alice", ttl)
        assert (refused.value.code, refused.value.message) == (
            ErrorCode.INVALID_PAYLOAD, "ttlS must be an integer from 1 to 86400"), ttl

    # nothing written
    assert await harness.storage.conversations.oldest_conversation_titled(DEMO_LOBBY_TITLE) is None


async def test_a_ttl_of_1_to_86400_seconds_is_accepted(harness: ServiceHarness) -> None:
    accounts = accounts_of(harness)
    verifier = TokenVerifier(harness.settings, harness.clock)
    for ttl in (1, 86400):
        login = await accounts.sign_in("Alice", ttl)
        identity = verifier.verify(login.token)
        assert (login.expires_in_s, identity.expires_at) == (ttl, harness.clock.now() + ttl)


async def test_a_newcomer_to_the_lobby_is_announced_to_those_in_its_room(
    harness: ServiceHarness,
) -> None:
    accounts = accounts_of(harness)
    alice = await accounts.sign_in("Alice")
    sid = await harness.socket()
    await harness.chat.sessions.authenticate(sid, alice.token)
    await harness.chat.conversations.join(harness.actor(sid), alice.lobby_id, None)

    bob = await accounts.sign_in("Bob")
    await accounts.sign_in("Bob")  # a member already: no second announcement

    assert harness.received(sid, "member:added") == [
        {"userId": bob.user_id, "conversationId": alice.lobby_id, "addedBy": None}]
