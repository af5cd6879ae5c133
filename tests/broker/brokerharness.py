"""The broker test harness: the synchronous core on memory logs with a manual clock.

`CoreHarness` drives `broker.core.core.Core` directly (no asyncio): sends append to
MemoryLogs as the facade's committer would, receives and settles at the clock's now.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from broker.api import ClientRef, Delivery, OutMessage, ReceiptResult, SendOutcome, TopicConfig
from broker.clock import ManualClock
from broker.config import Config
from broker.core.core import Core
from broker.core.topic import SendPlan, TopicState
from storage.memory import MemoryLog
from storage.state import MemoryStateStore

PRODUCER = ClientRef("producer-1", "native", "10.0.0.1:5000")


class CoreHarness:
    def __init__(self, partitions: int = 1, topic_config: TopicConfig | None = None,
                 **config: Any) -> None:
        self.clock = ManualClock()
        self.config = dataclasses.replace(Config(), **config)
        self.store = MemoryStateStore()
        self.core = Core(self.config, self.store, "inc1")
        self.topic = self.add_topic("t", topic_config or TopicConfig(partitions=partitions))

    def add_topic(self, name: str, config: TopicConfig) -> TopicState:
        logs = [MemoryLog(clock_ms=lambda: int(self.clock.now() * 1000))
                for _ in range(config.partitions)]
        t = TopicState(name, config, list(logs), self.config, self.clock.now())
        self.core.add_topic(t)
        return t

    def send(self, *values: bytes | str, key: bytes | None = None, delay_s: float = 0.0,
             ids: Iterable[str | None] | None = None, topic: TopicState | None = None
             ) -> list[SendOutcome]:
        t = topic or self.topic
        id_list = list(ids) if ids is not None else [None] * len(values)
        msgs = [OutMessage(v.encode() if isinstance(v, str) else v, key, None, mid)
                for v, mid in zip(values, id_list, strict=True)]
        plan = self.core.plan_send(t, msgs, delay_s, False, self.clock.now())
        assert isinstance(plan, SendPlan)
        bases = {p: t.logs[p].append_many([e])[0] for p, e in plan.entries.items()}
        return self.core.finish_send(plan, bases, PRODUCER, self.clock.now()).outcomes

    def recv(self, n: int = 10, group: str = "g", consumer: str = "c1",
             visibility_s: float | None = None, topic: TopicState | None = None,
             auto_ack: bool = False) -> list[Delivery]:
        return self.core.receive(topic or self.topic, group, ClientRef(consumer), n,
                                 visibility_s, auto_ack, self.clock.now())

    def ack(self, *items: Delivery | str, consumer: str = "c1") -> list[ReceiptResult]:
        return self.core.settle([_receipt(i) for i in items], "ack", ClientRef(consumer),
                                self.clock.now())

    def nack(self, *items: Delivery | str, delay_s: float = 0.0) -> list[ReceiptResult]:
        return self.core.settle([_receipt(i) for i in items], "nack", ClientRef("c1"),
                                self.clock.now(), delay_s=delay_s)

    def extend(self, *items: Delivery | str, visibility_s: float) -> list[ReceiptResult]:
        return self.core.settle([_receipt(i) for i in items], "extend", ClientRef("c1"),
                                self.clock.now(), visibility_s=visibility_s)

    def group(self, name: str = "g") -> Any:
        return self.topic.groups[name]


def _receipt(item: Delivery | str) -> str:
    return item if isinstance(item, str) else item.receipt


def offsets(deliveries: Iterable[Delivery]) -> list[int]:
    return [d.offset for d in deliveries]


def values(deliveries: Iterable[Delivery]) -> list[bytes]:
    return [d.value for d in deliveries]
