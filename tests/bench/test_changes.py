"""`ecigdis-ws bench` with edits and deletions (bench/changes.py): `--change-share`,
`--delete-share`, `--change-delay`. Real runs against the real server (in this
process), whose own counts and database check the bench's; then the pieces without a
server: the tick's choice, the pool of own messages, the frames, the parent's match
of what receivers heard with the change it tells of, and the report."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from ecigdis_ws.bench.changes import (
    DELETED_VERSION,
    SEND,
    ChangeLedger,
    ChangeOptions,
    ChangeReceipts,
    ChangeSender,
    ChangeTotals,
    KindRecord,
    OwnMessages,
    unacked_changes,
)
from ecigdis_ws.bench.connection import ClientConnection
from ecigdis_ws.bench.database import setup_conversations
from ecigdis_ws.bench.plan import BenchOptions, conversation_id
from ecigdis_ws.bench.report import summary_lines
from ecigdis_ws.bench.runner import run_bench
from ecigdis_ws.bench.wire import DELETE, EDIT
from ecigdis_ws.errors import ChatError, ErrorCode
from tests.bench.test_bench import QUICK, bench_cli, cli_env, metric, options, stored
from tests.bench.test_wire import KEY, UPGRADE, Events, server_frame, unmasked
from tests.support import RunningServer

# -- real runs --------------------------------------------------------------------------------


async def deleted_in_database(server: RunningServer, conversations: list[int]) -> int:
    """Messages of these conversations that the server's database holds as deleted
    (the database is the test's own: its message ids count from 1)."""
    count = 0
    for message_id in range(1, int(stored(server)) + 1):
        for conversation in conversations:
            message = await server.chat.storage.changes.message(conversation, message_id)
            if message is not None:
                count += message.deleted
                break
    return count


async def test_chat_with_edits_and_deletions_times_each_kind_to_every_other_member(
    bench_server: RunningServer,
) -> None:
    plan = options(bench_server, clients=20, group=5, rate=100.0, duration_s=2.0,
                   warmup_s=1.0, changes=ChangeOptions(change_share=0.3, delete_share=0.2,
                                                       change_delay_s=0.2))
    await setup_conversations(plan, bench_server.settings)
    report = await run_bench(plan, bench_server.settings)
    assert report["ok"] is True, json.dumps(report["errors"])
    assert report["losses"] == 0
    assert report["parameters"]["changes"] == {
        "change_share": 0.3, "delete_share": 0.2, "change_delay_s": 0.2}
    messages = report["messages"]
    edit, delete = messages["changes"]["edit"], messages["changes"]["delete"]
    # A tick is a send, an edit or a deletion: 200 in the measured phase.
    assert messages["sent"] + edit["sent"] + delete["sent"] == 200
    # About 30 % and 20 % of them (the warm-up made messages eligible from the start).
    assert 30 <= edit["sent"] <= 90 and 15 <= delete["sent"] <= 70
    for kind in (edit, delete):
        assert kind["acked"] == kind["sent"]
        assert kind["errors"] == 0 and kind["ack_failures"] == {}
        # The room but the changing socket: the 4 others of each group, each timed.
        assert kind["deliveries"] == kind["expected"] == 4 * kind["acked"]
        assert kind["latency_ms"]["count"] == kind["deliveries"]
        assert 0 < kind["latency_ms"]["p50"] <= kind["latency_ms"]["p99"]
        assert kind["ack_latency_ms"]["count"] == kind["acked"]
    # What the server itself saw: every edit and deletion, warm-up included, and only
    # the sends stored as messages.
    warmup = report["warmup"]["changes"]
    assert metric(bench_server.chat, "ecigdis_ws_events_received_total",
                  event="message:edit") == edit["sent"] + warmup["edit"]["sent"]
    assert metric(bench_server.chat, "ecigdis_ws_events_received_total",
                  event="message:delete") == delete["sent"] + warmup["delete"]["sent"]
    assert stored(bench_server) == messages["sent"] + report["warmup"]["sent"]
    conversations = [conversation_id(plan, group) for group in range(4)]
    assert await deleted_in_database(bench_server, conversations) == (
        delete["acked"] + warmup["delete"]["acked"])


@pytest.mark.backends("sqlite")
async def test_the_command_line_takes_the_shares_and_prints_a_row_per_kind(
    bench_server: RunningServer, tmp_path: Path,
) -> None:
    await setup_conversations(options(bench_server, clients=10, group=5),
                              bench_server.settings)
    report_path = tmp_path / "changes.json"
    code, out, err = await bench_cli(
        tmp_path, cli_env(bench_server, tmp_path), bench_server.url, "--clients", "10",
        "--group", "5", "--rate", "50", "--duration", "2", "--change-share", "0.2",
        "--delete-share", "0.1", "--change-delay", "0.1", "--json", str(report_path), *QUICK)
    assert code == 0, out + err
    report = json.loads(report_path.read_text())
    changes = report["messages"]["changes"]
    assert changes["edit"]["acked"] > 0 and changes["delete"]["acked"] > 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in ("send", "edit", "delete")}
    assert set(rows) == {"send", "edit", "delete"}
    assert int(rows["edit"][1]) == changes["edit"]["sent"]
    assert "by kind" in out


@pytest.mark.backends("sqlite")
async def test_without_shares_a_run_sends_only_and_its_report_has_no_kinds(
    bench_server: RunningServer,
) -> None:
    plan = options(bench_server, clients=10, group=5, rate=50.0, duration_s=1.0)
    await setup_conversations(plan, bench_server.settings)
    report = await run_bench(plan, bench_server.settings)
    assert report["ok"] is True
    assert "changes" not in report["messages"]
    assert report["messages"]["sent"] == 50
    assert metric(bench_server.chat, "ecigdis_ws_events_received_total",
                  event="message:edit") == 0
    assert not any(line.lstrip().startswith("by kind") for line in summary_lines(report))


@pytest.mark.backends("sqlite")
async def test_an_edit_refused_by_the_server_is_an_error_of_its_kind(
    bench_server: RunningServer,
) -> None:
    async def refuse(*_: Any) -> Any:
        raise ChatError(ErrorCode.CONFLICT, "the message changed meanwhile: read it again")

    bench_server.chat.changes.edit = refuse  # type: ignore[method-assign]
    plan = options(bench_server, clients=10, group=5, rate=40.0, duration_s=2.0,
                   changes=ChangeOptions(change_share=0.2, delete_share=0.1))
    await setup_conversations(plan, bench_server.settings)
    report = await run_bench(plan, bench_server.settings)
    edit, delete = report["messages"]["changes"]["edit"], report["messages"]["changes"]["delete"]
    assert edit["sent"] > 0
    assert edit["ack_failures"] == {"CONFLICT": edit["sent"]} and edit["acked"] == 0
    assert edit["errors"] == edit["sent"] and edit["deliveries"] == 0
    assert delete["errors"] == 0 and delete["acked"] > 0
    assert report["errors"]["change_ack_failures"]["CONFLICT"] >= edit["sent"]
    # The error event that comes with the refusal answers our own call: not counted twice.
    assert report["errors"]["unanswered_error_events"] == 0
    assert report["ok"] is False


# -- the pieces ------------------------------------------------------------------------------


def test_a_ticks_kind_follows_the_shares() -> None:
    shares = ChangeOptions(change_share=0.1, delete_share=0.05)
    assert [shares.kind(d) for d in (0.0, 0.0999, 0.1, 0.1499, 0.1501, 0.9999)] == [
        EDIT, EDIT, DELETE, DELETE, SEND, SEND]
    assert ChangeOptions().kind(0.0) == SEND and not ChangeOptions().active
    draws = random.Random(7)
    kinds = [shares.kind(draws.random()) for _ in range(20_000)]
    assert kinds.count(EDIT) / 20_000 == pytest.approx(0.1, abs=0.01)
    assert kinds.count(DELETE) / 20_000 == pytest.approx(0.05, abs=0.01)


@pytest.mark.parametrize(("changes", "scenario", "problem"), [
    (ChangeOptions(change_share=1.5), "chat", "between 0 and 1"),
    (ChangeOptions(delete_share=-0.1), "chat", "between 0 and 1"),
    (ChangeOptions(change_share=0.6, delete_share=0.5), "chat", "more than 1"),
    (ChangeOptions(change_delay_s=-1), "chat", "--change-delay"),
    (ChangeOptions(change_share=0.1), "ramp", "--scenario chat or broadcast"),
])
def test_wrong_shares_are_refused(changes: ChangeOptions, scenario: str, problem: str) -> None:
    plan = BenchOptions(url="http://127.0.0.1:1", scenario=scenario,  # type: ignore[arg-type]
                        changes=changes)
    assert any(problem in p for p in plan.check())
    assert BenchOptions(url="http://127.0.0.1:1", changes=ChangeOptions(0.5, 0.5)).check() == []


class Sender:
    """A WireClient as OwnMessages and ChangeSender use it."""

    def __init__(self, closed: bool = False) -> None:
        self.closed = closed
        self.changed: list[tuple[int, int, int]] = []

    def change_message(self, kind: int, phase: int, server_id: int) -> None:
        if self.closed:
            raise ConnectionResetError("websocket closed")
        self.changed.append((kind, phase, server_id))


OK = {"ok": True, "id": 0}


def test_a_message_is_its_senders_and_eligible_only_after_the_delay() -> None:
    own = OwnMessages(delay_s=2.0)
    alice, bob = Sender(), Sender()
    own.sending(1, alice)  # type: ignore[arg-type]
    own.sending(2, bob)  # type: ignore[arg-type]
    own.sending(3, bob)  # type: ignore[arg-type]
    own.acked(1, {**OK, "id": 101}, now_s=10.0)
    own.acked(2, {"ok": False, "error": {"code": "FORBIDDEN"}}, now_s=10.0)  # not stored
    own.acked(3, {**OK, "id": 103}, now_s=11.0)
    assert own.take(now_s=11.9, draw=0.0) is None  # 101 is eligible from 12.0
    assert own.take(now_s=12.0, draw=0.0) == (alice, 101)
    # Taken: out of the pool until its change is answered.
    assert own.take(now_s=12.5, draw=0.0) is None
    own.done(EDIT, 101, ok=True, now_s=12.5)  # an edit puts it back, 2 s on
    assert own.take(now_s=13.0, draw=0.0) == (bob, 103)
    own.done(DELETE, 103, ok=True, now_s=13.0)  # a deletion does not
    assert own.take(now_s=14.4, draw=0.0) is None
    assert own.take(now_s=14.5, draw=0.0) == (alice, 101)
    own.done(EDIT, 101, ok=False, now_s=15.0)  # nor does a refused change
    assert own.take(now_s=100.0, draw=0.0) is None and len(own) == 0


def test_a_closed_senders_messages_are_skipped_and_the_pool_is_bounded() -> None:
    own = OwnMessages(delay_s=0.0, cap=3)
    gone, here = Sender(closed=True), Sender()
    for key, sender in enumerate([here, gone, here, here, gone], start=1):
        own.sending(key, sender)  # type: ignore[arg-type]
        own.acked(key, {**OK, "id": 100 + key}, now_s=0.0)
    # Five eligible, the cap keeps the last three (103 here, 104 here, 105 gone).
    taken = {own.take(now_s=0.0, draw=0.99) for _ in range(3)}
    assert taken == {(here, 103), (here, 104), None}
    assert own.dropped == 2


def test_a_tick_changes_an_eligible_message_by_its_sender_or_falls_back_to_a_send() -> None:
    totals = ChangeTotals()
    sender = ChangeSender(ChangeOptions(change_share=1.0), totals, random.Random(1))
    kinds: dict[int, KindRecord] = {}
    assert sender.tick(kinds, phase=3, now_s=0.0) is False  # nothing eligible: a send
    assert kinds[EDIT].fallbacks == 1
    alice = Sender()
    sender.own.sending(9, alice)  # type: ignore[arg-type]
    sender.own.acked(9, {**OK, "id": 55}, now_s=0.0)
    assert sender.tick(kinds, phase=3, now_s=0.0) is True
    assert alice.changed == [(EDIT, 3, 55)]
    assert (kinds[EDIT].sent, totals.sent) == (1, 1)
    # Its ack: the version it made, the 4 others that should hear it.
    sender.acked(kinds, (EDIT, 3, 0, 1_000_000, 55),
                 {"ok": True, "id": 55, "version": 2, "changed": True}, 3_000_000, 4)
    record = kinds[EDIT]
    assert (record.acked, list(record.ids), list(record.versions)) == (1, [55], [2])
    assert list(record.ack_latencies) == [2.0]
    assert (totals.answered, totals.expected) == (1, 4)
    # An edit that changed nothing told no one: a failure of its own.
    sender.acked(kinds, (EDIT, 3, 0, 0, 55), {"ok": True, "version": 2, "changed": False},
                 0, 4)
    assert record.failed == {"UNCHANGED": 1} and totals.expected == 4


def test_the_frames_name_the_message_and_the_acks_come_back_as_changes() -> None:
    heard = ChangeEvents()
    connection = ClientConnection("h", "/", KEY, heard, heard)
    connection.receive_data(UPGRADE)
    edit = connection.message_change(EDIT, 77, 4, 2, 901, 123456789)
    delete = connection.message_change(DELETE, 77, 4, 2, 902, 5)
    assert unmasked(edit)[1] == (
        b'420["message:edit",{"conversationId":77,"id":901,"text":"2:123456789"}]')
    assert unmasked(delete)[1] == b'421["message:delete",{"conversationId":77,"id":902}]'
    updated = b'42["message:updated",{"id":901,"conversationId":77,"text":"2:1","version":2}]'
    deleted = b'42["message:deleted",{"id":902,"conversationId":77,"deletedBy":"5"}]'
    connection.receive_data(server_frame(b"431[{\"ok\":true,\"id\":902}]")
                            + server_frame(updated) + server_frame(deleted))
    assert heard.heard == [
        ("change_acked", (DELETE, 2, 4, 5, 902), {"ok": True, "id": 902}),
        ("message_changed", updated), ("message_changed", deleted)]
    assert unacked_changes(connection.changes, phase=2) == {"edit": 1}
    assert connection.changes == {}


class ChangeEvents(Events):
    def message_changed(self, data: bytes) -> None:
        self.heard.append(("message_changed", data))

    def change_acked(self, entry: tuple[int, ...], reply: Any) -> None:
        self.heard.append(("change_acked", entry, reply))


def test_receipts_are_matched_with_their_change_across_collects() -> None:
    totals = ChangeTotals()
    receipts = ChangeReceipts(totals)
    for data, at in [
        (b'42["message:updated",{"id":5,"conversationId":1,"text":"x","version":2}]', 1_500_000),
        (b'42["message:updated",{"id":5,"conversationId":1,"text":"x","version":2}]', 3_000_000),
        (b'42["message:deleted",{"id":6,"conversationId":1,"deletedBy":"1"}]', 9_000_000),
        (b'42["message:deleted",{"conversationId":1}]', 1),
    ]:
        receipts.add(data, at)
    assert (totals.received, receipts.foreign) == (3, 1)
    ledger = ChangeLedger()
    ledger.add(receipts.take())  # the first collect hands over all that was heard
    assert receipts.take()["ids"] == receipts.ids == type(receipts.ids)("q")
    edit = KindRecord(sent=1, acked=1)
    for array_, value in ((edit.ids, 5), (edit.versions, 2), (edit.emitted_ns, 1_000_000),
                          (edit.groups, 0)):
        array_.append(value)
    delete = KindRecord(sent=1, acked=1)
    for array_, value in ((delete.ids, 6), (delete.versions, DELETED_VERSION),
                          (delete.emitted_ns, 4_000_000), (delete.groups, 1)):
        array_.append(value)
    joined = {0: 3, 1: 2}
    first = ledger.merge([{"changes": {"edit": edit.reply()}, "change_unacked": {}}], joined)
    assert first["edit"]["deliveries"] == first["edit"]["expected"] == 2
    assert first["edit"]["latency_ms"]["p50"] == 0.5 and first["edit"]["losses"] == 0
    assert first["delete"]["sent"] == 0
    assert ledger.unmatched == 1  # the deletion's receipt waits for its own phase
    second = ledger.merge([{"changes": {"delete": delete.reply()},
                            "change_unacked": {"delete": 1}}], joined)
    assert second["delete"]["latency_ms"]["max"] == 5.0
    assert (second["delete"]["deliveries"], second["delete"]["losses"]) == (1, 0)
    assert second["delete"]["errors"] == 1  # the one left unanswered
    assert ledger.unmatched == 0


def test_a_change_short_of_a_member_is_lost_and_a_repeat_is_a_duplicate() -> None:
    ledger = ChangeLedger()
    ledger.add({"ids": [5, 5, 5, 6], "versions": [2, 2, 2, 0],
                "received_ns": [2, 3, 4, 5], "foreign": 0})
    edit, delete = KindRecord(sent=1, acked=1), KindRecord(sent=1, acked=1)
    for record, (server_id, version) in ((edit, (5, 2)), (delete, (6, 0))):
        record.ids.append(server_id)
        record.versions.append(version)
        record.emitted_ns.append(1)
        record.groups.append(0)
    merged = ledger.merge([{"changes": {"edit": edit.reply(), "delete": delete.reply()}}],
                          {0: 3})
    assert (merged["edit"]["duplicates"], merged["edit"]["losses"]) == (1, 0)
    assert (merged["delete"]["deliveries"], merged["delete"]["losses"]) == (1, 1)
