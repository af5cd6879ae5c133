"""spoolmq: `spoolmq broker` as a subprocess with a private data dir, default durability.

Producers call `send_batch` with 1,000 values (one request, one group-committed fsync
before the reply); consumers call `receive(max=500)` in group `bench`, which comes back
as columnar runs (one lease per run), and ack the returned messages in one call, which
the client sends as one range receipt per run. The ack waits for the fdatasync of the
group state, so the throughput workloads keep it in flight while the next receive runs,
and they keep a second receive in flight too (FETCH_DEPTH): the broker leases and encodes
batch N+1 while the client decodes and acks batch N (the client pipelines requests on its
one connection). The broker runs in its own
process, never in the benchmark's, so its memory is that process's VmRSS/VmHWM.

Also home of the memory workload (`run_rss`), which only spoolmq runs: a large backlog,
a restart over it, and a consumer that acks every other message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import HOST, PRODUCE_BATCH, Plan, free_port, memory_of, payload, spawn, wait_port
from bench.peers.base import Consumer, Fetched, Peer, PeerUnavailable, Producer

GROUP = "bench"


def spoolmq_executable() -> str | None:
    """The `spoolmq` console script of the interpreter running the benchmark, else PATH's."""
    beside = Path(sys.executable).with_name("spoolmq")
    return str(beside) if beside.exists() else shutil.which("spoolmq")


class SpoolProducer(Producer):
    def __init__(self, client: Any, topic: str) -> None:
        self._c = client
        self._topic = topic

    async def publish(self, values: Sequence[bytes]) -> None:
        await self._c.send_batch(self._topic, list(values))

    async def close(self) -> None:
        await self._c.close()


class SpoolConsumer(Consumer):
    concurrent_fetch = True  # receives are pipelined on the client's one connection

    def __init__(self, client: Any, topic: str, visibility_s: float | None = None) -> None:
        self._c = client
        self._topic = topic
        self._visibility = visibility_s

    async def fetch(self, max_messages: int, wait_s: float) -> Fetched:
        msgs = await self._c.receive(self._topic, group=GROUP, max=max_messages, wait=wait_s,
                                     visibility=self._visibility)
        return Fetched([m.value for m in msgs], msgs)

    async def ack(self, fetched: Fetched) -> None:
        if fetched.token:
            failed = await self._c.ack(fetched.token)
            if failed:
                raise RuntimeError(f"{len(failed)} acks failed, first: {failed[0]}")

    async def ack_some(self, fetched: Fetched, keep: Sequence[int]) -> None:
        if keep:
            await self._c.ack([fetched.token[i] for i in keep])

    async def close(self) -> None:
        await self._c.close()


class SpoolPeer(Peer):
    name = "spoolmq"
    durability = "sync (default): fdatasync before the ack, group commit"

    def __init__(self, durability: str | None = None) -> None:
        super().__init__()
        self.port = 0
        self._admin: Any = None
        self.data_dir: Path | None = None
        self.durability_flag = durability  # None: the broker's default (sync)

    def url(self) -> str:
        return f"tcp://{HOST}:{self.port}"

    async def start(self, workdir: Path, start_cap_s: float) -> None:
        exe = spoolmq_executable()
        if exe is None:
            raise PeerUnavailable("the spoolmq console script is not installed in this venv")
        try:
            from broker.client import Client
        except ImportError as exc:
            raise PeerUnavailable(f"broker.client cannot be imported: {exc}") from exc
        from spoolmq import __version__

        self.version = __version__
        self.client = "broker.client.Client (native TCP)"
        base = workdir / "spoolmq"
        self.data_dir = base / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        argv = [exe, "broker", "--data-dir", str(self.data_dir), "--log-dir", str(base / "logs"),
                "--host", HOST, "--tcp-port", str(self.port)]
        if self.durability_flag is not None:
            argv += ["--durability", self.durability_flag]
        # Defaults only: a SPOOLMQ_* setting in the caller's environment must not leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLMQ_")}
        self.proc = spawn(argv, workdir / "spoolmq.log", env=env, inherit=False)
        try:
            await wait_port(self.port, start_cap_s, self.proc)
        except RuntimeError as exc:
            await self.stop()
            raise PeerUnavailable(f"spoolmq broker {exc}") from exc
        self._admin = await Client(self.url(), client_id="bench-admin").connect()

    async def stop(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()
            self._admin = None
        await super().stop()

    async def _client(self, role: str) -> Any:
        from broker.client import Client

        return await Client(self.url(), client_id=f"bench-{role}").connect()

    async def create_topic(self, topic: str, max_deliveries: int | None = None) -> None:
        from broker.api import TopicConfig

        await self.delete_topic(topic)
        await self._admin.create_topic(topic, TopicConfig(max_deliveries=max_deliveries))

    async def delete_topic(self, topic: str) -> None:
        from broker.client import ClientError

        try:
            await self._admin.delete_topic(topic)
        except ClientError as exc:
            if exc.code != "topic_not_found":
                raise

    async def producer(self, topic: str) -> Producer:
        return SpoolProducer(await self._client("producer"), topic)

    async def consumer(self, topic: str, visibility_s: float | None = None) -> Consumer:
        return SpoolConsumer(await self._client("consumer"), topic, visibility_s)


# -- the memory workload: spoolmq only, since it checks the broker's own memory bounds

RSS_TOPIC = "bench_rss"
RSS_SIZE = 100  # bytes per message of the memory backlog (10M x 100 B stays under retention)
RSS_PRODUCERS = 4  # concurrent producer connections filling the backlog
RSS_VISIBILITY_S = 2.0  # lease of the ack-every-other consumer: unacked halves return soon
RSS_MAX_DELIVERIES = 3  # so the never-acked messages reach the dead letters within the run
RSS_SAMPLE_S = 1.0


@dataclass
class RssResult:
    """spoolmq broker memory with a large backlog and under an ack-every-other consumer."""

    backlog: int = 0
    fill_rate: float = 0.0
    fill_s: float = 0.0
    rss_after_fill_mib: float | None = None
    hwm_fill_mib: float | None = None
    restart_s: float | None = None
    rss_after_restart_mib: float | None = None
    consume_s: float = 0.0
    received: int = 0
    acked: int = 0
    redelivered: int = 0
    rss_max_consume_mib: float | None = None
    hwm_consume_mib: float | None = None
    error: str | None = None
    samples: list[tuple[float, float]] = field(default_factory=list)  # (t, VmRSS MiB)


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} MiB"


class _Sampler:
    """Samples VmRSS of one pid once a second; keeps the peak and a time series."""

    def __init__(self, result: RssResult, t0: float) -> None:
        self.result = result
        self.t0 = t0
        self.pid = 0
        self.peak = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            mem = memory_of(self.pid) if self.pid else None
            if mem is not None:
                self.peak = max(self.peak, mem.rss_mib)
                self.result.samples.append((time.monotonic() - self.t0, mem.rss_mib))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RSS_SAMPLE_S)


async def run_rss(workdir: Path, plan: Plan, log: Callable[[str], None]) -> RssResult:
    """Fill a fresh broker with plan.rss_backlog messages, restart it, then run a consumer
    that acks every other message for plan.rss_consume_s, sampling VmRSS throughout."""
    result = RssResult()
    peer = SpoolPeer()
    sampler = _Sampler(result, time.monotonic())
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(stop))
    try:
        await peer.start(workdir, plan.peer_start_cap_s)
        assert peer.proc is not None
        sampler.pid = peer.proc.pid
        await peer.create_topic(RSS_TOPIC, max_deliveries=RSS_MAX_DELIVERIES)
        await _fill(peer, plan, result, log)
        mem = memory_of(peer.proc.pid)
        if mem is not None:
            result.rss_after_fill_mib, result.hwm_fill_mib = mem.rss_mib, mem.hwm_mib
        log(f"memory: {result.backlog:,} msgs at {result.fill_rate:,.0f} msg/s; "
            f"VmRSS {_mib(result.rss_after_fill_mib)}, VmHWM {_mib(result.hwm_fill_mib)}")

        await peer.stop()
        t0 = time.monotonic()
        await peer.start(workdir, plan.peer_start_cap_s)
        assert peer.proc is not None
        result.restart_s = time.monotonic() - t0
        sampler.pid = peer.proc.pid
        mem = memory_of(peer.proc.pid)
        result.rss_after_restart_mib = None if mem is None else mem.rss_mib
        log(f"memory: restart with the backlog took {result.restart_s:.1f} s, "
            f"VmRSS {_mib(result.rss_after_restart_mib)}")

        sampler.peak = 0.0
        await _ack_every_other(peer, plan, result)
        mem = memory_of(peer.proc.pid)
        result.hwm_consume_mib = None if mem is None else mem.hwm_mib
        result.rss_max_consume_mib = sampler.peak
        log(f"memory: ack-every-other received {result.received:,}, acked {result.acked:,}, "
            f"redelivered {result.redelivered:,}; peak VmRSS {_mib(sampler.peak)}, "
            f"VmHWM {_mib(result.hwm_consume_mib)}")
    except Exception as exc:  # reported in the results instead of ending the run
        result.error = f"{type(exc).__name__}: {exc}"[:300]
        log(f"memory workload failed: {result.error}")
    finally:
        stop.set()
        await sampling
        with contextlib.suppress(Exception):
            await asyncio.wait_for(peer.stop(), 60)
    return result


async def _fill(peer: SpoolPeer, plan: Plan, result: RssResult,
                log: Callable[[str], None]) -> None:
    topic = RSS_TOPIC
    batch = [payload(RSS_SIZE)] * PRODUCE_BATCH
    per_producer = plan.rss_backlog // RSS_PRODUCERS
    t0 = time.monotonic()
    counts = [0] * RSS_PRODUCERS

    async def produce(i: int) -> None:
        prod = await peer.producer(topic)
        try:
            while counts[i] < per_producer and time.monotonic() - t0 < plan.rss_fill_cap_s:
                await asyncio.wait_for(prod.publish(batch), 60)
                counts[i] += len(batch)
                if i == 0 and counts[0] % 500_000 == 0:
                    log(f"memory: filled {sum(counts):,} of {plan.rss_backlog:,}")
        finally:
            await prod.close()

    async with asyncio.TaskGroup() as tg:
        for i in range(RSS_PRODUCERS):
            tg.create_task(produce(i))
    result.fill_s = time.monotonic() - t0
    result.backlog = sum(counts)
    result.fill_rate = result.backlog / result.fill_s


async def _ack_every_other(peer: SpoolPeer, plan: Plan, result: RssResult) -> None:
    cons = await peer.consumer(RSS_TOPIC, visibility_s=RSS_VISIBILITY_S)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < plan.rss_consume_s:
            fetched = await asyncio.wait_for(cons.fetch(500, 0.5), 60)
            msgs = fetched.token or []
            result.received += len(msgs)
            result.redelivered += sum(1 for m in msgs if m.delivery_count > 1)
            keep = list(range(0, len(msgs), 2))
            await asyncio.wait_for(cons.ack_some(fetched, keep), 60)
            result.acked += len(keep)
    finally:
        result.consume_s = time.monotonic() - t0
        await cons.close()
