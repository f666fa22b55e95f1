"""Hostile payloads: arbitrary JSON on every client event never breaks a handler.

Hypothesis drives one real server per backend for all its examples: the property
runs in a worker thread and hands each example to the test's event loop, so
whatever one example leaves behind (a dead socket, a stuck room, a half-written
row) shows up in the examples after it and in the checks at the end.

The property, for every client event and an unknown one, with or without an ack:
the ack is `{ ok: true, ... }` or `{ ok: false, error: { code, message } }` with a
code PROTOCOL.md lists and this event can give (never INTERNAL: that is a handler
that raised), failures also come as one `error` event, the socket stays connected
and authenticated, and a bystander in the same conversations keeps receiving.
Every text acknowledged `sent` is stored byte for byte, SQL, HTML, RTL overrides
and NUL bytes included, or as the last edit of it set it, byte for byte too, or
"" once deleted (a tombstone); and the tables the SQL names are still there.

Event names python-socketio dispatches specially (`connect`, `disconnect`, `*`)
and packets no client library would send are tested apart at the end: the server
closes such a connection, as Node's socket.io-parser does, and the session it
held goes with it.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import jwt
import pytest
import socketio
from hypothesis import given, settings
from hypothesis import strategies as st

from ecigdis_ws.domain import ChangedBy, StoredMessage
from ecigdis_ws.errors import ErrorCode
from ecigdis_ws.transport.socket_events import CLIENT_EVENTS
from ecigdis_ws.transport.validation import MAX_ID
from tests.support import WAIT_S, ChatClient, RunningServer
from tests.transport.conftest import HYPOTHESIS, on_loop

ServerFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]
Json = Any

ACTOR, OBSERVER, BYSTANDER = 1, 2, 3
# A member of home whom member:remove and member:role may act on: the three above
# must stay members (the checks at the end read what they received).
EXTRA = 4
KEPT_MEMBERS = frozenset({ACTOR, OBSERVER, BYSTANDER})


def spare(user: Json) -> Json:
    """A drawn userId, never one of KEPT_MEMBERS (as an integer or as text)."""
    if isinstance(user, int | str) and not isinstance(user, bool) and str(user).strip() in {
        str(kept) for kept in KEPT_MEMBERS
    }:
        return EXTRA
    return user
MAX_TEXT = 4000  # MAX_MESSAGE_LENGTH's default, which these servers keep
# Below MAX_PAYLOAD_BYTES (65536): a bigger packet closes the socket, by design.
MAX_WIRE_BYTES = 60_000
EXAMPLES = {"sqlite": 1000, "mariadb": 500}
UNKNOWN = "unknown event"

PROTOCOL_CODES = frozenset(code.value for code in ErrorCode)
_CONVERSATION_CODES = frozenset({"INVALID_PAYLOAD", "FORBIDDEN"})
_MESSAGE_CODES = _CONVERSATION_CODES | {"NOT_FOUND"}
# A message's state may refuse it too: deleted, past its edit window, pins full.
_CHANGE_CODES = _MESSAGE_CODES | {"CONFLICT"}
# What each event may answer here (rate limits off, database up, the actor's token
# fresh and the clock still). Anything else, INTERNAL above all, is a bug.
EXPECTED_CODES: dict[str, frozenset[str]] = {
    "authenticate": frozenset({"AUTH_FAILED", "INVALID_PAYLOAD"}),
    "conversation:join": _CONVERSATION_CODES,
    "conversation:leave": _CONVERSATION_CODES,
    "conversation:update": _CONVERSATION_CODES,
    "message:send": _CHANGE_CODES,  # (a replyTo of another conversation, or deleted)
    "typing:start": _CONVERSATION_CODES,
    "typing:stop": _CONVERSATION_CODES,
    "message:read": _MESSAGE_CODES,
    "message:react": _CHANGE_CODES,
    "message:edit": _CHANGE_CODES,
    "message:delete": _CHANGE_CODES,
    "message:versions": _MESSAGE_CODES,
    "message:pin": _CHANGE_CODES,
    "message:unpin": _CHANGE_CODES,
    "member:add": _CHANGE_CODES,
    "member:remove": _CHANGE_CODES,
    "member:role": _CHANGE_CODES,
    "presence:request": _CONVERSATION_CODES,
    UNKNOWN: frozenset({"INVALID_PAYLOAD"}),
}
assert set(EXPECTED_CODES) == {*CLIENT_EVENTS, UNKNOWN}

# Names python-socketio routes to the connect/disconnect handlers or to the
# catch-all itself, and the ones Node's socket.io-parser refuses outright.
RESERVED_NAMES = frozenset({
    "connect", "connect_error", "disconnect", "disconnecting", "newListener",
    "removeListener", "*",
})

# -- hostile text -----------------------------------------------------------------

SQL = (
    "'; DROP TABLE chat_messages; --",
    '"; DROP TABLE chat_messages; --',
    "1; DELETE FROM chat_members",
    "' OR '1'='1",
    "1 OR 1=1",
    "'); DROP TABLE chat_users; --",
    "%' UNION SELECT id, name FROM chat_users --",
    "\\'; DROP TABLE chat_reactions; --",
)
HTML = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "javascript:alert(1)",
    "&lt;b&gt;&amp;",
    "{{constructor.constructor('alert(1)')()}}",
)
CONTROL = (
    "\x00", "a\x00b", "\x00" * 8, "\u202e", "\u202egnp.exe", "\u200b", "\ufeff",
    "\r\n", "\t", "\x1b[31mred", "\u2028\u2029", "\x7f",
)
UNICODE = (
    "é", "e\u0301", "👍", "👩‍👩‍👧‍👦", "🏳️‍🌈", "\U0010ffff", "中文", "עברית", "\ufffd",
    "ﷺ", "\uff11\uff12\uff13",  # fullwidth digits
)
SURROGATES = ("\ud800", "\udfff", "a\udc00b", "\ud83d")  # lone: not valid Unicode
OTHER = (" ", "a", "'", '"', "\\", "%s", "%n", "${x}", "null", "undefined", "NaN", "-0")
SAMPLES = SQL + HTML + CONTROL + UNICODE + SURROGATES + OTHER

BIG_INTS = (2**70, -(2**70), 2**64, 2**63, MAX_ID, -(2**63), -(2**63) - 1, 0, -1, 1)
FIELD_NAMES = (
    "token", "conversationId", "messageId", "text", "emoji", "since", "userId",
    "senderName", "__proto__", "constructor", "toString", "",
)

fragment_text = st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=6).map("".join)
short_text = st.one_of(st.sampled_from(SAMPLES), fragment_text, st.text(max_size=30))
# Around MAX_MESSAGE_LENGTH, of characters that take 1 to 12 bytes on the wire.
long_text = st.builds(
    lambda length, char: char * length,
    st.sampled_from([MAX_TEXT - 1, MAX_TEXT, MAX_TEXT + 1, MAX_TEXT + 100]),
    st.sampled_from(["x", "é", "👍", "\u202e", "\x00", "<", "'", " "]),
)
hostile_text = st.one_of(short_text, long_text)



def json_values() -> st.SearchStrategy[Json]:
    """Anything JSON can say, nested. (No bytes: a packet with binary attachments
    closes the connection, tests/transport/test_binary_attachments.py.)"""
    leaf = st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from(BIG_INTS),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),  # NaN and inf are not JSON
        short_text,
    )
    key = st.one_of(st.sampled_from(FIELD_NAMES), short_text)
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(key, inner, max_size=4)
        ),
        max_leaves=10,
    )


json_value = plain_json_value = json_values()
# Fields a payload should not have; a userId or senderName never changes the sender.
extra_fields = {
    "userId": st.one_of(st.sampled_from([OBSERVER, str(OBSERVER)]), json_value),
    "senderName": json_value,
    "__proto__": json_value,
}

unknown_names = st.one_of(
    st.sampled_from([
        "bogus:event", "message:new", "message:ack", "user:online", "error", "message",
        "MESSAGE:SEND", "message:send ", " authenticate", "conversation:join\x00",
        "__proto__", "constructor", "hasOwnProperty", "", "\ud800", "x" * 500,
    ]),
    st.text(max_size=40),
).filter(lambda name: name not in CLIENT_EVENTS and name not in RESERVED_NAMES)


@dataclasses.dataclass(frozen=True)
class Call:
    """One client event: its name, its arguments (maybe none, maybe several), ack or not."""

    event: str
    args: tuple[Json, ...]
    ack: bool

    @property
    def kind(self) -> str:
        return self.event if self.event in CLIENT_EVENTS else UNKNOWN


def _encodable(value: object) -> bool:
    try:
        str(value).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def wire_bytes(args: tuple[Json, ...]) -> int:
    """About what python-socketio's client puts on the wire (ASCII-escaped JSON)."""
    return len(json.dumps(list(args), separators=(",", ":"), default=lambda b: "x" * len(b)))


# -- the world the examples play in -----------------------------------------------


@dataclasses.dataclass(frozen=True)
class World:
    home: int  # actor (its owner), observer and bystander are members
    second: int  # actor and observer are members (a pair: either pins)
    foreign: int  # the observer's: the actor is no member
    message_home: int  # the observer's
    message_second: int
    message_foreign: int
    actor_home: int  # the actor's own, which it may edit
    actor_second: int
    tokens: tuple[str, ...]

    @property
    def seeds(self) -> dict[int, tuple[int, str]]:
        """The messages stored before the examples: id -> (conversation, text)."""
        return {self.message_home: (self.home, "seed"),
                self.message_second: (self.second, "seed"),
                self.actor_home: (self.home, "seed"), self.actor_second: (self.second, "seed")}


# In a payload: the actor's newest message in that conversation not deleted yet
# (perform() puts its id in), so that edits and deletions reach the database with
# hostile text however many messages went before.
RECENT = "\x00the actor's newest message\x00"


def unsigned_token(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def tokens_for(server: RunningServer) -> tuple[str, ...]:
    name = f"user{ACTOR}"  # as the actor connected: a fresh token keeps the sender's name
    own = server.token(ACTOR, name)
    now = int(server.clock.now())
    claims = {"sub": str(ACTOR), "userId": ACTOR, "name": name, "exp": now + 3600}
    return (
        own,  # a fresh token for the same user extends the session: ok
        server.token(OBSERVER, "observer"),  # another user: AUTH_FAILED
        server.token(ACTOR, name, ttl_s=-3600),  # expired
        jwt.encode(claims, "not-the-secret-but-long-enough-for-hs256!!", algorithm="HS256"),
        unsigned_token(claims),
        own[:-4] + "AAAA",  # signature changed
        own + "x",
        "Bearer " + own,
        "a.b.c",
        own * 4,  # over 8 KiB
    )


def calls(world: World) -> st.SearchStrategy[Call]:
    """Every event with the right shape and hostile values, or with anything at all."""
    conversation = st.one_of(
        st.sampled_from([
            world.home, world.home, world.second, str(world.home), world.foreign, 999_999,
            MAX_ID, MAX_ID + 1, 0, -world.home, float(world.home), True, " 1", "\uff11", "0x1",
        ]),
        json_value,
    )
    server_message = st.one_of(
        st.sampled_from([
            world.message_home, world.message_home, str(world.message_home),
            world.message_second, world.message_foreign, 10**12, 0, -1,
            float(world.message_home), MAX_ID + 1,
        ]),
        json_value,
    )
    client_message = st.one_of(
        st.uuids().map(str),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from(["x" * 64, "x" * 65, "", 1.5, 5.0, 1e20, -0.0]),
        short_text,
        json_value,
    )
    since = st.one_of(st.sampled_from([0, world.message_home, 10**12, -1, MAX_ID + 1, "0"]),
                      json_value)
    one_emoji = st.sampled_from(["👍", "❤️", "👩‍👩‍👧‍👦", "🏳️‍🌈"])
    emoji = st.one_of(
        st.sampled_from(["👍", "❤️", "👩‍👩‍👧‍👦", "🏳️‍🌈", "x" * 32, "x" * 33, " ", "", "\ud83d",
                         "\x00", "<b>"]),
        short_text,
        json_value,
    )
    token = st.one_of(st.sampled_from(world.tokens), short_text, json_value)

    def shaped(
        required: dict[str, st.SearchStrategy[Json]],
        optional: dict[str, st.SearchStrategy[Json]] | None = None,
    ) -> st.SearchStrategy[dict[str, Json]]:
        extras = {k: v for k, v in extra_fields.items() if k not in required}
        return st.fixed_dictionaries(required, optional={**(optional or {}), **extras})

    # Anything in every field.
    loose: dict[str, st.SearchStrategy[Json]] = {
        "authenticate": shaped({"token": token}),
        "conversation:join": shaped({"conversationId": conversation}, {"since": since}),
        "conversation:leave": shaped({"conversationId": conversation}),
        "conversation:update": shaped({"conversationId": conversation, "title": hostile_text}),
        "message:send": shaped({"conversationId": conversation, "text": hostile_text,
                                "messageId": client_message}),
        "typing:start": shaped({"conversationId": conversation}),
        "typing:stop": shaped({"conversationId": conversation}),
        "message:read": shaped({"conversationId": conversation, "messageId": server_message}),
        "message:react": shaped({"conversationId": conversation, "messageId": server_message,
                                 "emoji": emoji}),
        "message:edit": shaped({"conversationId": conversation, "id": server_message,
                                "text": hostile_text}),
        "message:delete": shaped({"conversationId": conversation, "id": server_message}),
        "message:versions": shaped({"conversationId": conversation, "id": server_message}),
        "message:pin": shaped({"conversationId": conversation, "id": server_message}),
        "message:unpin": shaped({"conversationId": conversation, "id": server_message}),
        "presence:request": shaped({}, {"conversationId": conversation}),
        "member:add": shaped({"conversationId": conversation, "userId": json_value.map(spare)}),
        "member:remove": shaped({"conversationId": conversation,
                                 "userId": json_value.map(spare)}),
        "member:role": shaped({"conversationId": conversation, "userId": json_value.map(spare),
                               "role": st.one_of(st.sampled_from(["admin", "member", "owner"]),
                                                 json_value)}),
    }
    loose["conversation:join"] = shaped({"conversationId": conversation},
                                        {"since": since, "cursor": json_value})
    loose["message:send"] = shaped(
        {"conversationId": conversation, "text": hostile_text, "messageId": client_message},
        {"replyTo": server_message, "mentions": json_value, "mentionsEveryone": json_value},
    )
    # Ids that exist (the actor's conversations, or not), hostile text: so the
    # examples get past validation to access checks, lookups and the database.
    known_conversation = st.sampled_from([
        world.home, world.home, world.second, str(world.home), world.foreign, 999_999, MAX_ID,
    ])
    # (conversation, message): found, found, not in that conversation, not a member, none.
    pairs = st.sampled_from([
        (world.home, world.message_home), (world.second, str(world.message_second)),
        (world.home, world.message_second), (world.foreign, world.message_foreign),
        (world.home, 10**12),
    ])
    at = {"conversationId": known_conversation}

    def on_message(fields: dict[str, Json], pair: tuple[int, int | str]) -> dict[str, Json]:
        return {**fields, "conversationId": pair[0], "messageId": pair[1]}

    # The actor's own messages (RECENT: its newest in that conversation), or any
    # above (the actor owns home, so the observer's seed there is soon deleted).
    mine = st.sampled_from([
        (world.home, RECENT), (world.second, RECENT), (world.home, world.actor_home),
        (world.second, world.actor_second),
    ])
    targets = st.one_of(mine, mine, pairs)

    def on_target(fields: dict[str, Json], pair: tuple[int, int | str]) -> dict[str, Json]:
        return {**fields, "conversationId": pair[0], "id": pair[1]}

    members = st.sampled_from([ACTOR, OBSERVER, BYSTANDER, str(OBSERVER), 999])
    tight: dict[str, st.SearchStrategy[Json]] = {
        "authenticate": shaped({"token": st.sampled_from(world.tokens)}),
        "conversation:join": shaped(at, {"since": st.sampled_from([0, world.message_home]),
                                         "cursor": st.sampled_from(["0", "1", 0])}),
        "conversation:leave": shaped(at),
        "conversation:update": shaped({**at, "title": hostile_text}),
        "message:send": shaped({
            "conversationId": st.sampled_from([world.home, world.second, world.foreign]),
            "text": hostile_text,
            "messageId": st.one_of(st.uuids().map(str), client_message),
        }, {
            "replyTo": st.sampled_from([RECENT, world.message_home, world.message_second,
                                        world.message_foreign, 10**12]),
            "mentions": st.lists(members, max_size=4),
            "mentionsEveryone": st.booleans(),
        }),
        "typing:start": shaped(at),
        "typing:stop": shaped(at),
        "message:read": st.builds(on_message, shaped({}), targets),
        "message:react": st.builds(on_message, shaped({"emoji": st.one_of(one_emoji, emoji)}),
                                   targets),
        "message:edit": st.builds(on_target, shaped({"text": hostile_text}), targets),
        "message:delete": st.builds(on_target, shaped({}), targets),
        "message:versions": st.builds(on_target, shaped({}), targets),
        "message:pin": st.builds(on_target, shaped({}), targets),
        "message:unpin": st.builds(on_target, shaped({}), targets),
        "presence:request": shaped({}, at),
        "member:add": shaped({**at, "userId": st.sampled_from([EXTRA, 7, 8, "9", BYSTANDER])}),
        "member:remove": shaped({**at, "userId": st.sampled_from([EXTRA, 7, 999, "8"])}),
        "member:role": shaped({**at, "userId": st.sampled_from([EXTRA, 7, 999]),
                               "role": st.sampled_from(["admin", "member", "owner", "root"])}),
    }

    def arguments(event: str) -> st.SearchStrategy[tuple[Json, ...]]:
        payload = st.one_of(tight[event], tight[event], loose[event])
        return st.one_of(
            payload.map(lambda value: (value,)),
            payload.map(lambda value: (value,)),
            json_value.map(lambda value: (value,)),
            st.just(()),
            st.just((None,)),
            st.tuples(st.one_of(payload, json_value), json_value),
        )

    # Hostile text on the right ids, so it reaches the database often.
    storable = st.fixed_dictionaries({
        "conversationId": st.sampled_from([world.home, world.second]),
        "text": hostile_text,
        "messageId": st.uuids().map(str),
    })
    acked = st.sampled_from([True, True, True, False])
    known = st.sampled_from(CLIENT_EVENTS).flatmap(
        lambda event: st.builds(Call, st.just(event), arguments(event), acked)
    )
    anything = st.one_of(st.just(()), json_value.map(lambda value: (value,)),
                         st.tuples(json_value, json_value))
    unknown = st.builds(Call, unknown_names, anything, acked)
    send = st.builds(Call, st.just("message:send"), storable.map(lambda d: (d,)), st.just(True))
    # Every event well shaped (its one payload, the right ids), so that each reaches
    # its success path in every run, not only when the draws happen to; and the
    # changes of a message once more, so that edits with hostile text reach the
    # database about as often as sends do (every message's text is checked at the end).
    def well_shaped(events: tuple[str, ...]) -> st.SearchStrategy[Call]:
        return st.sampled_from(events).flatmap(lambda event: st.builds(
            Call, st.just(event), tight[event].map(lambda value: (value,)), acked))

    return st.one_of(known, well_shaped(CLIENT_EVENTS), unknown, send,
                     well_shaped(MESSAGE_CHANGES)).filter(
        lambda call: wire_bytes(call.args) < MAX_WIRE_BYTES
    )


# -- checking one call ---------------------------------------------------------------


@dataclasses.dataclass
class Ledger:
    """Every message acknowledged `sent` in this run (server id -> (conversation,
    text as sent), what the room heard), and what every message the actor can reach
    holds now: its text as sent or as its last edit set it, "" once deleted."""

    world: World
    # Reads a message as stored (conversation, id), for changes made without an ack.
    lookup: Callable[[int, int], Awaitable[StoredMessage | None]]
    sent: dict[int, tuple[int, str]] = dataclasses.field(default_factory=dict)
    texts: dict[int, tuple[int, str]] = dataclasses.field(default_factory=dict)
    deleted: set[int] = dataclasses.field(default_factory=set)
    calls: int = 0
    accepted: int = 0
    outcomes: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.texts.update(self.world.seeds)

    def stored(self, message_id: int, conversation: int, text: str) -> None:
        """A message acknowledged `sent` now."""
        self.sent[message_id] = self.texts[message_id] = (conversation, text)
        self.accepted += 1

    def recent(self, conversation: int) -> int:
        """The actor's newest message in the conversation not deleted (its seed at worst)."""
        mine = [i for i, (c, _) in self.sent.items() if c == conversation and i not in self.deleted]
        if mine:
            return max(mine)
        return self.world.actor_second if conversation == self.world.second else (
            self.world.actor_home)

    def edited(self, call: Call, reply: dict[str, Any]) -> None:
        """An edit acknowledged: its text is the one sent, byte for byte."""
        message_id = reply["id"]
        assert message_id in self.texts and message_id not in self.deleted, f"{call}: {reply!r}"
        text = as_read(call.args[0]["text"])
        assert valid_text(text), f"{call}: text the protocol refuses was accepted"
        assert reply["text"] == text, f"{call}: stored {reply['text']!r}"
        self.texts[message_id] = (self.texts[message_id][0], text)

    def erased(self, call: Call, message_id: int) -> None:
        assert message_id in self.texts and message_id not in self.deleted, f"{call}"
        self.texts[message_id] = (self.texts[message_id][0], "")
        self.deleted.add(message_id)

    async def reconcile(self, call: Call) -> None:
        """After a change sent without an ack: the message it names holds what it
        held, or what that change would set (and nothing else)."""
        data = call.args[0] if call.args and isinstance(call.args[0], dict) else {}
        target = as_id(data.get("id" if "id" in data else "messageId"))
        if target not in self.texts:
            return
        conversation, before = self.texts[target]
        message = await self.lookup(conversation, target)
        assert message is not None, f"{call}: message {target} is gone"
        if message.deleted:
            assert target in self.deleted or call.event == "message:delete", f"{call}"
            if target not in self.deleted:
                self.erased(call, target)
            return
        assert target not in self.deleted, f"{call}: a deleted message came back"
        if message.text != before:
            assert call.event == "message:edit", f"{call}: changed {target}"
            assert message.text == as_read(data.get("text")), f"{call}: {message.text!r}"
            self.texts[target] = (conversation, message.text)


def as_read(text: Any) -> Any:
    """Text as the server read it: on the wire (JSON, like JavaScript's UTF-16
    strings) two adjacent surrogates are one character, so "\\ud83d\\udfff"
    arrives as U+1F7FF."""
    return json.loads(json.dumps(text))


def valid_text(text: Any) -> bool:
    return (isinstance(text, str) and bool(text.strip()) and len(text) <= MAX_TEXT
            and _encodable(text))


def as_id(value: Any) -> int | None:
    """A server message id as validation reads one (an int, or a string of digits)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_error(call: Call, error: Any) -> str:
    assert isinstance(error, dict), f"{call}: error is not an object: {error!r}"
    code, message = error.get("code"), error.get("message")
    assert isinstance(code, str) and isinstance(message, str), f"{call}: {error!r}"
    assert code in PROTOCOL_CODES, f"{call}: {code!r} is no PROTOCOL.md code"
    assert code != ErrorCode.INTERNAL.value, f"{call}: a handler raised: {message}"
    assert code in EXPECTED_CODES[call.kind], f"{call}: unexpected {code}: {message}"
    return code


def check_success(call: Call, reply: dict[str, Any], world: World, ledger: Ledger) -> None:
    assert call.kind != UNKNOWN, f"{call}: an unknown event succeeded: {reply!r}"
    data = call.args[0] if call.args else None
    if call.event == "authenticate":
        assert reply["userId"] == ACTOR, f"{call}: the socket changed hands: {reply!r}"
    elif call.event == "conversation:join":
        assert reply["conversationId"] in (world.home, world.second), f"{call}: {reply!r}"
        assert ACTOR in reply["onlineUserIds"], f"{call}: {reply!r}"
    elif call.event == "message:send":
        check_sent(call, data, reply, world, ledger)
    elif call.event == "message:read":
        assert isinstance(reply["advanced"], bool), f"{call}: {reply!r}"
    elif call.event == "message:react":
        assert reply["action"] in ("added", "removed"), f"{call}: {reply!r}"
    elif call.event == "message:edit":
        ledger.edited(call, reply)
    elif call.event == "message:delete":
        assert reply["deletedBy"] == ACTOR, f"{call}: {reply!r}"
        ledger.erased(call, reply["id"])
    elif call.event == "message:versions":
        assert reply["text"] == ledger.texts[reply["id"]][1], f"{call}: {reply!r}"
        assert reply["version"] == len(reply["versions"]) + 1 or reply["id"] in ledger.deleted
    elif call.event in ("message:pin", "message:unpin"):
        assert reply["pinned"] is (call.event == "message:pin"), f"{call}: {reply!r}"
        assert reply["id"] not in ledger.deleted or not reply["changed"], f"{call}: {reply!r}"
    elif call.event == "presence:request":
        assert reply["count"] == len(reply["users"]) >= 1, f"{call}: {reply!r}"


def check_sent(call: Call, data: Any, reply: dict[str, Any], world: World,
               ledger: Ledger) -> None:
    text = as_read(data["text"])
    assert valid_text(text), f"{call}: text the protocol refuses was accepted"
    assert reply["status"] == "sent" and isinstance(reply["id"], int), f"{call}: {reply!r}"
    assert reply["conversationId"] in (world.home, world.second), f"{call}: {reply!r}"
    assert reply["messageId"] == data["messageId"], f"{call}: id not echoed: {reply!r}"
    if reply.get("duplicate"):
        assert reply["id"] in ledger.sent, f"{call}: duplicate of nothing sent: {reply!r}"
    else:
        assert reply["id"] not in ledger.sent, f"{call}: a new message reused an id"
        ledger.stored(reply["id"], reply["conversationId"], text)


CHANGES = frozenset({"message:edit", "message:delete", "message:pin", "message:unpin"})
# The events on one message the `change` branch draws (edits twice as often).
MESSAGE_CHANGES = ("message:edit", "message:edit", "message:delete", "message:versions",
                   "message:pin", "message:unpin", "message:react")


def resolved(call: Call, ledger: Ledger) -> Call:
    """The call with RECENT replaced by the id it stands for now."""
    if not call.args or not isinstance(call.args[0], dict) or RECENT not in (
        call.args[0].values()
    ):
        return call
    data = call.args[0]
    conversation = data.get("conversationId")
    place = conversation if conversation in (ledger.world.home, ledger.world.second) else (
        ledger.world.home)
    data = {key: ledger.recent(place) if value == RECENT else value
            for key, value in data.items()}
    return dataclasses.replace(call, args=(data, *call.args[1:]))


async def perform(call: Call, actor: ChatClient, world: World, ledger: Ledger) -> None:
    call = resolved(call, ledger)
    ledger.calls += 1
    errors_before = len(actor.received("error"))
    acks_before = len(actor.received("message:ack"))
    if not call.ack:
        await actor.sio.emit(call.event, call.args)
        # One socket's events are handled in order: once this is answered, so was that.
        ping = await actor.call("presence:request")
        assert ping["ok"], f"{call}: the socket stopped working: {ping!r}"
        for error in actor.received("error")[errors_before:]:
            assert call.kind != UNKNOWN, f"{call}: an unknown event got an error event"
            assert error["event"] == call.event, f"{call}: {error!r}"
            check_error(call, error)
        for ack in actor.received("message:ack")[acks_before:]:  # stored all the same
            assert call.event == "message:send", f"{call}: {ack!r}"
            if ack["status"] == "sent":
                check_sent(call, call.args[0], ack, world, ledger)
            else:
                check_error(call, ack["error"])
        if call.event in CHANGES:
            await ledger.reconcile(call)
        return
    try:
        reply = await actor.sio.call(call.event, call.args, timeout=WAIT_S)
    except TimeoutError:
        raise AssertionError(
            f"{call}: no ack within {WAIT_S} s (a handler raised or hung)"
        ) from None
    assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), f"{call}: {reply!r}"
    new_errors = actor.received("error")[errors_before:]
    new_acks = actor.received("message:ack")[acks_before:]
    outcome = "ok" if reply["ok"] else str(reply.get("error", {}).get("code"))
    ledger.outcomes[call.kind, outcome] += 1
    if reply["ok"]:
        check_success(call, reply, world, ledger)
        assert new_errors == [], f"{call}: succeeded but also sent {new_errors!r}"
        if call.event == "message:send":
            assert [ack["status"] for ack in new_acks] == ["sent"], f"{call}: {new_acks!r}"
        return
    assert set(reply) == {"ok", "error"}, f"{call}: {reply!r}"
    code = check_error(call, reply["error"])
    if call.kind == UNKNOWN:
        assert new_errors == [], f"{call}: an unknown event got an error event"
        return
    assert new_errors == [{**reply["error"], "event": call.event}], f"{call}: {new_errors!r}"
    if call.event == "message:send":
        assert [(ack["status"], ack["error"]["code"]) for ack in new_acks] == [("failed", code)]


# -- the property ---------------------------------------------------------------------


async def seed_world(server: RunningServer) -> World:
    now_ms = int(server.clock.now() * 1000)
    home = await server.chat.storage.conversations.create_conversation(
        "home", [ACTOR, OBSERVER, BYSTANDER, EXTRA], now_ms, ChangedBy(ACTOR))  # the actor owns it
    second = await server.conversation(ACTOR, OBSERVER, title="second")
    foreign = await server.conversation(OBSERVER, title="foreign")
    store = server.chat.storage.messages.store_message
    here = await store(home, OBSERVER, "observer", "seed-home", "seed", now_ms)
    there = await store(second, OBSERVER, "observer", "seed-second", "seed", now_ms)
    away = await store(foreign, OBSERVER, "observer", "seed-foreign", "seed", now_ms)
    name = f"user{ACTOR}"
    mine_here = await store(home, ACTOR, name, "seed-actor-home", "seed", now_ms)
    mine_there = await store(second, ACTOR, name, "seed-actor-second", "seed", now_ms)
    return World(home, second, foreign, here.message.id, there.message.id, away.message.id,
                 mine_here.message.id, mine_there.message.id, tokens_for(server))


async def joined(server: RunningServer, user: int, *conversations: int) -> ChatClient:
    client = await server.client(user, f"user{user}")
    for conversation in conversations:
        assert (await client.call("conversation:join", {"conversationId": conversation}))["ok"]
    return client


def certain_refusals(world: World) -> list[Call]:
    """One call for each refusal the checks below expect to have seen. The examples
    draw these too, but rarely (a react must now carry a valid emoji to reach the
    message lookup), and how often must not decide the test."""
    return [
        Call("message:read", ({"conversationId": world.home, "messageId": 10**12},), True),
        Call("conversation:join", ({"conversationId": world.foreign},), True),
        Call("message:send", ({"conversationId": "not an id"},), True),
        Call("authenticate", ({"token": "not-a-token"},), True),
    ]


def certain_successes(world: World) -> list[Call]:
    """One call for each event's success, hostile text where it takes one, for the
    same reason: which events the examples draw well shaped, and how often, is
    the draws' (derandomized, so one change of a strategy moves them all)."""
    home, second = world.home, world.second
    return [Call(event, (payload,), True) for event, payload in [
        ("authenticate", {"token": world.tokens[0]}),
        ("conversation:leave", {"conversationId": second}),
        ("conversation:join", {"conversationId": second, "since": 0}),
        ("conversation:update", {"conversationId": home, "title": SQL[0]}),
        ("message:send", {"conversationId": home, "text": HTML[0], "messageId": "certain"}),
        ("typing:start", {"conversationId": home}),
        ("typing:stop", {"conversationId": home}),
        ("message:read", {"conversationId": home, "messageId": RECENT}),
        ("message:react", {"conversationId": home, "messageId": RECENT, "emoji": "👍"}),
        ("message:edit", {"conversationId": home, "id": RECENT, "text": SQL[1] + CONTROL[1]}),
        ("message:versions", {"conversationId": home, "id": RECENT}),
        ("message:pin", {"conversationId": second, "id": world.actor_second}),
        ("message:unpin", {"conversationId": second, "id": world.actor_second}),
        ("message:delete", {"conversationId": home, "id": RECENT}),
        ("presence:request", {}),
        ("member:add", {"conversationId": home, "userId": 5}),
        ("member:role", {"conversationId": home, "userId": 5, "role": "admin"}),
        ("member:remove", {"conversationId": home, "userId": 5}),
    ]]


# Longer than pytest's timeout for one test (300 s): the observer is never cut off
# before the test itself would be.
OBSERVER_SILENT_MS = 330_000


def run_examples(
    loop: asyncio.AbstractEventLoop, world: World, actor: ChatClient, observer: ChatClient,
    ledger: Ledger, examples: int,
) -> None:
    """The hypothesis part, in a worker thread; each example runs on the test's loop."""

    @settings(HYPOTHESIS, max_examples=examples)
    @given(st.lists(calls(world), min_size=1, max_size=3))
    def property_holds(batch: list[Call]) -> None:
        async def example() -> None:
            for call in batch:
                await perform(call, actor, world, ledger)
                assert actor.sio.connected and observer.sio.connected, f"{call}: disconnected"

        on_loop(loop, example())

    property_holds()


async def test_hostile_payloads_get_protocol_replies_and_text_is_stored_verbatim(
    make_server: ServerFactory, backend_name: str
) -> None:
    # The observer only listens, and python-socketio's client gives up on a
    # connection it has written nothing to for max(pingInterval, pingTimeout) + 5 s
    # of real time ("packet queue is empty, aborting"), while this server's
    # heartbeats run on its manual clock and so never make it answer a PING: with
    # the defaults (25 s, 20 s) a run longer than 30 s, as on four loaded workers,
    # lost the observer. The ping timeout the handshake announces lets it listen
    # for as long as the examples take (bounded by the test's own timeout).
    async with make_server(RATE_LIMIT_EVENTS="0", RATE_LIMIT_MESSAGES="0",
                           PING_TIMEOUT_MS=str(OBSERVER_SILENT_MS)) as server:
        world = await seed_world(server)
        observer = await joined(server, OBSERVER, world.home, world.second)
        actor = await joined(server, ACTOR, world.home, world.second)
        actor_sid = actor.sio.get_sid()
        ledger = Ledger(world, server.chat.storage.changes.message)
        for call in [*certain_refusals(world), *certain_successes(world)]:  # (each once
            await perform(call, actor, world, ledger)  # for sure, whatever is drawn)

        await asyncio.to_thread(
            run_examples, asyncio.get_running_loop(), world, actor, observer, ledger,
            EXAMPLES[backend_name],
        )

        # The run did reach the database with hostile text, not only refusals.
        assert ledger.calls >= EXAMPLES[backend_name]
        assert {kind for kind, _ in ledger.outcomes} == set(EXPECTED_CODES)
        assert {kind for kind, outcome in ledger.outcomes if outcome == "ok"} == set(
            CLIENT_EVENTS
        ), ledger.outcomes
        refusals = {outcome for _, outcome in ledger.outcomes}
        assert {"AUTH_FAILED", "INVALID_PAYLOAD", "FORBIDDEN", "NOT_FOUND"} <= refusals
        assert ledger.accepted >= 40, f"only {ledger.accepted} messages were accepted"
        session = server.chat.sessions.get(actor_sid)
        assert session is not None and session.authenticated
        assert session.identity is not None and session.identity.user_id == ACTOR

        # Stored exactly as sent, or as last edited ("" once deleted), in the
        # conversation acknowledged, nothing else stored.
        assert ledger.deleted and any(
            text != ledger.sent[i][1] for i, (_, text) in ledger.texts.items()
            if i in ledger.sent and i not in ledger.deleted), "no edit or deletion was checked"
        for conversation in (world.home, world.second):
            stored = await server.chat.storage.messages.messages_after(conversation, 0, 100_000)
            by_id = {message.id: message for message in stored}
            expected = {i: text for i, (c, text) in ledger.texts.items() if c == conversation}
            assert set(by_id) == set(expected)
            for message_id, text in expected.items():
                message = by_id[message_id]
                assert message.text.encode("utf-8") == text.encode("utf-8"), message_id
                assert message.deleted == (message_id in ledger.deleted), message_id
                if message_id in ledger.sent:
                    assert message.user_id == ACTOR and message.sender_name == f"user{ACTOR}"

        # The SQL in those texts never ran: every table is there, with every row.
        prefix = server.settings.db_table_prefix
        engine = server.chat.storage.engine  # type: ignore[attr-defined]
        for table in ("users", "conversations", "members", "reactions"):
            assert await engine.fetch_one(f"SELECT COUNT(*) FROM {prefix}{table}") is not None
        row = await engine.fetch_one(f"SELECT COUNT(*) FROM {prefix}messages")
        assert row is not None and row[0] == 1 + len(ledger.texts)  # (and the foreign seed)
        for table in ("message_versions", "pins"):
            assert await engine.fetch_one(f"SELECT COUNT(*) FROM {prefix}{table}") is not None

        # The observer received every accepted message, text intact.
        news = await observer.wait_for(
            "message:new", lambda m: m["id"] in ledger.sent, count=len(ledger.sent)
        )
        assert {m["id"]: m["text"] for m in news} == {
            i: text for i, (_, text) in ledger.sent.items()
        }

        # And everyone carries on: the actor, and a member who arrives now.
        bystander = await joined(server, BYSTANDER, world.home)
        for sender, client_id in ((actor, "after-actor"), (bystander, "after-bystander")):
            ack = await sender.call("message:send", {
                "conversationId": world.home, "text": client_id, "messageId": client_id})
            assert ack["ok"], ack
        after = await observer.wait_for(
            "message:new", lambda m: str(m["messageId"]).startswith("after-"), count=2
        )
        assert [m["text"] for m in after] == ["after-actor", "after-bystander"]

        errors = server.chat.metrics.as_json().get("ecigdis_ws_errors_total", {})
        assert errors.get("code=INTERNAL", 0) == 0


def encodes_unambiguously(auth: Json) -> bool:
    """A number that is not negative cannot be CONNECT data: the packet `40` + `12`
    reads as ack id 12 (Node's socket.io-parser reads it so too), and the server
    closes such a connection as malformed (test_malformed_packets.py). socket.io-client
    only sends an object."""
    return isinstance(auth, bool) or not isinstance(auth, int | float) or auth < 0


async def attempt_handshake(server: RunningServer, auth: Json, tokens: tuple[str, ...]) -> str:
    """Connect with `auth` as the CONNECT packet's data; return what happened."""
    client = ChatClient(server.url)
    token = auth.get("token") if isinstance(auth, dict) else None
    user = ACTOR if token == tokens[0] else OBSERVER if token == tokens[1] else None
    try:
        await client.sio.connect(server.url, auth=auth, transports=["websocket"],
                                 wait_timeout=WAIT_S)
    except socketio.exceptions.ConnectionError:
        refusal = client.connect_error
        assert isinstance(refusal, dict), f"{auth!r}: refused without a reason: {refusal!r}"
        assert refusal["data"]["code"] == ErrorCode.AUTH_FAILED.value, f"{auth!r}: {refusal!r}"
        assert token is not None and user is None, f"{auth!r}: a good token refused"
        return "refused"
    try:
        await client.wait_for("connected")
        if token is None:  # no token at all: connected, not authenticated
            reply = await client.call("presence:request")
            assert reply["error"]["code"] == ErrorCode.UNAUTHENTICATED.value, f"{auth!r}"
            return "anonymous"
        [who] = await client.wait_for("authenticated")
        assert user is not None and who["userId"] == user, f"{auth!r}: authenticated {who!r}"
        return "authenticated"
    finally:
        sid = client.sio.get_sid()
        await client.close()
        await server.wait_until(lambda: server.chat.sessions.get(sid) is None)


@pytest.mark.backends("sqlite")
async def test_hostile_handshake_auth_connects_or_is_refused_with_auth_failed(
    make_server: ServerFactory,
) -> None:
    """`io(url, { auth })` with anything as `auth`: a valid token authenticates, any
    other token is refused with AUTH_FAILED, no token connects unauthenticated."""
    async with make_server(RATE_LIMIT_EVENTS="0", MAX_UNAUTHENTICATED_PER_IP="0") as server:
        tokens = tokens_for(server)
        token = st.one_of(st.sampled_from(tokens), short_text, plain_json_value)
        shaped = st.fixed_dictionaries(
            {"token": token}, optional={"userId": plain_json_value, "name": plain_json_value}
        )
        auth = st.one_of(shaped, shaped, plain_json_value.filter(encodes_unambiguously))
        outcomes: Counter[str] = Counter()
        loop = asyncio.get_running_loop()

        @settings(HYPOTHESIS, max_examples=300)
        @given(auth)
        def property_holds(data: Json) -> None:
            async def example() -> None:
                outcomes[await attempt_handshake(server, data, tokens)] += 1

            on_loop(loop, example())

        await asyncio.to_thread(property_holds)
        assert set(outcomes) == {"refused", "anonymous", "authenticated"}, outcomes
        await server.advance(60)  # presence grace over
        assert server.chat.sessions.count == 0 and server.chat.presence.user_count == 0


# -- names and packets a client library would not send ----------------------------------

async def closed_by_the_server(server: RunningServer, client: ChatClient, sid: str) -> None:
    """The server closed the client's connection and has forgotten its session."""
    await client.wait_disconnected()
    await server.wait_until(lambda: server.chat.sessions.get(sid) is None)


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize("payload", [{}, [1]], ids=["object", "list"])  # [1]: not an environ
@pytest.mark.parametrize("name", ["connect", "disconnect"])
async def test_a_reserved_event_name_closes_the_connection_as_node_does(
    make_server: ServerFactory, name: str, payload: Json
) -> None:
    """socket.io-parser in Node refuses these names and closes the connection; so
    does this server, rather than hand them to python-socketio's own lifecycle
    handlers (which would reset or detach the session). Others carry on."""
    async with make_server(RATE_LIMIT_EVENTS="0") as server:
        conversation = await server.conversation(ACTOR, OBSERVER)
        actor = await joined(server, ACTOR, conversation)
        observer = await joined(server, OBSERVER, conversation)
        sid = actor.sio.get_sid()
        await actor.sio.emit(name, payload)
        await closed_by_the_server(server, actor, sid)
        assert not server.chat.fanout.in_room(sid, f"conversation:{conversation}")
        assert (await observer.call("message:send", {
            "conversationId": conversation, "text": "still here", "messageId": name}))["ok"]
        await server.advance(60)  # presence grace, auth timeout, typing: all over
        assert server.chat.sessions.count == 1  # the observer's
        assert [user.user_id for user in await server.chat.presence.online()] == [OBSERVER]
        await server.disconnect(observer)
        await server.advance(60)
        assert server.chat.sessions.count == 0
        assert server.chat.presence.user_count == 0


@pytest.mark.backends("sqlite")
async def test_a_socket_that_sent_disconnect_does_not_outlive_its_token(
    make_server: ServerFactory,
) -> None:
    """python-socketio would take a client's "disconnect" event as its own and
    detach the session from its handlers while the connection stays open, with
    no token expiry to end it: the server closes that connection instead."""
    async with make_server(RATE_LIMIT_EVENTS="0") as server:
        conversation = await server.conversation(ACTOR, OBSERVER)
        actor = await joined(server, ACTOR, conversation)  # token valid for an hour
        observer = ChatClient(server.url)
        server.clients.append(observer)
        await observer.connect(token=server.token(OBSERVER, ttl_s=10 * 3600))
        await observer.wait_for("authenticated")
        assert (await observer.call("conversation:join", {"conversationId": conversation}))["ok"]
        sid = actor.sio.get_sid()
        await actor.sio.emit("disconnect")
        await closed_by_the_server(server, actor, sid)
        assert not server.chat.fanout.in_room(sid, f"conversation:{conversation}")
        await server.advance(2 * 3600)  # the actor's token expired long ago
        assert (await observer.call("message:send", {
            "conversationId": conversation, "text": "after expiry", "messageId": "late"}))["ok"]
        assert server.chat.sessions.count == 1


class RawSocket:
    """A bare Engine.IO websocket speaking Socket.IO packets by hand."""

    def __init__(
        self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse
    ) -> None:
        self.http = http
        self.ws = ws

    @classmethod
    async def open(cls, server: RunningServer, token: str) -> RawSocket:
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(server.url + "/socket.io/?EIO=4&transport=websocket")
        raw = cls(http, ws)
        assert (await ws.receive_str(timeout=WAIT_S)).startswith("0")  # Engine.IO open
        await ws.send_str("40" + json.dumps({"token": token}))
        assert await raw.next_text(lambda text: text.startswith("40"), WAIT_S)
        return raw

    async def next_text(self, wanted: Callable[[str], bool], within: float) -> str | None:
        """The next text frame `wanted` accepts; None when the server closed first."""
        async with asyncio.timeout(within):
            while True:
                message = await self.ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    return None  # the websocket closed, or failed
                if message.data == "1" or message.data.startswith("41"):
                    return None  # Engine.IO close, or Socket.IO disconnect
                if message.data == "2":
                    await self.ws.send_str("3")  # Engine.IO ping
                elif wanted(message.data):
                    return str(message.data)

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()


DEEP = "[" * 1500 + "]" * 1500  # JSON.parse in Node reads this; the stdlib recurses too far
MALFORMED_EVENTS = {
    "number-as-name": "[123,{}]",
    "null-as-name": "[null]",
    "no-name": "[]",
    "object-not-array": '{"a":1}',
    "array-as-name": '[["presence:request"],{}]',
    "star-without-args": '["*"]',
    "deeply-nested": f'["presence:request",{DEEP}]',
}


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize("packet", list(MALFORMED_EVENTS.values()), ids=list(MALFORMED_EVENTS))
async def test_a_malformed_event_packet_closes_the_connection(
    make_server: ServerFactory, packet: str
) -> None:
    """Node closes the connection on a packet its parser refuses ("parse error"); so
    does this server, for every event packet that is not [name: str, ...args], so
    the client never waits on an ack that will not come."""
    async with make_server(RATE_LIMIT_EVENTS="0") as server:
        raw = await RawSocket.open(server, server.token(ACTOR))
        try:
            await raw.ws.send_str("427" + packet)
            # None: the server closed first (a TimeoutError would mean it did not).
            assert await raw.next_text(lambda text: text.startswith("437"), WAIT_S) is None
        finally:
            await raw.close()
        await server.wait_until(lambda: server.chat.sessions.count == 0)
        other = await server.client(OBSERVER)
        assert (await other.call("presence:request"))["ok"]
