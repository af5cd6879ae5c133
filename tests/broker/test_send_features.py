"""Dedup, send delay, retention/overflow, group expiry and the snapshot numbers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from broker.api import ClientRef, OutMessage, TopicConfig
from broker.broker import Broker
from broker.clock import ManualClock
from broker.config import Config
from broker.errors import BrokerError
from tests.broker.brokerharness import CoreHarness, offsets

P = ClientRef("p1", "native", "127.0.0.1:1")
C = ClientRef("c1", "http", "127.0.0.1:2")


async def make(**config: object) -> tuple[Broker, ManualClock]:
    clock = ManualClock()
    b = Broker(dataclasses.replace(Config(), **config), memory=True, clock=clock,
               sweep_interval_s=0)
    await b.start()
    return b, clock


@pytest.fixture
async def bc() -> AsyncIterator[tuple[Broker, ManualClock]]:
    b, clock = await make()
    yield b, clock
    await b.stop()


def test_dedup_returns_the_original_offset_within_the_window() -> None:
    h = CoreHarness(dedup_window_s=120)
    first = h.send("a", "b", ids=["id-a", "id-b"])
    again = h.send("a2", "c", ids=["id-a", "id-c"])
    assert again[0].offset == first[0].offset and again[0].duplicate
    assert not again[1].duplicate and again[1].offset == 2
    same_call = h.send("x", "x", ids=["id-x", "id-x"])
    assert same_call[1].duplicate and same_call[1].offset == same_call[0].offset
    assert h.topic.logs[0].end_offset == 4
    h.clock.advance(121)
    h.core.expire_idle(h.clock.now())
    late = h.send("a3", ids=["id-a"])
    assert not late[0].duplicate and late[0].offset == 4
    assert h.store.get("dedup", "t/id-a") == [0, 4, h.clock.now() + 120]


async def test_concurrent_sends_with_one_message_id_append_once(
        bc: tuple[Broker, ManualClock]) -> None:
    b, _ = bc
    await b.create_topic("t")
    r1, r2 = await asyncio.gather(b.send("t", [OutMessage(b"a", message_id="m")], P),
                                  b.send("t", [OutMessage(b"a", message_id="m")], P))
    assert r1.outcomes[0].offset == r2.outcomes[0].offset == 0
    assert r2.outcomes[0].duplicate and not r1.outcomes[0].duplicate
    assert b.describe_topic("t").messages == 1


def test_delayed_message_is_not_delivered_early_and_does_not_block_later_ones() -> None:
    h = CoreHarness()
    h.send("late", delay_s=60)
    h.send("now")
    got = h.recv(10, visibility_s=600)
    assert [d.value for d in got] == [b"now"]
    h.clock.advance(59)
    assert h.recv(10) == []
    h.clock.advance(1)
    (late,) = h.recv(10)
    assert late.value == b"late" and late.delivery_count == 1 and late.headers is None
    assert h.group().redeliveries == 0  # deferring is not a delivery


def test_delayed_message_keeps_user_headers_without_the_reserved_one() -> None:
    h = CoreHarness()
    t = h.topic
    from broker.core.topic import SendPlan

    plan = h.core.plan_send(t, [OutMessage(b"v", headers={"trace": "1"})], 5, False,
                            h.clock.now())
    assert isinstance(plan, SendPlan)
    bases = {p: t.logs[p].append_many([e])[0] for p, e in plan.entries.items()}
    h.core.finish_send(plan, bases, P, h.clock.now())
    h.clock.advance(5)
    (d,) = h.recv()
    assert d.headers == {"trace": "1"}


async def test_refuse_overflow_sends_topic_full_while_a_group_has_not_finished() -> None:
    b, _ = await make()
    try:
        await b.create_topic("t", TopicConfig(retention_bytes=2000))
        await b.receive("t", "g", C)  # the group exists and reads from the start
        with pytest.raises(BrokerError) as err:
            for _ in range(100):
                await b.send("t", [OutMessage(b"x" * 100)], P)
        assert err.value.code == "topic_full" and err.value.retriable
        stored = b.describe_topic("t").messages
        got = await b.receive("t", "g", C, max_messages=1000)
        await b.ack([d.receipt for d in got], C)
        await b.send("t", [OutMessage(b"x" * 100)], P)  # acked: the oldest may go now
        assert b.describe_topic("t").end_offsets == [stored + 1]
    finally:
        await b.stop()


async def test_drop_oldest_overflow_counts_drops_per_group() -> None:
    b, _ = await make()
    try:
        await b.create_topic("t", TopicConfig(retention_bytes=2000, overflow="drop_oldest"))
        await b.receive("t", "g", C)
        for _ in range(100):
            await b.send("t", [OutMessage(b"x" * 100)], P)
        info = b.describe_topic("t")
        assert info.start_offsets[0] > 0 and info.bytes <= 2000
        got = await b.receive("t", "g", C, max_messages=1000)
        assert got[0].offset == info.start_offsets[0]
        assert b.core.topics["t"].groups["g"].dropped == info.start_offsets[0]
    finally:
        await b.stop()


async def test_age_retention_deletes_old_messages_in_the_sweep() -> None:
    b, clock = await make(retention_s=3600.0)
    try:
        for _ in range(5):
            await b.send("t", [OutMessage(b"old")], P)
        clock.advance(4000)
        await b.send("t", [OutMessage(b"new")], P)
        await b.sweep()
        assert b.describe_topic("t").start_offsets == [5]
        (d,) = await b.receive("t", "g", C, max_messages=10)
        assert d.value == b"new"
    finally:
        await b.stop()


async def test_idle_group_expires_after_the_idle_time() -> None:
    b, clock = await make(idle_group_expiry_s=100.0)
    try:
        await b.send("t", [OutMessage(b"a")], P)
        got = await b.receive("t", "g", C, visibility_s=10)
        await b.ack([got[0].receipt], C)
        await b.receive("t", "busy", C, visibility_s=10)
        clock.advance(99)
        await b.sweep()
        assert {g.name for g in b.list_groups("t")} == {"g", "busy"}
        clock.advance(2)
        await b.sweep()
        assert b.list_groups("t") == []
    finally:
        await b.stop()


async def test_snapshot_counts_queue_clients_and_rates(bc: tuple[Broker, ManualClock]) -> None:
    b, clock = bc
    await b.send("a", [OutMessage(b"x")] * 5, P)
    await b.send("b", [OutMessage(b"y")] * 3, ClientRef("p2"))
    snap = b.snapshot()
    assert snap.messages_in_queue == 8  # no group has read either topic: every message
    assert snap.active_producers == 2 and snap.active_consumers == 0
    got = await b.receive("a", "fast", C, max_messages=5)
    await b.ack([d.receipt for d in got], C)
    await b.receive("a", "slow", ClientRef("c2"), max_messages=2)
    snap = b.snapshot()
    # topic a: the largest backlog among its groups (slow: 5); topic b: all 3
    assert snap.messages_in_queue == 8
    (ta,) = [t for t in snap.topics if t.name == "a"]
    assert ta.messages_in_queue == 5 and ta.in_flight == 2
    assert {g.name: g.lag for g in ta.groups} == {"fast": 0, "slow": 5}
    assert snap.active_consumers == 2 and snap.in_flight == 2
    assert snap.rate_in == pytest.approx(8 / 5) and snap.rate_acks == pytest.approx(5 / 5)
    by_id = {c.client_id: c for c in snap.clients}
    assert by_id["c2"].in_flight == 2 and by_id["c1"].messages_out == 5
    assert by_id["p1"].messages_in == 5 and by_id["p1"].roles == ("producer",)
    clock.advance(31)
    snap = b.snapshot()
    assert snap.active_producers == 0 and snap.active_consumers == 0
    assert snap.rate_in == 0 and snap.oldest_unacked_age_s == pytest.approx(31)
    b.touch_client(ClientRef("p1"), "producer")
    assert b.snapshot().active_producers == 1


def test_history_is_kept_only_for_redelivered_messages() -> None:
    h = CoreHarness()
    h.send("a", "b")
    a, b = h.recv(2, visibility_s=5)
    h.ack(b)
    h.clock.advance(5)
    (a2,) = h.recv(consumer="c2")
    h.ack(a2, consumer="c2")
    hist = h.group().history
    assert list(hist) == [(0, 0)]
    assert [(e.attempt, e.consumer, e.outcome) for e in hist[(0, 0)]] == [
        (1, "c1", "expired"), (2, "c2", "acked")]
    assert offsets([a]) == [0]
