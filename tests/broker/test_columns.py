"""The columnar hot path: send_columns answers runs, receive_columns one batch per lease,
receipts derived from a batch, range receipts settling a whole receive at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from broker.api import ClientRef, DeliveryBatch, OutMessage, TopicConfig
from broker.broker import Broker
from broker.clock import ManualClock
from broker.config import Config
from broker.core.receipts import batch_range_receipt, batch_receipts
from broker.core.runs import slice_batch
from broker.errors import BrokerError

P = ClientRef("p1", "native", "127.0.0.1:1")
C = ClientRef("c1", "native", "127.0.0.1:2")


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    b = Broker(Config(), memory=True, clock=ManualClock(), sweep_interval_s=0)
    await b.start()
    yield b
    await b.stop()


async def test_send_columns_of_plain_values_answers_one_run(broker: Broker) -> None:
    first = await broker.send_columns("t", [b"a", b"b", b"c"], P)
    assert first.created and first.count == 3 and first.outcomes is None
    assert first.runs is not None and [(r.partition, r.base_offset, r.count)
                                       for r in first.runs] == [(0, 0, 3)]
    second = await broker.send_columns("t", [b"d"], P)
    assert not second.created and second.offsets() == [3]


async def test_concurrent_single_sends_share_group_commits(broker: Broker) -> None:
    await broker.create_topic("t")
    committer = broker._committer
    assert committer is not None
    groups = committer.groups
    got = await asyncio.gather(*(broker.send_columns("t", [b"%d" % i], P) for i in range(64)))
    assert sorted(r.offsets()[0] for r in got) == list(range(64))
    assert all(r.count == 1 and not r.created for r in got)
    assert committer.groups - groups <= 2  # one group, split in two while no sync runs
    assert broker.describe_topic("t").end_offsets == [64]


async def test_a_send_to_an_invalid_topic_name_is_refused(broker: Broker) -> None:
    for create in (True, False):
        with pytest.raises(BrokerError) as err:
            await broker.send_columns("../t", [b"a"], P, create=create)
        assert err.value.code == "invalid_topic"
    with pytest.raises(BrokerError) as err:
        await broker.send_columns("absent", [b"a"], P, create=False)
    assert err.value.code == "topic_not_found"


async def test_send_columns_with_keys_or_ids_answers_per_message(broker: Broker) -> None:
    await broker.create_topic("k", TopicConfig(partitions=4))
    keyed = await broker.send_columns("k", [b"a", b"b"], P, keys=[b"x", b"y"])
    assert keyed.runs is None and keyed.outcomes is not None and len(keyed.outcomes) == 2
    again = await broker.send_columns("k", [b"a"], P, keys=[b"x"], message_ids=["m1"])
    dup = await broker.send_columns("k", [b"a"], P, keys=[b"x"], message_ids=["m1"])
    assert dup.outcomes is not None and dup.outcomes[0].duplicate
    assert dup.offsets() == again.offsets()
    with pytest.raises(BrokerError) as err:
        await broker.send_columns("k", [b"a", b"b"], P, keys=[b"x"])
    assert err.value.code == "invalid_argument"


async def test_send_columns_refuses_an_oversized_value_by_index(broker: Broker) -> None:
    await broker.create_topic("small", TopicConfig(max_message_bytes=4))
    with pytest.raises(BrokerError) as err:
        await broker.send_columns("small", [b"ok", b"too long"], P)
    assert err.value.code == "message_too_large" and "message 1" in err.value.message


async def test_receive_columns_is_one_batch_per_lease_with_shared_fields(broker: Broker
                                                                         ) -> None:
    await broker.send_columns("t", [b"%d" % i for i in range(5)], P)
    await broker.send_columns("t", [b"%d" % i for i in range(5, 8)], P)
    (batch,) = await broker.receive_columns("t", "g", C, max_messages=6)
    assert isinstance(batch, DeliveryBatch)
    assert (batch.partition, batch.offset, len(batch)) == (0, 0, 6)
    assert batch.values == [b"%d" % i for i in range(6)]
    assert batch.keys is None and batch.headers is None and batch.delivery_counts == 1
    assert isinstance(batch.timestamps, int)
    assert batch.incarnation == broker.incarnation and batch.group == "g"


async def test_batch_receipts_match_the_per_message_receive(broker: Broker) -> None:
    await broker.send_columns("t", [b"a", b"b"], P)
    (batch,) = await broker.receive_columns("t", "g1", C, max_messages=2)
    await broker.send("t", [OutMessage(b"c")], P)
    singles = await broker.receive("t", "g2", C, max_messages=3)
    assert [d.value for d in singles] == [b"a", b"b", b"c"]
    receipts = batch_receipts(batch)
    assert [r.split(":")[3] for r in receipts] == ["0", "1"]
    assert receipts[0].startswith(f"{broker.incarnation}:{batch.lease_id}:0:")
    assert [r.error for r in await broker.ack(receipts, C)] == [None, None]


async def test_a_range_receipt_acks_a_whole_receive_with_one_commit(broker: Broker) -> None:
    await broker.send_columns("t", [b"m"] * 500, P)
    (batch,) = await broker.receive_columns("t", "g", C, max_messages=500)
    store = broker._store
    assert store is not None
    commits = 0
    real = store.commit

    async def counting() -> None:
        nonlocal commits
        commits += 1
        await real()

    store.commit = counting  # type: ignore[method-assign]  # counting wrapper
    (result,) = await broker.ack([batch_range_receipt(batch)], C)
    assert result.error is None and commits == 1
    info = broker.describe_group("t", "g")
    assert info.ack_floor == {0: 500} and info.in_flight == 0
    (again,) = await broker.ack([batch_range_receipt(batch)], C)
    assert again.error == "stale_receipt"


async def test_a_redelivered_batch_carries_per_message_counts(broker: Broker) -> None:
    await broker.send_columns("t", [b"a", b"b", b"c"], P)
    (batch,) = await broker.receive_columns("t", "g", C, max_messages=3)
    await broker.nack([batch_range_receipt(batch, 0, 2)], C)
    first = await broker.receive_columns("t", "g", C, max_messages=3)
    assert [(b.offset, len(b), b.delivery_counts) for b in first] == [(0, 2, 2)]


def test_slice_batch_keeps_the_lease_and_moves_the_offset() -> None:
    b = DeliveryBatch("t", "g", 1, 10, [b"a", b"b", b"c"], [b"k", None, None], None,
                      [1, 2, 3], 1, 7, 9.0, "inc")
    part = slice_batch(b, 1, 3)
    assert (part.offset, part.values, part.keys, part.timestamps) == (11, [b"b", b"c"],
                                                                      [None, None], [2, 3])
    assert batch_range_receipt(part) == "inc:7:1:11-12:t:g"
    assert batch_range_receipt(part, 1, 2) == "inc:7:1:12:t:g"
