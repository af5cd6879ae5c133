"""DESIGN.md's guarantees on the file store: FileLog + FileStateStore on a real tmp_path,
restart = stop + a new Broker on the same directory; kill -9 = SimFileSystem.power_cut."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path

import pytest

from broker.api import ClientRef, OutMessage, TopicConfig
from broker.broker import Broker
from broker.clock import ManualClock
from broker.config import Config
from broker.errors import BrokerError
from storage.faults import SimFileSystem

P = ClientRef("p1")
C = ClientRef("c1")
C2 = ClientRef("c2")


def config(path: Path | str, **kw: object) -> Config:
    return dataclasses.replace(Config(), data_dir=Path(path), segment_bytes=4096, **kw)


async def started(cfg: Config, clock: ManualClock, fs: SimFileSystem | None = None) -> Broker:
    b = Broker(cfg, fs=fs, clock=clock, sweep_interval_s=0)
    await b.start()
    return b


def values(n: int, prefix: str = "m") -> list[OutMessage]:
    return [OutMessage(f"{prefix}{i}".encode()) for i in range(n)]


async def test_acknowledged_sends_and_topic_config_survive_a_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    b = await started(config(tmp_path), clock)
    await b.create_topic("orders", TopicConfig(partitions=3, max_deliveries=4))
    for i in range(20):
        await b.send("orders", [OutMessage(f"v{i}".encode(), key=str(i).encode())], P)
    await b.stop()
    b = await started(config(tmp_path), clock)
    try:
        info = b.describe_topic("orders")
        assert info.config.partitions == 3 and info.config.max_deliveries == 4
        assert info.messages == 20
        got = await b.receive("orders", "g", C, max_messages=100)
        assert sorted(d.value for d in got) == sorted(f"v{i}".encode() for i in range(20))
    finally:
        await b.stop()


async def test_acked_messages_never_come_back_and_unacked_do_after_restart(
        tmp_path: Path) -> None:
    clock = ManualClock()
    b = await started(config(tmp_path), clock)
    await b.send("t", values(10), P)
    got = await b.receive("t", "g", C, max_messages=10)
    acked = [d for d in got if d.offset % 3 == 0]
    await b.ack([d.receipt for d in acked], C)
    old_receipts = [d.receipt for d in got if d.offset % 3]
    old_incarnation = b.incarnation
    await b.stop()
    b = await started(config(tmp_path), clock)
    try:
        assert b.incarnation != old_incarnation
        stale = await b.ack(old_receipts, C)
        assert {r.error for r in stale} == {"stale_receipt"}
        again = await b.receive("t", "g", C, max_messages=100)
        assert [d.offset for d in again] == [1, 2, 4, 5, 7, 8]
        assert {d.delivery_count for d in again} == {2}  # the first delivery is remembered
        await b.ack([d.receipt for d in again], C)
        assert b.describe_group("t", "g").ack_floor == {0: 10}
    finally:
        await b.stop()


async def test_every_group_gets_every_message_across_consumer_crash_and_restart(
        tmp_path: Path) -> None:
    clock = ManualClock()
    b = await started(config(tmp_path), clock)
    await b.send("t", values(6), P)
    first = await b.receive("t", "a", C, max_messages=3, visibility_s=5)
    await b.ack([first[0].receipt], C)
    clock.advance(6)  # consumer c1 "crashed": its lease on 1 and 2 expires
    seen_a = {0} | {d.offset for d in await b.receive("t", "a", C2, max_messages=100)}
    await b.stop()
    b = await started(config(tmp_path), clock)
    try:
        after = await b.receive("t", "a", C2, max_messages=100)
        seen_a |= {d.offset for d in after}
        seen_b = {d.offset for d in await b.receive("t", "b", C2, max_messages=100)}
        assert seen_a == seen_b == set(range(6))
    finally:
        await b.stop()


async def test_dead_letters_dedup_ids_and_counts_survive_a_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    b = await started(config(tmp_path), clock)
    await b.create_topic("t", TopicConfig(max_deliveries=2))
    await b.send("t", [OutMessage(b"poison", message_id="m-1")], P)
    for _ in range(2):
        (d,) = await b.receive("t", "g", C)
        await b.nack([d.receipt], C)
    await b.stop()
    b = await started(config(tmp_path), clock)
    try:
        (dl,) = b.dead_letters("t", "g")
        assert dl.offset == 0 and dl.delivery_count == 2 and dl.value == b"poison"
        assert await b.receive("t", "g", C) == []
        dup = await b.send("t", [OutMessage(b"poison", message_id="m-1")], P)
        assert dup.outcomes[0].duplicate and dup.outcomes[0].offset == 0
        assert await b.redrive("t", "g", ids=[dl.id]) == 1
    finally:
        await b.stop()
    b = await started(config(tmp_path), clock)
    try:
        (back,) = await b.receive("t", "g", C)
        assert back.value == b"poison"
        assert b.dead_letters("t", "g") == []
    finally:
        await b.stop()


async def test_purge_and_delete_survive_a_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    b = await started(config(tmp_path), clock)
    await b.send("purged", values(5), P)
    await b.send("gone", values(5), P)
    await b.purge_topic("purged")
    await b.delete_topic("gone")
    await b.stop()
    b = await started(config(tmp_path), clock)
    try:
        assert [t.name for t in b.list_topics()] == ["purged"]
        assert b.describe_topic("purged").messages_in_queue == 0
        assert await b.receive("purged", "new", C) == []
    finally:
        await b.stop()


async def test_a_second_broker_on_a_locked_directory_is_refused(tmp_path: Path) -> None:
    b = await started(config(tmp_path), ManualClock())
    try:
        other = Broker(config(tmp_path), sweep_interval_s=0)
        with pytest.raises(BrokerError) as err:
            await other.start()
        assert err.value.code == "unavailable" and str(tmp_path) in err.value.message
    finally:
        await b.stop()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_kill_9_keeps_acknowledged_sends_and_returned_acks(seed: int) -> None:
    fs = SimFileSystem()
    clock = ManualClock()
    cfg = config("/data")
    b = await started(cfg, clock, fs)
    sent: list[int] = []
    for i in range(30):
        r = await b.send("t", [OutMessage(f"m{i}".encode())], P)
        sent.append(r.outcomes[0].offset)
    got = await b.receive("t", "g", C, max_messages=30)
    acked = {d.offset for d in got if d.offset % 2 == 0}
    await b.ack([d.receipt for d in got if d.offset in acked], C)
    # a send still in flight when the power goes: not acknowledged, so it may be lost
    in_flight = asyncio.ensure_future(b.send("t", values(5, "late"), P))
    await asyncio.sleep(0)
    fs.power_cut(random.Random(seed))  # kill -9: the old broker is abandoned, not stopped
    b2 = await started(cfg, clock, fs)
    try:
        info = b2.describe_topic("t")
        assert info.end_offsets[0] >= len(sent)
        again = await b2.receive("t", "g", C, max_messages=100)
        offsets = {d.offset for d in again}
        assert offsets >= set(sent) - acked and not offsets & acked
        assert all(d.delivery_count == 1 for d in again if d.offset >= 30)
    finally:
        await b2.stop()
        in_flight.cancel()
        await asyncio.gather(in_flight, return_exceptions=True)


async def test_fsync_failure_is_fatal_and_reported() -> None:
    fs = SimFileSystem()
    fatal: list[BaseException] = []
    b = Broker(config("/data"), fs=fs, clock=ManualClock(), sweep_interval_s=0,
               on_fatal=fatal.append)
    await b.start()
    await b.send("t", values(1), P)
    fs.fail_fsync_next(5)
    with pytest.raises(BrokerError) as err:
        await b.send("t", values(1), P)
    assert err.value.code == "fsync_failed"
    assert fatal
    with pytest.raises(BrokerError) as later:
        await b.send("t", values(1), P)
    assert later.value.code == "fsync_failed"
    await b.stop()


async def test_disk_full_refuses_the_send_and_keeps_serving() -> None:
    fs = SimFileSystem()
    b = Broker(config("/data"), fs=fs, clock=ManualClock(), sweep_interval_s=0)
    await b.start()
    try:
        await b.send("t", values(3), P)
        fs.set_free_bytes(10)
        with pytest.raises(BrokerError) as err:
            await b.send("t", [OutMessage(b"x" * 1000)], P)
        assert err.value.code == "storage_full"
        fs.set_free_bytes(None)
        got = await b.receive("t", "g", C, max_messages=10)
        assert [d.offset for d in got] == [0, 1, 2]
    finally:
        await b.stop()


async def test_one_consumer_at_a_time_and_first_deliveries_in_order_on_disk(
        tmp_path: Path) -> None:
    clock = ManualClock()
    b = await started(config(tmp_path), clock)
    try:
        await b.create_topic("t", TopicConfig(partitions=2))
        for i in range(40):
            await b.send("t", [OutMessage(f"m{i}".encode(), key=str(i % 5).encode())], P)
        holders: dict[tuple[int, int], str] = {}
        last_first: dict[int, int] = {}
        for round_ in range(12):
            who = ClientRef(f"c{round_ % 3}")
            got = await b.receive("t", "g", who, max_messages=5, visibility_s=10)
            for d in got:
                key = (d.partition, d.offset)
                assert key not in holders, f"{key} leased twice at once"
                holders[key] = who.client_id
                if d.delivery_count == 1:
                    assert d.offset > last_first.get(d.partition, -1)
                    last_first[d.partition] = d.offset
        assert len(holders) == 40
    finally:
        await b.stop()


async def test_stop_ends_a_waiting_long_poll(tmp_path: Path) -> None:
    b = await started(config(tmp_path), ManualClock())
    await b.create_topic("t")
    waiting = asyncio.ensure_future(b.receive("t", "g", C, wait_s=15))
    await asyncio.sleep(0)
    await b.stop()
    assert await asyncio.wait_for(waiting, 2) == []


@pytest.mark.parametrize("durability", ["interval:5", "none"])
async def test_opt_out_durability_modes_keep_everything_over_a_clean_restart(
        tmp_path: Path, durability: str) -> None:
    clock = ManualClock()
    b = await started(config(tmp_path, durability=durability), clock)
    await b.send("t", values(10), P)
    got = await b.receive("t", "g", C, max_messages=4)
    await b.ack([d.receipt for d in got], C)
    await b.stop()
    b = await started(config(tmp_path, durability=durability), clock)
    try:
        rest = await b.receive("t", "g", C, max_messages=100)
        assert [d.offset for d in rest] == list(range(4, 10))
    finally:
        await b.stop()


async def test_failed_start_reports_and_releases_the_lock(tmp_path: Path) -> None:
    bad = tmp_path / "topics" / "t" / "topic.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    b = Broker(config(tmp_path), clock=ManualClock(), sweep_interval_s=0)
    with pytest.raises(BrokerError) as err:
        await b.start()
    assert err.value.code == "corrupt_record" and "topic.json" in err.value.message
    bad.unlink()
    again = await started(config(tmp_path), ManualClock())  # the lock was released
    await again.stop()
