"""The one shape every benchmarked system is driven through.

A `Peer` starts its server as a subprocess on loopback with a private data dir, makes
and removes topics, and hands out `Producer`s and `Consumer`s, each over a connection
of its own. Drivers use each system's client the way that client recommends for
throughput; the workloads in `bench.broker` only see this interface.
"""

from __future__ import annotations

import abc
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import memory_of, terminate


class PeerUnavailable(RuntimeError):
    """The peer cannot be installed or started here; the message says why."""


@dataclass(slots=True)
class Fetched:
    """Messages handed to a consumer, not yet acked. `token` is the driver's ack handle."""

    values: list[bytes]
    token: Any = None


class Producer(abc.ABC):
    @abc.abstractmethod
    async def publish(self, values: Sequence[bytes]) -> None:
        """Send all values with every one in flight at once; return when the server
        confirmed all of them (durably, as far as the system's setting promises)."""

    @abc.abstractmethod
    async def close(self) -> None: ...


class Consumer(abc.ABC):
    # The wait a latency-measuring consumer passes to `fetch`; None: the workload's own
    # long poll, for clients whose fetch returns as soon as anything is ready.
    low_latency_wait_s: float | None = None
    # True when `ack` waits for the server's answer (and so for its fsync): the throughput
    # workloads then run it as a task while the next fetch is in flight. False when the
    # client's ack is a fire-and-forget frame that returns once written, which overlaps
    # the next fetch by itself.
    ack_confirmed: bool = True
    # True when `fetch` may be called again while an earlier call is still awaiting its
    # answer (each call then gets messages of its own): the throughput workloads keep
    # FETCH_DEPTH fetches in flight. False for clients whose fetch is one stateful pull.
    concurrent_fetch: bool = False

    @abc.abstractmethod
    async def fetch(self, max_messages: int, wait_s: float) -> Fetched:
        """Up to max_messages, waiting at most about wait_s when none are ready."""

    @abc.abstractmethod
    async def ack(self, fetched: Fetched) -> None:
        """Acknowledge everything in `fetched`; raise if the server refused any of it."""

    async def ack_some(self, fetched: Fetched, keep: Sequence[int]) -> None:
        """Acknowledge only the messages at the indexes in `keep` (default: unsupported)."""
        raise NotImplementedError

    @abc.abstractmethod
    async def close(self) -> None: ...


class Peer(abc.ABC):
    """A system under test. `start` raises PeerUnavailable when it cannot run here."""

    name: str = ""
    # How an acknowledged publish is made durable with the settings used here.
    durability: str = ""
    # The client used, with its version, for the results page.
    client: str = ""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.version: str = ""

    @abc.abstractmethod
    async def start(self, workdir: Path, start_cap_s: float) -> None: ...

    async def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    @abc.abstractmethod
    async def create_topic(self, topic: str) -> None:
        """Make an empty durable topic/stream/queue with one consumer group `bench`."""

    @abc.abstractmethod
    async def delete_topic(self, topic: str) -> None: ...

    @abc.abstractmethod
    async def producer(self, topic: str) -> Producer: ...

    @abc.abstractmethod
    async def consumer(self, topic: str) -> Consumer: ...

    def cpu_s(self) -> float:
        """CPU seconds the server process tree has used so far (0.0 when unknown)."""
        if self.proc is None:
            return 0.0
        try:
            import psutil

            root = psutil.Process(self.proc.pid)
            total = 0.0
            for p in [root, *root.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
            return total
        except Exception:  # psutil missing or the process just ended: no CPU figure
            return 0.0

    def rss_mib(self) -> float | None:
        if self.proc is None:
            return None
        mem = memory_of(self.proc.pid)
        return None if mem is None else mem.rss_mib
