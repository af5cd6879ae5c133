"""The asyncio facade on memory stores: sends, long-poll, settle, admin, dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from broker.api import ClientRef, OutMessage, TopicConfig
from broker.broker import Broker
from broker.clock import ManualClock
from broker.config import Config
from broker.errors import BrokerError

P = ClientRef("p1", "native", "127.0.0.1:1")
C = ClientRef("c1", "http", "127.0.0.1:2")


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    b = Broker(Config(), memory=True, clock=ManualClock(), sweep_interval_s=0)
    await b.start()
    yield b
    await b.stop()


def msgs(*values: str) -> list[OutMessage]:
    return [OutMessage(v.encode()) for v in values]


async def test_send_creates_the_topic_once_and_returns_offsets(broker: Broker) -> None:
    first = await broker.send("orders", msgs("a", "b"), P)
    assert first.created and [o.offset for o in first.outcomes] == [0, 1]
    second = await broker.send("orders", msgs("c"), P)
    assert not second.created and second.outcomes[0].offset == 2
    with pytest.raises(BrokerError) as err:
        await broker.send("missing", msgs("x"), P, create=False)
    assert err.value.code == "topic_not_found"


async def test_bad_input_gets_a_clear_error_code(broker: Broker) -> None:
    cases = [
        (broker.send("bad/name", msgs("x"), P), "invalid_topic"),
        (broker.send("t", [OutMessage(b"x" * (1024 * 1024 + 1))], P), "message_too_large"),
        (broker.send("t", msgs("x"), P, delay_s=901), "invalid_argument"),
        (broker.receive("t", "..", C), "invalid_group"),
        (broker.receive("t", "g", C, wait_s=21), "invalid_argument"),
        (broker.receive("t", "g", C, visibility_s=43_201), "invalid_argument"),
        (broker.create_topic("p", TopicConfig(partitions=0)), "invalid_argument"),
        (broker.receive("t", "g", C, max_messages=0), "invalid_argument"),
        (broker.nack(["x"], C, delay_s=-1), "invalid_argument"),
        (broker.extend(["x"], C, visibility_s=-1), "invalid_argument"),
        (broker.seek_group("nope", "g", offset=0), "topic_not_found"),
    ]
    for call, code in cases:
        with pytest.raises(BrokerError) as err:
            await call
        assert err.value.code == code
    await broker.create_topic("dup")
    with pytest.raises(BrokerError) as exists:
        await broker.create_topic("dup")
    assert exists.value.code == "topic_exists"


async def test_receive_on_an_unknown_topic_is_empty(broker: Broker) -> None:
    assert await broker.receive("nothing", "g", C) == []


async def test_long_poll_is_woken_by_a_send(broker: Broker) -> None:
    await broker.create_topic("t")
    waiting = asyncio.ensure_future(broker.receive("t", "g", C, max_messages=5, wait_s=10))
    await asyncio.sleep(0)
    assert not waiting.done()
    await broker.send("t", msgs("hello"), P)
    got = await asyncio.wait_for(waiting, 2)
    assert [d.value for d in got] == [b"hello"]


async def test_long_poll_times_out_empty(broker: Broker) -> None:
    await broker.create_topic("t")
    assert await asyncio.wait_for(broker.receive("t", "g", C, wait_s=0.05), 2) == []


async def test_long_poll_is_woken_when_a_lease_expires(broker: Broker) -> None:
    clock = broker.clock
    assert isinstance(clock, ManualClock)
    await broker.send("t", msgs("a"), P)
    (d,) = await broker.receive("t", "g", C, visibility_s=5)
    waiting = asyncio.ensure_future(broker.receive("t", "g", C, wait_s=10))
    await asyncio.sleep(0)
    clock.advance(6)
    await broker.sweep(housekeeping=False)
    (again,) = await asyncio.wait_for(waiting, 2)
    assert again.offset == d.offset and again.delivery_count == 2


async def test_ack_nack_extend_through_the_facade(broker: Broker) -> None:
    await broker.send("t", msgs("a", "b", "c"), P)
    a, b, c = await broker.receive("t", "g", C, max_messages=3)
    assert [r.error for r in await broker.ack([a.receipt], C)] == [None]
    assert [r.error for r in await broker.nack([b.receipt], C)] == [None]
    ext = await broker.extend([c.receipt], C, visibility_s=60)
    assert ext[0].error is None and ext[0].deadline is not None
    (b2,) = await broker.receive("t", "g", C, max_messages=5)
    assert b2.offset == 1 and b2.delivery_count == 2
    info = broker.describe_group("t", "g")
    assert info.in_flight == 2 and info.lag == 2 and info.ready == 0
    assert info.ack_floor == {0: 1}
    leases = broker.group_leases("t", "g")
    assert sorted(le.offset for le in leases) == [1, 2]


async def test_dead_letter_then_redrive_to_that_group_only(broker: Broker) -> None:
    await broker.create_topic("t", TopicConfig(max_deliveries=2))
    await broker.send("t", msgs("poison", "fine"), P)
    other = await broker.receive("t", "other", C, max_messages=5)
    assert len(other) == 2
    await broker.ack([d.receipt for d in other], C)
    for _ in range(2):
        got = await broker.receive("t", "g", C, max_messages=5)
        poison = [d for d in got if d.value == b"poison"]
        await broker.ack([d.receipt for d in got if d.value == b"fine"], C)
        await broker.nack([poison[0].receipt], C)
    assert await broker.receive("t", "g", C) == []
    (dl,) = broker.dead_letters("t", "g")
    assert (dl.id, dl.group, dl.offset, dl.delivery_count, dl.value) == ("0:0", "g", 0, 2,
                                                                         b"poison")
    assert "max deliveries" in dl.reason and dl.history[-1].outcome == "dead_lettered"
    assert [h.outcome for h in dl.history[:2]] == ["nacked", "nacked"]
    info = broker.describe_group("t", "g")
    assert info.dead_lettered == 1 and info.ack_floor == {0: 2} and info.lag == 0
    assert await broker.redrive("t", "g", reason_contains="no such reason") == 0
    assert await broker.redrive("t", "g") == 1
    (back,) = await broker.receive("t", "g", C)
    assert back.value == b"poison" and back.delivery_count == 1
    assert await broker.receive("t", "other", C) == []  # the other group never sees it again
    await broker.nack([back.receipt], C)
    (back2,) = await broker.receive("t", "g", C)
    await broker.nack([back2.receipt], C)
    (again,) = broker.dead_letters("t", "g")
    assert again.redrives == 1  # lineage kept across redrives


async def test_seek_replays_by_offset_and_by_time(broker: Broker) -> None:
    clock = broker.clock
    assert isinstance(clock, ManualClock)
    await broker.send("t", msgs("a", "b"), P)
    clock.advance(10)
    mark = int(clock.now() * 1000)
    await broker.send("t", msgs("c", "d"), P)
    got = await broker.receive("t", "g", C, max_messages=10)
    await broker.ack([d.receipt for d in got], C)
    info = await broker.seek_group("t", "g", offset=1)
    assert info.ack_floor == {0: 1}
    assert [d.offset for d in await broker.receive("t", "g", C, max_messages=10)] == [1, 2, 3]
    await broker.seek_group("t", "g", timestamp_ms=mark)
    assert [d.offset for d in await broker.receive("t", "g", C, max_messages=10)] == [2, 3]
    await broker.seek_group("t", "late", offset=-1)
    assert await broker.receive("t", "late", C) == []


async def test_purge_empties_the_queue_and_stales_leases(broker: Broker) -> None:
    await broker.send("t", msgs("a", "b", "c"), P)
    (a,) = await broker.receive("t", "g", C)
    info = await broker.purge_topic("t")
    assert info.messages_in_queue == 0
    assert (await broker.ack([a.receipt], C))[0].error == "stale_receipt"
    assert await broker.receive("t", "new-group", C) == []
    await broker.send("t", msgs("d"), P)
    assert [d.value for d in await broker.receive("t", "g", C)] == [b"d"]


async def test_delete_topic_and_group(broker: Broker) -> None:
    await broker.send("t", msgs("a"), P)
    await broker.receive("t", "g", C)
    await broker.delete_group("t", "g")
    with pytest.raises(BrokerError) as err:
        broker.describe_group("t", "g")
    assert err.value.code == "group_not_found"
    await broker.delete_topic("t")
    assert broker.list_topics() == []
    with pytest.raises(BrokerError) as gone:
        broker.describe_topic("t")
    assert gone.value.code == "topic_not_found"


async def test_browse_pages_with_a_cursor_and_filters(broker: Broker) -> None:
    await broker.send("t", [OutMessage(f"m{i}".encode(), key=b"k" if i % 2 else None)
                            for i in range(10)], P)
    page, cursor = await broker.browse("t", limit=4)
    assert [m.offset for m in page] == [0, 1, 2, 3] and cursor == 4
    rest, end = await broker.browse("t", offset=cursor, limit=50)
    assert [m.offset for m in rest] == [4, 5, 6, 7, 8, 9] and end is None
    keyed, _ = await broker.browse("t", key=b"k", limit=50)
    assert [m.offset for m in keyed] == [1, 3, 5, 7, 9]
    text, _ = await broker.browse("t", text="m7", limit=50)
    assert [m.value for m in text] == [b"m7"]
    assert broker.list_groups("t") == []


async def test_stopped_broker_is_unavailable() -> None:
    b = Broker(Config(), memory=True, clock=ManualClock(), sweep_interval_s=0)
    await b.start()
    await b.stop()
    with pytest.raises(BrokerError) as err:
        await b.send("t", msgs("a"), P)
    assert err.value.code == "unavailable"


async def test_create_group_at_latest_skips_the_backlog(broker: Broker) -> None:
    await broker.send("t", msgs("old1", "old2"), P)
    info = await broker.create_group("t", "tail", start="latest")
    assert info.lag == 0 and info.ack_floor == {0: 2}
    await broker.create_group("t", "all")
    await broker.create_group("t", "from1", start=1)
    await broker.send("t", msgs("new"), P)
    assert [d.value for d in await broker.receive("t", "tail", C, max_messages=9)] == [b"new"]
    assert len(await broker.receive("t", "all", C, max_messages=9)) == 3
    assert len(await broker.receive("t", "from1", C, max_messages=9)) == 2
    with pytest.raises(BrokerError) as err:
        await broker.create_group("t", "bad", start="middle")  # type: ignore[arg-type]
    assert err.value.code == "invalid_argument"
    assert "bad" not in {g.name for g in broker.list_groups("t")}


async def test_browse_work_is_bounded_and_resumes_from_the_cursor(broker: Broker) -> None:
    big = b"x" * 300_000
    for i in range(100):
        await broker.send("t", [OutMessage(big + (b"needle" if i == 99 else b""))], P)
    found, cursor = await broker.browse("t", text="needle", limit=5)
    assert found == [] and cursor is not None and 0 < cursor < 99  # bounded read, then stop
    while not found and cursor is not None:
        found, cursor = await broker.browse("t", offset=cursor, text="needle", limit=5)
    assert [m.offset for m in found] == [99]
