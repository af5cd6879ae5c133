"""Single sends of one event-loop turn reach the broker as one batch, and every caller
still gets its own exact answer (tested over the real broker, memory store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from broker.api import BatchSendResult, ClientRef, TopicConfig
from broker.broker import Broker
from broker.errors import BrokerError
from http_gateway.coalesce import MAX_BATCH_BYTES, MAX_BATCH_MESSAGES, Placed, SendCoalescer
from spoolmq.config import Config
from tests.gateway.conftest import Live

ALICE = ClientRef("alice", "http", "127.0.0.1")
BOB = ClientRef("bob", "http", "127.0.0.1")


class CountingBroker:
    """The real broker, counting the send_columns calls it is given (and their sizes)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.calls: list[tuple[str, int]] = []

    async def send_columns(self, topic: str, values: list[bytes], client: ClientRef,
                           *args: Any, **kw: Any) -> BatchSendResult:
        self.calls.append((topic, len(values)))
        return await self.broker.send_columns(topic, values, client, *args, **kw)


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    b = Broker(Config(data_dir=tmp_path / "data"), memory=True)
    await b.start()
    yield b
    await b.stop()


async def _values(broker: Broker, topic: str, n: int) -> list[bytes]:
    got = await broker.receive(topic, "check", ALICE, max_messages=n)
    return [d.value for d in got]


async def test_one_turns_sends_are_one_call_with_each_callers_own_offset(
        broker: Broker) -> None:
    counting = CountingBroker(broker)
    co = SendCoalescer(counting)  # type: ignore[arg-type]
    values = [b"m%02d" % i for i in range(50)]
    placed = await asyncio.gather(*(co.send("t", v, ALICE) for v in values))
    assert counting.calls == [("t", 50)]
    assert placed == [Placed("t", 0, i, i == 0) for i in range(50)]
    assert await _values(broker, "t", 100) == values


async def test_a_batch_goes_early_once_it_holds_enough(broker: Broker) -> None:
    counting = CountingBroker(broker)
    co = SendCoalescer(counting)  # type: ignore[arg-type]
    many = [co.send("n", b"x", ALICE) for _ in range(MAX_BATCH_MESSAGES + 5)]
    big = b"y" * (MAX_BATCH_BYTES // 2 + 1)
    large = [co.send("b", big, ALICE) for _ in range(3)]
    placed = await asyncio.gather(*many, *large)
    assert sorted(counting.calls) == [("b", 1), ("b", 1), ("b", 1),
                                      ("n", 5), ("n", MAX_BATCH_MESSAGES)]
    assert [p.offset for p in placed[:len(many)]] == list(range(len(many)))


async def test_topics_and_clients_are_batched_apart(broker: Broker) -> None:
    counting = CountingBroker(broker)
    co = SendCoalescer(counting)  # type: ignore[arg-type]
    sends = [co.send("a", b"1", ALICE), co.send("b", b"2", ALICE), co.send("a", b"3", BOB),
             co.send("a", b"4", ALICE)]
    placed = await asyncio.gather(*sends)
    assert sorted(counting.calls) == [("a", 1), ("a", 2), ("b", 1)]
    assert {(p.topic, p.offset) for p in placed} == {("a", 0), ("a", 1), ("a", 2), ("b", 0)}
    assert broker.describe_topic("a").end_offsets == [3]
    stats = {c.client_id: c.messages_in for c in broker.snapshot().clients}
    assert stats["alice"] == 3 and stats["bob"] == 1


async def test_a_refused_batch_is_sent_one_by_one_for_exact_answers(broker: Broker) -> None:
    await broker.create_topic("small", TopicConfig(max_message_bytes=5))
    counting = CountingBroker(broker)
    co = SendCoalescer(counting)  # type: ignore[arg-type]
    sends = [co.send("small", v, ALICE) for v in (b"ok1", b"far too long", b"ok2")]
    results = await asyncio.gather(*sends, return_exceptions=True)
    assert counting.calls[0] == ("small", 3)
    assert sorted(counting.calls[1:]) == [("small", 1)] * 3
    assert isinstance(results[1], BrokerError) and results[1].code == "message_too_large"
    ok = [r for r in results if isinstance(r, Placed)]
    assert sorted(p.offset for p in ok) == [0, 1]
    assert sorted(await _values(broker, "small", 10)) == [b"ok1", b"ok2"]


async def test_a_bad_topic_name_fails_every_caller(broker: Broker) -> None:
    co = SendCoalescer(broker)
    results = await asyncio.gather(co.send("../x", b"1", ALICE), co.send("../x", b"2", ALICE),
                                   return_exceptions=True)
    assert [type(r) for r in results] == [BrokerError, BrokerError]
    assert {r.code for r in results if isinstance(r, BrokerError)} == {"invalid_topic"}


async def test_a_caller_gone_before_the_answer_leaves_the_others_answered(
        broker: Broker) -> None:
    co = SendCoalescer(broker)
    first, second = co.send("t", b"1", ALICE), co.send("t", b"2", ALICE)
    first.cancel()  # the HTTP client went away; its message was already handed over
    assert await second == Placed("t", 0, 1, False)
    await co.drain()
    assert await _values(broker, "t", 10) == [b"1", b"2"]


async def test_concurrent_http_sends_each_get_their_own_offset(live: Live) -> None:
    async def one(i: int) -> Any:
        return await live.json("POST", "/send/many", data={"message": f"hello {i}"})

    docs = await asyncio.gather(*(one(i) for i in range(64)))
    assert sorted(d["offset"] for d in docs) == list(range(64))
    assert [d["message"] for d in docs] == [f"hello {i}" for i in range(64)]
    assert sum(d["created"] for d in docs) == 1
    got = await live.json("GET", "/receive/many?max=100")
    by_offset = {m["offset"]: m["message"] for m in got["messages"]}
    assert {by_offset[d["offset"]] for d in docs} == {f"hello {i}" for i in range(64)}
