"""What one worker's clients report, phase by phase: implements client.ClientRecorder.

`message_new` runs for every delivery the bench measures (several per message sent),
so it finds the bench's own fields as bytes before it falls back to decoding JSON.
"""

from __future__ import annotations

import collections
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import orjson

from ecigdis_ws.bench.changes import ChangeReceipts, ChangeSender, ChangeTotals, KindRecord
from ecigdis_ws.bench.client import WireClient
from ecigdis_ws.bench.wire import PendingChange, PendingSend, reply_code

# Error events that answer one of our own calls (already counted as that call's failure).
ANSWERED_EVENTS = frozenset({"message:send", "conversation:join", "message:edit",
                             "message:delete"})


@dataclass
class PhaseRecord:
    sent: int = 0
    acked: int = 0
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    send_errors: int = 0
    expected: int = 0
    received: int = 0
    acked_keys: array[int] = field(default_factory=lambda: array("q"))
    acked_groups: array[int] = field(default_factory=lambda: array("q"))
    receipts: dict[int, int] = field(default_factory=dict)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    ack_latencies: array[float] = field(default_factory=lambda: array("d"))
    target_rate: float = 0.0
    send_started_ns: int = 0
    send_ended_ns: int = 0
    cpu_started_s: float = 0.0
    cpu_ended_s: float = 0.0
    # EDIT or DELETE -> what this phase's edits or deletions did (changes.py)
    changes: dict[int, KindRecord] = field(default_factory=dict)


class PhaseRecorder:
    """The samples and counters of every phase not yet collected, and the clients
    still able to send (a client the server dropped stops being picked)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.prefix = (run_id + ".").encode()
        self.id_marker = b'"messageId":"' + self.prefix
        self.senders: list[WireClient] = []
        self.joined_per_group: dict[int, int] = {}
        self.phases: dict[int, PhaseRecord] = {}
        self.error_events: collections.Counter[str] = collections.Counter()
        self.unanswered_errors = 0  # error events that answer none of our calls
        self.disconnects = 0
        self.events: collections.Counter[str] = collections.Counter()
        self.foreign_messages = 0
        self.collected: set[int] = set()  # phases already reported
        self.late_deliveries = 0  # message:new of a phase after it was reported
        # Edits and deletions (changes.py): what the receivers heard, over the run, and
        # the sender's side (None: this run changes no message).
        self.change_totals = ChangeTotals()
        self.change_receipts = ChangeReceipts(self.change_totals)
        self.changer: ChangeSender | None = None

    # -- Recorder -----------------------------------------------------------------------------

    def phase(self, phase: int) -> PhaseRecord:
        record = self.phases.get(phase)
        if record is None:
            record = self.phases[phase] = PhaseRecord()
        return record

    def message_new(self, data: bytes) -> None:
        now = time.monotonic_ns()
        fields = self.fields(data)
        if fields is None:
            self.foreign_messages += 1
            return
        key, phase, sent_ns = fields
        if phase in self.collected:
            self.late_deliveries += 1
            return
        record = self.phases.get(phase) or self.phase(phase)
        record.received += 1
        receipts = record.receipts
        receipts[key] = receipts.get(key, 0) + 1
        record.latencies.append((now - sent_ns) / 1e6)

    def fields(self, data: bytes) -> tuple[int, int, int] | None:
        """(message key, phase, send time) of a bench message:new, else None.

        The hot path: both servers write compact JSON, so the two fields are found
        as bytes (our messageId and text hold only digits, '.', ':' and the run
        id); anything else is decoded in full."""
        at = data.find(self.id_marker)
        text_at = data.find(b'"text":"')
        if at >= 0 and text_at >= 0:
            at += len(self.id_marker)
            text_at += 8
            try:
                key = int(data[at:data.index(b'"', at)])
                phase, _, sent = data[text_at:data.index(b'"', text_at)].partition(b":")
                return key, int(phase), int(sent)
            except ValueError:
                pass
        packet = orjson.loads(data[2:])
        body = packet[1] if isinstance(packet, list) and len(packet) > 1 else None
        if not isinstance(body, dict):
            return None
        message_id, text = body.get("messageId"), body.get("text")
        if not (isinstance(message_id, str) and isinstance(text, str)
                and message_id.startswith(self.run_id + ".")):
            return None
        phase_text, _, sent_text = text.partition(":")
        try:
            return int(message_id[len(self.prefix):]), int(phase_text), int(sent_text)
        except ValueError:
            return None

    def message_acked(self, entry: PendingSend, reply: Any) -> None:
        now = time.monotonic_ns()
        phase, key, group, sent_ns = entry
        record = self.phase(phase)
        record.ack_latencies.append((now - sent_ns) / 1e6)
        code = reply_code(reply)
        if self.changer is not None:  # an acked message may be edited or deleted later
            self.changer.own.acked(key, reply, now / 1e9)
        if code is not None:
            record.failed[code] += 1
            return
        record.acked += 1
        record.acked_keys.append(key)
        record.acked_groups.append(group)
        record.expected += max(0, self.joined_per_group.get(group, 0) - 1)

    def message_changed(self, data: bytes) -> None:
        self.change_receipts.add(data, time.monotonic_ns())

    def change_acked(self, entry: PendingChange, reply: Any) -> None:
        now = time.monotonic_ns()
        if self.changer is None:  # only a changer emits changes
            return
        _, phase, group, _, _ = entry
        self.changer.acked(self.phase(phase).changes, entry, reply, now,
                           self.joined_per_group.get(group, 0) - 1)

    def error_event(self, payload: Any) -> None:
        code = "UNKNOWN"
        event = None
        if isinstance(payload, dict):
            code = str(payload.get("code", "UNKNOWN"))
            event = payload.get("event")
        self.error_events[code] += 1
        if event not in ANSWERED_EVENTS:
            self.unanswered_errors += 1

    def other_event(self, data: bytes) -> None:
        end = data.find(b'"', 4)
        self.events[data[4:end].decode(errors="replace") if end > 4 else "?"] += 1

    def disconnected(self, client: WireClient) -> None:
        self.disconnects += 1
        if client in self.senders:
            self.senders.remove(client)

