"""The broker benchmark: spoolmq side by side with Redis Streams, NATS JetStream and RabbitMQ.

    .venv/bin/python -m bench.broker [--quick] [--peers redis,nats,rabbitmq,spoolmq]

Every system runs as a subprocess on 127.0.0.1 with a private data dir under one temp
dir, started and torn down by this script. For 100 B and 1 KiB messages it measures
produce throughput, consume+ack throughput of the produced backlog, end-to-end
throughput with producer and consumer running together, and latency percentiles at a
paced 5,000 msg/s; then, when spoolmq's consume+ack is below its target, the same
consume+ack on a spoolmq broker without fsync to show what the fsync costs; then
spoolmq's broker memory with a large backlog and with a consumer
that acks every other message. Systems are interleaved workload by workload so a noisy
moment on the shared machine falls on all of them. Writes bench/results/broker.md and
broker.png. Every loop is bounded by a message count and a time cap.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bench.common import (
    ACK_DEPTH,
    FETCH_DEPTH,
    FETCH_MAX,
    FULL,
    LATENCY_RATE,
    LATENCY_TICK_S,
    PRODUCE_BATCH,
    QUICK,
    Plan,
    payload,
    percentile,
    stamp_of,
    stamped,
)
from bench.peers import BASELINE, PEERS, Consumer, Fetched, Peer, Producer, start_peers
from bench.peers.spoolmq import RssResult, SpoolPeer, run_rss
from spoolmq.gc_tuning import pace_collections

RESULTS = Path(__file__).resolve().parent / "results"
CALL_CAP_S = 60.0  # one publish/fetch/ack call that takes longer than this is a failure
POLL_S = 0.5  # long-poll wait of throughput consumers
DRAIN_CAP_S = 10.0  # after the producer stops, how long a consumer may take to catch up

T = TypeVar("T")


async def bounded(aw: Awaitable[T]) -> T:
    return await asyncio.wait_for(aw, CALL_CAP_S)


@dataclass
class Outcome:
    """One workload on one system: the headline value plus what explains it."""

    value: float | None = None  # msg/s, or ms for latency
    p50: float | None = None
    p99: float | None = None
    p999: float | None = None
    detail: str = ""
    error: str | None = None
    # latency only: (received, offered); the percentiles mean little when the system did
    # not carry the offered rate
    carried: tuple[int, int] | None = None
    wall_s: float | None = None
    server_cpu_s: float | None = None
    client_cpu_s: float | None = None
    consumer: ConsumerTimes | None = None  # throughput consumers only

    @property
    def sustained(self) -> bool:
        return self.carried is None or self.carried[0] >= self.carried[1]


@dataclass
class Table:
    """Outcomes by (workload, size) then by peer key, every round kept."""

    rows: dict[tuple[str, int], dict[str, list[Outcome]]] = field(default_factory=dict)

    def add(self, workload: str, size: int, key: str, outcome: Outcome) -> None:
        self.rows.setdefault((workload, size), {}).setdefault(key, []).append(outcome)

    def best(self, workload: str, size: int, key: str) -> Outcome | None:
        """The best round: highest throughput, or lowest p99 for latency."""
        runs = [o for o in self.rows.get((workload, size), {}).get(key, []) if o.error is None]
        if not runs:
            errs = self.rows.get((workload, size), {}).get(key, [])
            return errs[-1] if errs else None
        if workload == "latency":
            return min(runs, key=lambda o: (not o.sustained,
                                            o.p99 if o.p99 is not None else float("inf")))
        return max(runs, key=lambda o: o.value or 0.0)


class CpuMeter:
    """CPU seconds used by the server and by this (client) process over one workload."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.server0 = peer.cpu_s()
        self.client0 = time.process_time()
        self.server = self.client = 0.0

    def stop(self) -> CpuMeter:
        self.server = self.peer.cpu_s() - self.server0
        self.client = time.process_time() - self.client0
        return self

    def __str__(self) -> str:
        return f"CPU server {self.server:.1f} s, clients {self.client:.1f} s"


@dataclass
class ConsumerTimes:
    """Where a throughput consumer's wall time went, as seen from the client."""

    fetches: int = 0
    fetch_s: float = 0.0  # awaiting fetch (its round trip, or the wait for pushed messages)
    ack_block_s: float = 0.0  # awaiting acks: the consumer could not fetch meanwhile
    acks: int = 0
    ack_rtt_s: float = 0.0  # sum over acks of start to answer, overlapped or not

    def __str__(self) -> str:
        rtt = self.ack_rtt_s / self.acks * 1000 if self.acks else 0.0
        return (f"{self.fetches:,} fetches {self.fetch_s:.1f} s, blocked on acks "
                f"{self.ack_block_s:.1f} s, ack round trip mean {rtt:.1f} ms")


class AckingConsumer:
    """A throughput consumer: fetch, then ack what came, the way each client is fastest.

    When the driver allows concurrent fetches (`Consumer.concurrent_fetch`), FETCH_DEPTH
    of them are in flight: fetch N+1 is issued before fetch N's messages are handed
    over, so the server prepares the next batch while the client decodes and acks this
    one. An ack that waits for the server (`Consumer.ack_confirmed`) runs as a task while the
    next fetch is in flight, at most ACK_DEPTH of them outstanding; other acks are
    awaited in line since they return once written. A message counts as consumed when
    its ack returned.
    """

    def __init__(self, cons: Consumer) -> None:
        self.cons = cons
        self.depth = ACK_DEPTH if cons.ack_confirmed else 0
        self.fetch_depth = FETCH_DEPTH if cons.concurrent_fetch else 1
        self._fetches: deque[asyncio.Task[Fetched]] = deque()
        self.times = ConsumerTimes()
        self.fetched = 0
        self.acked = 0
        self.last_ack = time.monotonic()
        self._pending: deque[tuple[asyncio.Task[float], int]] = deque()

    async def fetch(self, max_messages: int, wait_s: float, want: int | None = None
                    ) -> Fetched:
        """The oldest fetch in flight, after topping up to `fetch_depth` fetches in flight;
        with `want`, no extra fetch is issued once those in flight could bring the
        messages fetched so far to `want` (it would only wait out its long poll)."""
        fetches = self._fetches
        while len(fetches) < self.fetch_depth and (
                not fetches or want is None
                or self.fetched + len(fetches) * max_messages < want):
            fetches.append(asyncio.create_task(bounded(self.cons.fetch(max_messages, wait_s))))
        t0 = time.perf_counter()
        fetched = await fetches[0]
        fetches.popleft()
        self.times.fetch_s += time.perf_counter() - t0
        self.times.fetches += 1
        self.fetched += len(fetched.values)
        return fetched

    async def _ack(self, fetched: Fetched) -> float:
        t0 = time.perf_counter()
        await bounded(self.cons.ack(fetched))
        return time.perf_counter() - t0

    async def ack(self, fetched: Fetched) -> None:
        if fetched.values:
            task = asyncio.create_task(self._ack(fetched))
            self._pending.append((task, len(fetched.values)))
        await self._settle(self.depth)

    async def drain(self) -> None:
        await self._settle(0)

    async def _settle(self, keep: int) -> None:
        """Collect finished acks, waiting while more than `keep` are outstanding."""
        while self._pending and (len(self._pending) > keep or self._pending[0][0].done()):
            task, n = self._pending[0]
            t0 = time.perf_counter()
            rtt = await task
            self.times.ack_block_s += time.perf_counter() - t0
            self._pending.popleft()
            self.times.acks += 1
            self.times.ack_rtt_s += rtt
            self.acked += n
            self.last_ack = time.monotonic()

    async def abandon(self) -> None:
        tasks: list[asyncio.Task[Any]] = [t for t, _ in self._pending]
        tasks += self._fetches
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pending.clear()
        self._fetches.clear()


async def _close(*drivers: Producer | Consumer | None) -> None:
    for d in drivers:
        if d is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(d.close(), 10)


async def produce_consume(peer: Peer, topic: str, size: int, plan: Plan
                          ) -> tuple[Outcome, Outcome]:
    """Produce up to plan.produce_count messages, then consume+ack that backlog."""
    await bounded(peer.create_topic(topic))
    batch = [payload(size)] * PRODUCE_BATCH
    prod = await bounded(peer.producer(topic))
    cpu = CpuMeter(peer)
    try:
        sent = 0
        t0 = time.monotonic()
        while sent < plan.produce_count and time.monotonic() - t0 < plan.produce_cap_s:
            await bounded(prod.publish(batch))
            sent += len(batch)
        produce_s = time.monotonic() - t0
    finally:
        await _close(prod)
    cpu.stop()
    produced = Outcome(sent / produce_s, detail=f"{sent:,} msgs in {produce_s:.1f} s; {cpu}",
                       wall_s=produce_s, server_cpu_s=cpu.server, client_cpu_s=cpu.client)

    cpu = CpuMeter(peer)
    t0 = time.monotonic()
    cons = await bounded(peer.consumer(topic))
    acking = AckingConsumer(cons)
    try:
        while acking.fetched < sent and time.monotonic() - t0 < plan.consume_cap_s:
            await acking.ack(await acking.fetch(FETCH_MAX, POLL_S, want=sent))
        await acking.drain()
        consume_s = time.monotonic() - t0
    finally:
        await acking.abandon()
        await _close(cons)
        with contextlib.suppress(Exception):
            await bounded(peer.delete_topic(topic))
    cpu.stop()
    got = acking.acked
    consumed = Outcome(got / consume_s,
                       detail=f"{got:,} of {sent:,} in {consume_s:.1f} s; {cpu}; "
                       f"{acking.times}",
                       wall_s=consume_s, server_cpu_s=cpu.server, client_cpu_s=cpu.client,
                       consumer=acking.times)
    return produced, consumed


async def end_to_end(peer: Peer, topic: str, size: int, plan: Plan) -> Outcome:
    """Producer and consumer at full speed together; rate = messages consumed / wall time."""
    await bounded(peer.create_topic(topic))
    batch = [payload(size)] * PRODUCE_BATCH
    prod: Producer | None = None
    cons: Consumer | None = None
    try:
        cons = await bounded(peer.consumer(topic))
        prod = await bounded(peer.producer(topic))
        state = {"sent": 0, "producing": 1}
        cpu = CpuMeter(peer)
        t0 = time.monotonic()

        async def produce(p: Producer) -> None:
            try:
                while (state["sent"] < plan.e2e_count
                       and time.monotonic() - t0 < plan.e2e_cap_s):
                    await bounded(p.publish(batch))
                    state["sent"] += len(batch)
            finally:
                state["producing"] = 0

        acking = AckingConsumer(cons)
        acking.last_ack = t0

        async def consume() -> None:
            deadline = t0 + plan.e2e_cap_s + DRAIN_CAP_S
            try:
                while time.monotonic() < deadline:
                    if not state["producing"] and acking.fetched >= state["sent"]:
                        break
                    want = None if state["producing"] else state["sent"]
                    await acking.ack(await acking.fetch(FETCH_MAX, 0.2, want))
                await acking.drain()
            finally:
                await acking.abandon()

        # A TaskGroup: when one side fails, the other is cancelled rather than left running.
        async with asyncio.TaskGroup() as tg:
            tg.create_task(produce(prod))
            tg.create_task(consume())
        cpu.stop()
        got = acking.acked
        elapsed = max(acking.last_ack - t0, 1e-9)
        return Outcome(got / elapsed,
                       detail=f"{got:,} of {state['sent']:,} consumed in "
                       f"{elapsed:.1f} s; {cpu}; {acking.times}",
                       wall_s=elapsed, server_cpu_s=cpu.server, client_cpu_s=cpu.client,
                       consumer=acking.times)
    finally:
        await _close(prod, cons)
        with contextlib.suppress(Exception):
            await bounded(peer.delete_topic(topic))


async def latency(peer: Peer, topic: str, size: int, plan: Plan) -> Outcome:
    """Paced producer at LATENCY_RATE; the consumer measures now - stamp per message.

    Each message carries the time it was *due* to be sent, so a producer that falls
    behind shows up in the latency instead of hiding it (no coordinated omission).
    """
    await bounded(peer.create_topic(topic))
    per_tick = int(LATENCY_RATE * LATENCY_TICK_S)
    ticks = int(plan.latency_s / LATENCY_TICK_S)
    expected = per_tick * ticks
    pad = payload(size)
    tick_ns = int(LATENCY_TICK_S * 1e9)
    samples: list[int] = []
    cpu: CpuMeter | None = None
    prod: Producer | None = None
    cons: Consumer | None = None
    try:
        cons = await bounded(peer.consumer(topic))
        prod = await bounded(peer.producer(topic))
        wait_s = cons.low_latency_wait_s or POLL_S
        cpu = CpuMeter(peer)
        start_ns = time.monotonic_ns() + 100_000_000
        end = start_ns / 1e9 + plan.latency_s + DRAIN_CAP_S

        async def produce(p: Producer) -> None:
            pending: set[asyncio.Task[None]] = set()
            for k in range(ticks):
                due = start_ns + k * tick_ns
                delay = (due - time.monotonic_ns()) / 1e9
                if delay > 0:
                    await asyncio.sleep(delay)
                # A paced producer does not wait for one confirm before the next send.
                task = asyncio.create_task(bounded(p.publish([stamped(size, due, pad)]
                                                             * per_tick)))
                pending.add(task)
                task.add_done_callback(pending.discard)
                if len(pending) > 1_000:  # ten seconds of ticks unconfirmed: give up
                    raise RuntimeError("publishes are not being confirmed")
            await asyncio.gather(*pending)

        async def consume(c: Consumer) -> None:
            while len(samples) < expected and time.monotonic() < end:
                fetched = await bounded(c.fetch(FETCH_MAX, wait_s))
                now = time.monotonic_ns()
                samples.extend(now - stamp_of(v) for v in fetched.values)
                if fetched.values:
                    await bounded(c.ack(fetched))

        async with asyncio.TaskGroup() as tg:
            tg.create_task(produce(prod))
            tg.create_task(consume(cons))
    finally:
        await _close(prod, cons)
        with contextlib.suppress(Exception):
            await bounded(peer.delete_topic(topic))
    if cpu is not None:
        cpu.stop()
    ms = sorted(s / 1e6 for s in samples)
    p50, p99, p999 = (percentile(ms, q) for q in (50, 99, 99.9))
    return Outcome(p99, p50, p99, p999, carried=(len(ms), expected),
                   detail=(f"{len(ms):,} of {expected:,} received, max {ms[-1]:.1f} ms"
                           if ms else "nothing received") + f"; {cpu}")


def consume_short(table: Table, plan: Plan) -> bool:
    """Whether spoolmq's consume+ack missed 3x Redis at some size."""
    for size in plan.sizes:
        mine, base = table.best("consume", size, "spoolmq"), table.best("consume", size, BASELINE)
        if (mine is None or base is None or mine.error or base.error or not mine.value
                or not base.value or mine.value < 3 * base.value):
            return True
    return False


async def fsync_diagnosis(sync_peer: Peer, workdir: Path, plan: Plan,
                          log: Callable[[str], None]) -> dict[int, tuple[Outcome, Outcome]]:
    """consume+ack on the running spoolmq broker and, right after it, on one started with
    `--durability none`, per size: what the fdatasync before each ack costs the consumer.
    Returns (sync, none) consume outcomes by size."""
    out: dict[int, tuple[Outcome, Outcome]] = {}
    nofsync = SpoolPeer(durability="none")
    try:
        await nofsync.start(workdir, plan.peer_start_cap_s)
        for size in plan.sizes:
            pair = []
            for tag, peer in (("sync", sync_peer), ("none", nofsync)):
                res = await attempt(partial(produce_consume, peer, f"bench_diag_{size}_{tag}",
                                            size, plan))
                consumed = res[1] if isinstance(res, tuple) else res
                pair.append(consumed)
                log(f"diagnosis {size:>5} B consume  spoolmq durability {tag:4} "
                    f"{_fmt_rate(consumed)}")
            out[size] = (pair[0], pair[1])
    except Exception as exc:  # the diagnosis is an aside: report it, keep the run
        log(f"diagnosis failed: {type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nofsync.stop(), 30)
    return out


async def attempt(run: Callable[[], Awaitable[Any]]) -> Any:
    """Run one workload; a failure becomes an Outcome with the error, never a crash."""
    try:
        return await run()
    except Exception as exc:  # recorded in the table, so one broken peer cannot end the run
        while isinstance(exc, ExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        return Outcome(error=f"{type(exc).__name__}: {exc}"[:200])


WORKLOADS = ("consume", "e2e", "latency")  # "consume" is produce then consume+ack


async def run_peers(peers: dict[str, Peer], plan: Plan, table: Table,
                    log: Callable[[str], None], workloads: Sequence[str] = WORKLOADS) -> None:
    keys = list(peers)
    for rnd in range(plan.rounds):
        order = keys[rnd % len(keys):] + keys[:rnd % len(keys)]  # rotate who goes first
        for size in plan.sizes:
            for key in order if "consume" in workloads else ():
                res = await attempt(partial(produce_consume, peers[key],
                                            f"bench_pc_{size}_{rnd}", size, plan))
                pair = res if isinstance(res, tuple) else (res, res)
                table.add("produce", size, key, pair[0])
                table.add("consume", size, key, pair[1])
                log(f"round {rnd + 1} {size:>5} B produce  {key:9} {_fmt_rate(pair[0])}")
                log(f"round {rnd + 1} {size:>5} B consume  {key:9} {_fmt_rate(pair[1])}")
            for key in order if "e2e" in workloads else ():
                res = await attempt(partial(end_to_end, peers[key], f"bench_e2e_{size}_{rnd}",
                                            size, plan))
                table.add("e2e", size, key, res)
                log(f"round {rnd + 1} {size:>5} B e2e      {key:9} {_fmt_rate(res)}")
            for key in order if "latency" in workloads else ():
                res = await attempt(partial(latency, peers[key], f"bench_lat_{size}_{rnd}",
                                            size, plan))
                table.add("latency", size, key, res)
                log(f"round {rnd + 1} {size:>5} B latency  {key:9} {_fmt_lat(res)}")


def _fmt_rate(o: Outcome | None) -> str:
    if o is None:
        return "not run"
    if o.error:
        return f"failed: {o.error}"
    return f"{o.value:,.0f} msg/s ({o.detail})"


def _fmt_lat(o: Outcome | None) -> str:
    if o is None:
        return "not run"
    if o.error:
        return f"failed: {o.error}"
    return f"p50 {o.p50:.2f} p99 {o.p99:.2f} p99.9 {o.p999:.2f} ms ({o.detail})"


def _print_ratios(table: Table, plan: Plan, workloads: Sequence[str]) -> int:
    """The best round per system of a partial run, with spoolmq's ratio to the baseline."""
    names = [w for w in ("produce", *workloads) if w != "latency"]
    if "consume" not in workloads:
        names.remove("produce")
    print("best round (msg/s):")
    for size in plan.sizes:
        for wl in names:
            row = table.rows.get((wl, size), {})
            best = {k: table.best(wl, size, k) for k in row}
            rates = {k: o.value for k, o in best.items()
                     if o is not None and o.error is None and o.value is not None}
            ours, base = rates.get("spoolmq"), rates.get(BASELINE)
            ratio = f"  {ours / base:.2f}x {BASELINE}" if ours and base else ""
            shown = ", ".join(f"{k} {v:,.0f}" for k, v in rates.items())
            print(f"  {size:>5} B {wl:8} {shown}{ratio}")
    return 0


async def main_async(args: argparse.Namespace) -> int:
    from bench.plot import write_report

    plan = QUICK if args.quick else FULL
    keys = [k.strip() for k in args.peers.split(",") if k.strip()]
    unknown = [k for k in keys if k not in PEERS]
    if unknown:
        print(f"unknown peers: {unknown}; choose from {sorted(PEERS)}", file=sys.stderr)
        return 2
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if not workloads or set(workloads) - set(WORKLOADS):
        print(f"--workloads: choose from {','.join(WORKLOADS)}", file=sys.stderr)
        return 2
    partial_run = set(workloads) != set(WORKLOADS)
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - started:6.0f} s] {line}", flush=True)

    table = Table()
    rss: RssResult | None = None
    diagnosis: dict[int, tuple[Outcome, Outcome]] = {}
    with tempfile.TemporaryDirectory(prefix="spoolmq-bench-") as tmp:
        workdir = Path(tmp)
        log(f"plan {plan.name}: starting {', '.join(keys)} under {workdir}")
        peers, failed = await start_peers(keys, workdir / "peers", plan.peer_start_cap_s)
        for key, why in failed.items():
            log(f"{key} unavailable: {why}")
        try:
            await run_peers(peers, plan, table, log, workloads)
            if partial_run:
                return _print_ratios(table, plan, workloads)
            if "spoolmq" in peers and BASELINE in peers and consume_short(table, plan):
                diagnosis = await fsync_diagnosis(peers["spoolmq"], workdir / "nofsync", plan,
                                                  log)
        finally:
            for peer in peers.values():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(peer.stop(), 30)
        if "spoolmq" in keys and "spoolmq" not in failed and not args.skip_rss:
            rss = await run_rss(workdir / "rss", plan, log)
        elif "spoolmq" in keys:
            rss = RssResult(error=failed.get("spoolmq", "skipped (--skip-rss)"))
    markdown = write_report(RESULTS, plan, keys, peers, failed, table, rss,
                            elapsed_s=time.monotonic() - started, diagnosis=diagnosis)
    print(markdown)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.broker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smaller counts, one round, a 1M-message memory backlog")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help=f"comma-separated subset of {','.join(PEERS)}")
    parser.add_argument("--skip-rss", action="store_true",
                        help="leave out spoolmq's memory workload")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma-separated subset of {','.join(WORKLOADS)}; a subset "
                        "only prints its numbers: no fsync diagnosis, no memory workload, "
                        "no results page")
    args = parser.parse_args(argv)
    # Every system's client runs in this process with the collector paced as spoolmq's
    # servers pace theirs (README, "Native client"): a high-throughput consumer holds
    # thousands of messages, and CPython's default pacing rescans them over and over.
    pace_collections()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main_async(args))
    return uvloop.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
