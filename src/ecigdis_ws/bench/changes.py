"""Edits and deletions in the chat load: `--change-share`, `--delete-share`, `--change-delay`.

A tick of the sender, instead of a `message:send`, may edit (`message:edit`) or delete
(`message:delete`) one of its own messages: with probability `change_share` an edit,
`delete_share` a deletion. The message is one that a client of the same worker sent and
had acknowledged at least `change_delay_s` before (OwnMessages); that client, its
sender, is the one that changes it, as only a sender may edit. A tick that finds no
message eligible yet sends instead, and is counted as a fallback of its kind.

Latency is measured as for a send, from the sender's emit to each receiver: the
receivers note when `message:updated` / `message:deleted` arrived, with the message's
server id and version (DELETED_VERSION for a deletion); the sender notes when it
emitted the change and, from its ack, the version it made. A deletion's payload carries
nothing the client chose (no text, no client id), so the two are matched in the parent
(ChangeLedger), not in the receiver: on Linux `time.monotonic_ns()` is one clock for
every process. A change acknowledged `ok` must reach every other member of its group
that joined (the room hears it but the changing socket); what is short is lost.

Everything here is off at the defaults (both shares 0): the send path, the report and
the JSON are those of a run without changes, but for a few empty fields.
"""

from __future__ import annotations

import argparse
import collections
import random
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from ecigdis_ws.bench.report import add_counts, percentiles
from ecigdis_ws.bench.wire import DELETE, EDIT, PendingChange, reply_code

if TYPE_CHECKING:
    from ecigdis_ws.bench.client import WireClient

SEND = 0
KIND_NAMES = {EDIT: "edit", DELETE: "delete"}
# The version a deletion is matched by (an edit's are 2, 3, …: the server counts from 1).
DELETED_VERSION = 0
# Acknowledged messages a worker keeps eligible for a change; past it the oldest
# eligible go (a run of minutes never edits an hour-old message, which
# MESSAGE_EDIT_WINDOW_S would refuse anyway).
OWN_MESSAGES_CAP = 4096
# An edit acknowledged with `changed: false` told no one: counted as this failure.
UNCHANGED = "UNCHANGED"
# The scenarios whose sender ticks may change a message instead.
CHANGE_SCENARIOS = ("chat", "broadcast")


@dataclass(frozen=True)
class ChangeOptions:
    change_share: float = 0.0  # share of the ticks that edit one of its own messages
    delete_share: float = 0.0  # share of the ticks that delete one
    change_delay_s: float = 0.0  # a message is eligible this long after its ack

    @property
    def active(self) -> bool:
        return self.change_share > 0 or self.delete_share > 0

    def argv(self) -> list[str]:
        """The bench's command-line options that give these (none when inactive):
        what benchmarks/nodes.py passes on, a bad value included, for the bench to
        refuse."""
        if not (self.change_share or self.delete_share):
            return []
        return ["--change-share", f"{self.change_share:g}", "--delete-share",
                f"{self.delete_share:g}", "--change-delay", f"{self.change_delay_s:g}"]

    def kind(self, draw: float) -> int:
        """What a tick does for a uniform `draw` in [0, 1): SEND, EDIT or DELETE."""
        if draw < self.change_share:
            return EDIT
        if draw < self.change_share + self.delete_share:
            return DELETE
        return SEND

    def problems(self, scenario: str) -> list[str]:
        problems = []
        if not (0 <= self.change_share <= 1 and 0 <= self.delete_share <= 1):
            problems.append("--change-share and --delete-share must be between 0 and 1")
        elif self.change_share + self.delete_share > 1:
            problems.append("--change-share and --delete-share add up to more than 1")
        if self.change_delay_s < 0:
            problems.append("--change-delay must not be negative")
        if self.active and scenario not in CHANGE_SCENARIOS:
            problems.append("--change-share and --delete-share are for --scenario "
                            + " or ".join(CHANGE_SCENARIOS))
        return problems


def add_change_arguments(parser: Any) -> None:
    """The command line's options (an argparse parser or argument group)."""
    parser.add_argument("--change-share", type=float, default=0.0, metavar="F",
                        help="chat: this share of the sender's ticks edits one of its own "
                             "recent messages instead of sending (default 0)")
    parser.add_argument("--delete-share", type=float, default=0.0, metavar="F",
                        help="chat: this share deletes one instead (default 0)")
    parser.add_argument("--change-delay", type=float, default=0.0, metavar="S",
                        help="a message may be edited or deleted S seconds after its "
                             "ack (default 0)")


def change_options_from(args: argparse.Namespace) -> ChangeOptions:
    return ChangeOptions(change_share=args.change_share, delete_share=args.delete_share,
                         change_delay_s=args.change_delay)


# -- a worker's side ------------------------------------------------------------------------


@dataclass
class KindRecord:
    """One kind of change (edit or delete) in one phase, as its senders saw it."""

    sent: int = 0
    acked: int = 0
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    send_errors: int = 0
    fallbacks: int = 0  # ticks of this kind that found no message eligible: sent instead
    ack_latencies: array[float] = field(default_factory=lambda: array("d"))
    # the changes acknowledged ok: server id, version made, emit time, group
    ids: array[int] = field(default_factory=lambda: array("q"))
    versions: array[int] = field(default_factory=lambda: array("q"))
    emitted_ns: array[int] = field(default_factory=lambda: array("q"))
    groups: array[int] = field(default_factory=lambda: array("q"))

    def reply(self) -> dict[str, Any]:
        return {"sent": self.sent, "acked": self.acked, "failed": dict(self.failed),
                "send_errors": self.send_errors, "fallbacks": self.fallbacks,
                "ack_latencies_ms": self.ack_latencies, "ids": self.ids,
                "versions": self.versions, "emitted_ns": self.emitted_ns,
                "groups": self.groups}


@dataclass
class ChangeTotals:
    """A worker's changes over the whole run, for the drain (stages.py): a receiver
    cannot tell which phase a deletion belongs to, so the drain waits on these."""

    sent: int = 0
    answered: int = 0
    expected: int = 0
    received: int = 0

    def progress(self) -> tuple[int, int, int, int]:
        return self.sent, self.answered, self.expected, self.received


class ChangeReceipts:
    """What a worker's receivers heard: server id, version, arrival (monotonic ns)."""

    def __init__(self, totals: ChangeTotals) -> None:
        self.totals = totals
        self.ids: array[int] = array("q")
        self.versions: array[int] = array("q")
        self.received_ns: array[int] = array("q")
        self.foreign = 0  # payloads without the fields (not counted)

    def add(self, data: bytes, now_ns: int) -> None:
        """A `message:updated` or `message:deleted` packet ("42[…]") that arrived now."""
        packet = orjson.loads(data[2:])
        body = packet[1] if isinstance(packet, list) and len(packet) > 1 else None
        if not isinstance(body, dict) or not isinstance(body.get("id"), int):
            self.foreign += 1
            return
        version = (body.get("version") if packet[0] == "message:updated"
                   else DELETED_VERSION)
        if not isinstance(version, int):
            self.foreign += 1
            return
        self.ids.append(body["id"])
        self.versions.append(version)
        self.received_ns.append(now_ns)
        self.totals.received += 1

    def take(self) -> dict[str, Any]:
        """Everything heard since the last take, for the parent (and forget it)."""
        taken = {"ids": self.ids, "versions": self.versions, "received_ns": self.received_ns,
                 "foreign": self.foreign}
        self.ids, self.versions, self.received_ns = array("q"), array("q"), array("q")
        self.foreign = 0
        return taken


class OwnMessages:
    """A worker's clients' own acknowledged messages, as (sender, server id), eligible
    for a change `delay_s` after their ack. A message taken for a change is out of the
    pool until that change's ack (two changes of one message never race); an edit puts
    it back, eligible `delay_s` after the edit's ack; a deletion does not."""

    def __init__(self, delay_s: float, cap: int = OWN_MESSAGES_CAP) -> None:
        self.delay_s = delay_s
        self.cap = cap
        self._sending: dict[int, WireClient] = {}  # message key -> its sender
        self._waiting: collections.deque[tuple[float, WireClient, int]] = (
            collections.deque())  # (eligible from, sender, server id), oldest first
        self._eligible: list[tuple[WireClient, int]] = []
        self._busy: dict[int, WireClient] = {}  # server id -> its sender, while changed
        self.dropped = 0  # eligible messages dropped past the cap

    def __len__(self) -> int:
        return len(self._waiting) + len(self._eligible)

    def sending(self, key: int, client: WireClient) -> None:
        """`client` sent the message `key`: its ack makes the message its own."""
        self._sending[key] = client

    def acked(self, key: int, reply: Any, now_s: float) -> None:
        client = self._sending.pop(key, None)
        if client is None or reply_code(reply) is not None:
            return
        server_id = reply.get("id")
        if isinstance(server_id, int):
            self._waiting.append((now_s + self.delay_s, client, server_id))

    def take(self, now_s: float, draw: float) -> tuple[WireClient, int] | None:
        """A message eligible at `now_s`, drawn at random (`draw` in [0, 1)), with its
        sender still connected; None when there is none."""
        waiting, eligible = self._waiting, self._eligible
        while waiting and waiting[0][0] <= now_s:
            _, client, server_id = waiting.popleft()
            eligible.append((client, server_id))
        if len(eligible) > self.cap:
            extra = len(eligible) - self.cap
            del eligible[:extra]
            self.dropped += extra
        while eligible:
            index = min(int(draw * len(eligible)), len(eligible) - 1)
            chosen = eligible[index]
            eligible[index] = eligible[-1]
            eligible.pop()
            if not chosen[0].closed:
                self._busy[chosen[1]] = chosen[0]
                return chosen
        return None

    def done(self, kind: int, server_id: int, ok: bool, now_s: float) -> None:
        """The change of `server_id` was answered: an edit that held makes the message
        eligible again `delay_s` from now; anything else ends it here."""
        client = self._busy.pop(server_id, None)
        if client is not None and ok and kind == EDIT:
            self._waiting.append((now_s + self.delay_s, client, server_id))


class ChangeSender:
    """A worker's changes: which ticks change a message, which message, their acks."""

    def __init__(self, options: ChangeOptions, totals: ChangeTotals,
                 rand: random.Random | None = None) -> None:
        self.options = options
        self.totals = totals
        self.own = OwnMessages(options.change_delay_s)
        self._random = (rand or random.Random()).random

    def tick(self, kinds: dict[int, KindRecord], phase: int, now_s: float) -> bool:
        """One tick of the sender: True when it edited or deleted (or tried to, and the
        socket was closed), False when the tick is a message:send's."""
        kind = self.options.kind(self._random())
        if kind == SEND:
            return False
        record = kinds.get(kind) or kinds.setdefault(kind, KindRecord())
        target = self.own.take(now_s, self._random())
        if target is None:
            record.fallbacks += 1
            return False
        client, server_id = target
        try:
            client.change_message(kind, phase, server_id)
        except ConnectionResetError:
            record.send_errors += 1
            self.own.done(kind, server_id, False, now_s)
            return True
        record.sent += 1
        self.totals.sent += 1
        return True

    def acked(self, kinds: dict[int, KindRecord], entry: PendingChange, reply: Any,
              now_ns: int, others: int) -> None:
        """The ack of a change; `others`: the members of its group that should hear it."""
        kind, _phase, group, emitted_ns, server_id = entry
        record = kinds.get(kind) or kinds.setdefault(kind, KindRecord())
        record.ack_latencies.append((now_ns - emitted_ns) / 1e6)
        self.totals.answered += 1
        code = reply_code(reply)
        version = DELETED_VERSION
        if code is None and kind == EDIT:
            version = reply.get("version")
            if reply.get("changed") is not True or not isinstance(version, int):
                code = UNCHANGED
        self.own.done(kind, server_id, code is None, now_ns / 1e9)
        if code is not None:
            record.failed[code] += 1
            return
        record.acked += 1
        record.ids.append(server_id)
        record.versions.append(version)
        record.emitted_ns.append(emitted_ns)
        record.groups.append(group)
        self.totals.expected += max(0, others)


# -- the parent's side ----------------------------------------------------------------------


class ChangeLedger:
    """The parent's: what receivers heard, until it is matched with the change it tells
    of. A worker's collect hands over everything its receivers heard so far, which may
    belong to a later phase of the same drain, so what one phase leaves waits here."""

    def __init__(self) -> None:
        self._heard: dict[tuple[int, int], list[int]] = {}
        self.foreign = 0

    def add(self, receipts: Mapping[str, Any] | None) -> None:
        if not receipts:
            return
        for key in zip(receipts["ids"], receipts["versions"], receipts["received_ns"],
                       strict=True):
            self._heard.setdefault((key[0], key[1]), []).append(key[2])
        self.foreign += receipts.get("foreign", 0)

    @property
    def unmatched(self) -> int:
        """Receipts no acknowledged change claimed (yet)."""
        return sum(len(times) for times in self._heard.values())

    def merge(self, replies: Sequence[Mapping[str, Any]],
              joined_per_group: Mapping[int, int]) -> dict[str, dict[str, Any]]:
        """Each kind's figures for one phase, from every worker's collect."""
        return {name: self._kind(
            [r["changes"].get(name) for r in replies if r.get("changes", {}).get(name)],
            [r.get("change_unacked", {}).get(name, 0) for r in replies], joined_per_group)
            for name in KIND_NAMES.values()}

    def _kind(self, parts: list[Mapping[str, Any]], unacked: list[int],
              joined_per_group: Mapping[int, int]) -> dict[str, Any]:
        failed: dict[str, int] = {}
        latencies: list[float] = []
        ack_latencies: list[float] = []
        expected = losses = duplicates = 0
        for part in parts:
            add_counts(failed, part["failed"])
            ack_latencies.extend(part["ack_latencies_ms"])
            for server_id, version, emitted_ns, group in zip(
                    part["ids"], part["versions"], part["emitted_ns"], part["groups"],
                    strict=True):
                want = max(0, joined_per_group.get(group, 0) - 1)
                heard = self._heard.pop((server_id, version), [])
                latencies.extend((at - emitted_ns) / 1e6 for at in heard)
                expected += want
                losses += max(0, want - len(heard))
                duplicates += max(0, len(heard) - want)
        figures = {
            "sent": sum(p["sent"] for p in parts),
            "acked": sum(p["acked"] for p in parts),
            "ack_failures": failed,
            "send_errors": sum(p["send_errors"] for p in parts),
            "ack_timeouts": sum(unacked),
            "fallbacks": sum(p["fallbacks"] for p in parts),
            "expected": expected,
            "deliveries": len(latencies),
            "losses": losses,
            "duplicates": duplicates,
            "latency_ms": percentiles(latencies),
            "ack_latency_ms": percentiles(ack_latencies),
        }
        figures["errors"] = (sum(failed.values()) + figures["send_errors"]
                             + figures["ack_timeouts"])
        return figures


def unacked_changes(changes: dict[int, PendingChange], phase: int) -> dict[str, int]:
    """Drop a client's changes of `phase` still unanswered; how many of each kind."""
    stale = [ack for ack, entry in changes.items() if entry[1] == phase]
    counts: dict[str, int] = {}
    for ack in stale:
        name = KIND_NAMES[changes.pop(ack)[0]]
        counts[name] = counts.get(name, 0) + 1
    return counts
