"""The broker against a reference model, step by step (hypothesis RuleBasedStateMachine).

The broker runs on FileLog + FileStateStore over a SimFileSystem with a ManualClock;
"power cut" abandons it mid-flight (kill -9) and starts a new one on what was
fsynced. After every step: no acknowledged send is lost; no acked message is
delivered again to that group; no two consumers of a group hold one message at once
within an incarnation; first deliveries follow offset order; stale receipts are
refused and change nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from broker.api import ClientRef, Delivery, OutMessage, TopicConfig
from broker.broker import Broker
from broker.clock import ManualClock
from broker.config import Config
from storage.faults import SimFileSystem

GROUPS = ("g1", "g2")
CONSUMERS = ("c1", "c2", "c3")
PARTITIONS = 2
Key = tuple[str, int, int]  # (group, partition, offset)


class BrokerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.fs = SimFileSystem()
        self.clock = ManualClock()
        self.cfg = dataclasses.replace(Config(), data_dir=Path("/data"), segment_bytes=2048)
        self.broker = self._start()
        self.run(self.broker.create_topic("t", TopicConfig(partitions=PARTITIONS,
                                                           max_deliveries=1000)))
        self.sent: dict[tuple[int, int], bytes] = {}  # acknowledged sends
        self.acked: set[Key] = set()
        self.leases: dict[Key, tuple[str, float, str]] = {}  # -> (consumer, deadline, receipt)
        self.held: list[Delivery] = []  # receipts consumers still have (some go stale)
        self.old_receipts: list[str] = []  # from earlier incarnations
        self.delivered: set[Key] = set()
        self.first_high: dict[tuple[str, int], int] = {}
        self.counter = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _start(self) -> Broker:
        b = Broker(self.cfg, fs=self.fs, clock=self.clock, sweep_interval_s=0)
        self.loop.run_until_complete(b.start())
        return b

    def teardown(self) -> None:
        self.run(self.broker.stop())
        self.loop.close()

    def _live(self, key: Key) -> tuple[str, float, str] | None:
        lease = self.leases.get(key)
        if lease is None or lease[1] <= self.clock.now():
            return None
        return lease

    @initialize(n=st.integers(5, 30))
    def backlog(self, n: int) -> None:
        self.send(n, False)

    @rule(n=st.integers(1, 6), keyed=st.booleans())
    def send(self, n: int, keyed: bool) -> None:
        msgs = []
        for _ in range(n):
            self.counter += 1
            key = str(self.counter % 3).encode() if keyed else None
            msgs.append(OutMessage(f"v{self.counter}".encode(), key=key))
        res = self.run(self.broker.send("t", msgs, ClientRef("p")))
        for m, o in zip(msgs, res.outcomes, strict=True):
            assert (o.partition, o.offset) not in self.sent
            self.sent[(o.partition, o.offset)] = m.value

    @rule(group=st.sampled_from(GROUPS), consumer=st.sampled_from(CONSUMERS),
          n=st.integers(1, 8), vis=st.sampled_from([1.0, 5.0, 30.0]),
          then=st.sampled_from(["keep", "ack", "ack some", "nack"]), data=st.data())
    def receive_then(self, group: str, consumer: str, n: int, vis: float, then: str,
                     data: st.DataObject) -> None:
        got = self.receive(group, consumer, n, vis)
        if then == "ack":
            self._settle(data, "ack", got)
        elif then == "ack some":
            self._settle(data, "ack", got[::2])
        elif then == "nack":
            self._settle(data, "nack", got[:1])

    def receive(self, group: str, consumer: str, n: int, vis: float) -> list[Delivery]:
        got = self.run(self.broker.receive("t", group, ClientRef(consumer), max_messages=n,
                                           visibility_s=vis))
        assert len(got) <= n
        now = self.clock.now()
        firsts: dict[int, list[int]] = {}
        for d in got:
            key = (group, d.partition, d.offset)
            assert (d.partition, d.offset) in self.sent, "delivered something never sent"
            assert d.value == self.sent[(d.partition, d.offset)]
            assert key not in self.acked, f"acked message delivered again: {key}"
            assert self._live(key) is None, f"two consumers hold {key} at once"
            if key not in self.delivered:
                firsts.setdefault(d.partition, []).append(d.offset)
                self.delivered.add(key)
            self.leases[key] = (consumer, now + vis, d.receipt)
            self.held.append(d)
        for p, offs in firsts.items():
            high = self.first_high.get((group, p), -1)
            assert offs == sorted(offs) and offs[0] > high, "first deliveries out of order"
            self.first_high[(group, p)] = offs[-1]
        return got

    def _pick(self, data: st.DataObject) -> list[Delivery]:
        if not self.held:
            return []
        if data.draw(st.booleans()):  # the newest receipts: mostly still valid
            return self.held[-data.draw(st.integers(1, 6)):]
        return list(data.draw(st.lists(st.sampled_from(self.held), max_size=6)))

    def _expected_valid(self, d: Delivery) -> bool:
        key = ("g1" if d.receipt.endswith(":g1") else "g2", d.partition, d.offset)
        lease = self._live(key)
        return lease is not None and lease[2] == d.receipt

    @rule(data=st.data(), op=st.sampled_from(["ack", "nack", "extend"]))
    def settle(self, data: st.DataObject, op: str) -> None:
        self._settle(data, op, self._pick(data))

    @rule(data=st.data(), k=st.integers(1, 8))
    def ack_newest(self, data: st.DataObject, k: int) -> None:
        self._settle(data, "ack", self.held[-k:])

    def _settle(self, data: st.DataObject, op: str, chosen: list[Delivery]) -> None:
        receipts = [d.receipt for d in chosen]
        extra = data.draw(st.lists(st.sampled_from(self.old_receipts), max_size=2)) \
            if self.old_receipts else []
        expect: list[bool] = []
        seen: set[str] = set()
        for d in chosen:
            expect.append(self._expected_valid(d) and d.receipt not in seen)
            seen.add(d.receipt)
        client = ClientRef("c1")
        if op == "ack":
            results = self.run(self.broker.ack(receipts + extra, client))
        elif op == "nack":
            results = self.run(self.broker.nack(receipts + extra, client))
        else:
            results = self.run(self.broker.extend(receipts + extra, client, visibility_s=20.0))
        for d, ok, r in zip(chosen, expect, results, strict=False):
            assert (r.error is None) == ok, (op, d.receipt, r)
            if not ok:
                assert r.error == "stale_receipt"
                continue
            key = ("g1" if d.receipt.endswith(":g1") else "g2", d.partition, d.offset)
            if op == "ack":
                self.acked.add(key)
                del self.leases[key]
            elif op == "nack":
                del self.leases[key]
            else:
                consumer, _, receipt = self.leases[key]
                self.leases[key] = (consumer, self.clock.now() + 20.0, receipt)
        for r in results[len(chosen):]:
            assert r.error == "stale_receipt"

    @rule(seconds=st.sampled_from([0.5, 2.0, 6.0, 40.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def _new_incarnation(self) -> None:
        self.old_receipts.extend(d.receipt for d in self.held[-20:])
        self.held.clear()
        self.leases.clear()
        self.broker = self._start()

    @rule(seed=st.integers(0, 1000))
    def power_cut(self, seed: int) -> None:
        self.fs.power_cut(random.Random(seed))
        self._new_incarnation()

    @rule()
    def restart(self) -> None:
        self.run(self.broker.stop())
        self._new_incarnation()

    @invariant()
    def no_acknowledged_send_lost(self) -> None:
        ends = self.broker.describe_topic("t").end_offsets
        for (p, off) in self.sent:
            assert off < ends[p]

    @invariant()
    def floors_only_cover_acked_messages(self) -> None:
        for group in GROUPS:
            try:
                info = self.broker.describe_group("t", group)
            except Exception:
                continue
            for p, floor in info.ack_floor.items():
                for off in range(floor):
                    if (p, off) in self.sent:
                        assert (group, p, off) in self.acked, (group, p, off, floor)

    @rule(group=st.sampled_from(GROUPS))
    def drain_sees_every_unacked_message(self, group: str) -> None:
        """Everything sent and not acked by `group` is still owed to it."""
        self.clock.advance(31.0)  # every lease has expired
        self.leases.clear()
        seen: set[tuple[int, int]] = set()
        for _ in range(50):
            got = self.run(self.broker.receive("t", group, ClientRef("drain"),
                                               max_messages=1000, visibility_s=1.0))
            if not got:
                break
            for d in got:
                assert (group, d.partition, d.offset) not in self.acked
                self.delivered.add((group, d.partition, d.offset))
                seen.add((d.partition, d.offset))
            self.clock.advance(0.0)
            break
        owed = {k for k in self.sent if (group, *k) not in self.acked}
        assert owed <= seen, f"lost for {group}: {sorted(owed - seen)[:5]}"
        self.clock.advance(1.0)
        self.held = [d for d in self.held if not d.receipt.endswith(f":{group}")]


BrokerMachine.TestCase.settings = settings(stateful_step_count=40)
TestBrokerMachine = BrokerMachine.TestCase
