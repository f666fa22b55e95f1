"""The worker side of the reconnect scenario: clients that come back after the server dies.

Each client keeps, across its connections, what a page's ChatManager keeps: the
highest message id it received (its `since`) and the messages it has had. Its
TrackingRecorder hands the worker's PhaseRecorder each bench message once per
member — a replay that repeats a live delivery, or a member's own message replayed
to it, is not a second receipt — so the phase's per-message receipt counts are the
number of distinct members that got the message, and what is short of the members
that joined is missed (stages.py's `Run.merge` counts it as lost).

Once armed, a client whose connection drops is not an error: the ReconnectDriver
waits `ReconnectPolicy.delay` (doubling, with jitter), connects and authenticates
again, rejoins with `since`, and the first member of each conversation sends one
message as soon as it is back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ecigdis_ws.bench.client import ConnectFailed, WireClient
from ecigdis_ws.bench.plan import ReconnectPolicy
from ecigdis_ws.bench.recorder import PhaseRecorder
from ecigdis_ws.bench.wire import PendingChange, PendingSend, reply_code

# Members 0 and 1 of each conversation say hello before the kill, so that every member
# has received a message (and has a `since`) before the server goes away.
HELLO_POSITIONS = (0, 1)
# A join refused with one of these is tried again on the same connection after
# JOIN_RETRY_S (jittered), as ChatManager does (its retryDelayMs); any other refusal
# drops the connection and the client starts over.
RETRYABLE_JOIN = frozenset({"UNAVAILABLE", "RATE_LIMITED"})
JOIN_RETRY_S = 0.5


@dataclass
class ClientState:
    """One bench client across its connections."""

    index: int
    user_id: str
    token: str
    group: int
    conversation_id: int
    position: int  # its place in its conversation: 0 sends when it is back
    client: WireClient | None = None
    highest: int | None = None  # the highest message id received: the rejoin's `since`
    received: set[int] = field(default_factory=set)  # bench message keys it has had
    duplicates: int = 0  # a message it had already had (a replay overlapping live)
    armed: bool = False
    dropped_ns: int = 0
    back_ns: int = 0
    attempts: int = 0
    sent_after_return: bool = False


class TrackingRecorder:
    """One client's recorder (client.ClientRecorder): keeps its `since` and its receipts,
    passes each message it had not had to the worker's PhaseRecorder."""

    def __init__(self, state: ClientState, shared: PhaseRecorder,
                 on_drop: Callable[[ClientState, WireClient], None]) -> None:
        self.state = state
        self.shared = shared
        self.on_drop = on_drop

    def message_new(self, data: bytes) -> None:
        packet = orjson.loads(data[2:])
        body = packet[1] if isinstance(packet, list) and len(packet) > 1 else None
        if not isinstance(body, dict):
            self.shared.foreign_messages += 1
            return
        state = self.state
        message_id = body.get("id")
        if isinstance(message_id, int) and (state.highest is None or message_id > state.highest):
            state.highest = message_id
        if str(body.get("userId")) == state.user_id:
            return  # its own message, replayed to it with `since`: not a receipt
        fields = self.shared.fields(data)
        if fields is not None:
            if fields[0] in state.received:
                state.duplicates += 1
                return
            state.received.add(fields[0])
        self.shared.message_new(data)

    def message_acked(self, entry: PendingSend, reply: Any) -> None:
        self.shared.message_acked(entry, reply)

    def message_changed(self, data: bytes) -> None:
        self.shared.message_changed(data)

    def change_acked(self, entry: PendingChange, reply: Any) -> None:
        self.shared.change_acked(entry, reply)

    def error_event(self, payload: Any) -> None:
        self.shared.error_event(payload)

    def other_event(self, data: bytes) -> None:
        self.shared.other_event(data)

    def disconnected(self, client: WireClient) -> None:
        self.on_drop(self.state, client)


class ReconnectDriver:
    """The worker's clients in the reconnect scenario: tracked from their first connect,
    brought back after a drop once armed."""

    def __init__(self, ws_url: str, policy: ReconnectPolicy, connect_timeout_s: float,
                 shared: PhaseRecorder, clients: list[WireClient],
                 next_key: Callable[[], int]) -> None:
        self.ws_url = ws_url
        self.policy = policy
        self.connect_timeout_s = connect_timeout_s
        self.shared = shared
        self.clients = clients  # the worker's list: every connection, closed at the end
        self.next_key = next_key
        self.run_id = shared.run_id.encode()
        self.states: list[ClientState] = []
        self.failures: collections.Counter[str] = collections.Counter()
        self.after_phase = -1
        self.rand = random.Random()
        self.tasks: set[asyncio.Task[None]] = set()
        self.armed = self.returned = 0
        self.all_back = asyncio.Event()

    def track(self, state: ClientState) -> TrackingRecorder:
        self.states.append(state)
        return TrackingRecorder(state, self.shared, self._dropped)

    def joined(self, state: ClientState, client: WireClient) -> None:
        state.client = client

    def hello(self, phase: int) -> int:
        """Members 0 and 1 of each conversation send one message; how many were sent."""
        sent = 0
        for state in self.states:
            if state.position in HELLO_POSITIONS and state.client is not None:
                sent += self._send(state.client, phase)
        return sent

    def arm(self, after_phase: int) -> int:
        """From now on a joined client that drops comes back; the first member of each
        conversation then sends in `after_phase`. How many clients are armed."""
        self.after_phase = after_phase
        for state in self.states:
            # A client the server dropped before now was counted a disconnect (an
            # error) already, and no drop will come to bring it back: not armed.
            state.armed = state.client is not None and not state.client.closed
        self.armed = sum(state.armed for state in self.states)
        return self.armed

    def _send(self, client: WireClient, phase: int) -> int:
        record = self.shared.phase(phase)
        now = time.monotonic_ns()
        record.send_started_ns = record.send_started_ns or now
        record.send_ended_ns = now
        try:
            client.send_message(phase, self.next_key(), self.run_id)
        except ConnectionResetError:
            record.send_errors += 1
            return 0
        record.sent += 1
        return 1

    def _dropped(self, state: ClientState, client: WireClient) -> None:
        if state.armed and client is not state.client:
            return  # an attempt to come back that failed: _come_back tries again
        if not state.armed or state.dropped_ns:
            self.shared.disconnected(client)  # not the kill's: an error as ever
            return
        state.dropped_ns = time.monotonic_ns()
        if client in self.shared.senders:
            self.shared.senders.remove(client)
        task = asyncio.create_task(self._come_back(state))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _come_back(self, state: ClientState) -> None:
        deadline = time.monotonic() + self.policy.timeout_s
        while time.monotonic() < deadline:
            await asyncio.sleep(self.policy.delay(state.attempts, self.rand.random()))
            state.attempts += 1
            client = WireClient(state.index, state.token, state.group, state.conversation_id,
                                TrackingRecorder(state, self.shared, self._dropped))
            self.clients.append(client)
            failure = await self._rejoin(state, client)
            if failure is None:
                state.client = client
                state.back_ns = time.monotonic_ns()
                self.returned += 1
                if self.returned >= self.armed:
                    self.all_back.set()
                if state.position == 0:
                    state.sent_after_return = self._send(client, self.after_phase) == 1
                return
            self.failures[failure] += 1
            client.close()

    async def _rejoin(self, state: ClientState, client: WireClient) -> str | None:
        """Connect, authenticate, join with `since`; None, or why it failed."""
        join: dict[str, int] = {"conversationId": state.conversation_id}
        if self.policy.since and state.highest is not None:
            join["since"] = state.highest
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await client.open(self.ws_url)
                while (code := reply_code(await client.call("conversation:join", join))
                       ) in RETRYABLE_JOIN:
                    self.failures[f"join {code}, retried"] += 1
                    jitter = self.policy.jitter * (2 * self.rand.random() - 1)
                    await asyncio.sleep(JOIN_RETRY_S * (1 + jitter))
        except ConnectFailed as exc:
            return exc.reason
        except TimeoutError:
            return "timeout"
        return code

    async def wait_back(self) -> dict[str, Any]:
        """Until every armed client is back, or the policy's timeout ran out."""
        if self.returned < self.armed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.policy.timeout_s):
                    await self.all_back.wait()
        armed = [state for state in self.states if state.armed]
        for task in list(self.tasks):
            task.cancel()
        return {
            "armed": len(armed),
            "dropped": sum(1 for s in armed if s.dropped_ns),
            "back": sum(1 for s in armed if s.back_ns),
            "dropped_ns": [s.dropped_ns for s in armed if s.dropped_ns],
            "back_ns": [s.back_ns for s in armed if s.back_ns],
            "reconnect_ms": [(s.back_ns - s.dropped_ns) / 1e6 for s in armed if s.back_ns],
            "attempts": [s.attempts for s in armed if s.back_ns],
            "failures": dict(self.failures),
            "sent_after_return": sum(s.sent_after_return for s in armed),
            "duplicates": sum(s.duplicates for s in self.states),
        }
