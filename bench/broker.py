"""The broker benchmark: spoolmq side by side with Redis Streams, NATS JetStream and RabbitMQ.

    .venv/bin/python -m bench.broker [--quick] [--peers redis,nats,rabbitmq,spoolmq]

Every system runs as a subprocess on 127.0.0.1 with a private data dir under one temp
dir, started and torn down by this script. For 100 B and 1 KiB messages it measures
produce throughput, consume+ack throughput of the produced backlog, end-to-end
throughput with producer and consumer running together, and latency percentiles at a
paced 5,000 msg/s; then spoolmq's broker memory with a large backlog and with a consumer
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bench.common import (
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
from bench.peers import PEERS, Consumer, Peer, Producer, start_peers
from bench.peers.spoolmq import RssResult, run_rss

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

    def __str__(self) -> str:
        server = self.peer.cpu_s() - self.server0
        client = time.process_time() - self.client0
        return f"CPU server {server:.1f} s, clients {client:.1f} s"


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
    produced = Outcome(sent / produce_s, detail=f"{sent:,} msgs in {produce_s:.1f} s; {cpu}")

    cpu = CpuMeter(peer)
    t0 = time.monotonic()
    cons = await bounded(peer.consumer(topic))
    try:
        got = 0
        while got < sent and time.monotonic() - t0 < plan.consume_cap_s:
            fetched = await bounded(cons.fetch(FETCH_MAX, POLL_S))
            if fetched.values:
                await bounded(cons.ack(fetched))
                got += len(fetched.values)
        consume_s = time.monotonic() - t0
    finally:
        await _close(cons)
        with contextlib.suppress(Exception):
            await bounded(peer.delete_topic(topic))
    consumed = Outcome(got / consume_s,
                       detail=f"{got:,} of {sent:,} in {consume_s:.1f} s; {cpu}")
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
        state = {"sent": 0, "got": 0, "producing": 1}
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

        async def consume(c: Consumer) -> float:
            last = t0
            deadline = t0 + plan.e2e_cap_s + DRAIN_CAP_S
            while time.monotonic() < deadline:
                if not state["producing"] and state["got"] >= state["sent"]:
                    break
                fetched = await bounded(c.fetch(FETCH_MAX, 0.2))
                if fetched.values:
                    await bounded(c.ack(fetched))
                    state["got"] += len(fetched.values)
                    last = time.monotonic()
            return last

        # A TaskGroup: when one side fails, the other is cancelled rather than left running.
        async with asyncio.TaskGroup() as tg:
            tg.create_task(produce(prod))
            consuming = tg.create_task(consume(cons))
        last = consuming.result()
        elapsed = max(last - t0, 1e-9)
        return Outcome(state["got"] / elapsed,
                       detail=f"{state['got']:,} of {state['sent']:,} consumed in "
                       f"{elapsed:.1f} s; {cpu}")
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
    ms = sorted(s / 1e6 for s in samples)
    p50, p99, p999 = (percentile(ms, q) for q in (50, 99, 99.9))
    return Outcome(p99, p50, p99, p999, carried=(len(ms), expected),
                   detail=(f"{len(ms):,} of {expected:,} received, max {ms[-1]:.1f} ms"
                           if ms else "nothing received") + f"; {cpu}")


async def attempt(run: Callable[[], Awaitable[Any]]) -> Any:
    """Run one workload; a failure becomes an Outcome with the error, never a crash."""
    try:
        return await run()
    except Exception as exc:  # recorded in the table, so one broken peer cannot end the run
        while isinstance(exc, ExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        return Outcome(error=f"{type(exc).__name__}: {exc}"[:200])


async def run_peers(peers: dict[str, Peer], plan: Plan, table: Table,
                    log: Callable[[str], None]) -> None:
    keys = list(peers)
    for rnd in range(plan.rounds):
        order = keys[rnd % len(keys):] + keys[:rnd % len(keys)]  # rotate who goes first
        for size in plan.sizes:
            for key in order:
                res = await attempt(partial(produce_consume, peers[key],
                                            f"bench_pc_{size}_{rnd}", size, plan))
                pair = res if isinstance(res, tuple) else (res, res)
                table.add("produce", size, key, pair[0])
                table.add("consume", size, key, pair[1])
                log(f"round {rnd + 1} {size:>5} B produce  {key:9} {_fmt_rate(pair[0])}")
                log(f"round {rnd + 1} {size:>5} B consume  {key:9} {_fmt_rate(pair[1])}")
            for key in order:
                res = await attempt(partial(end_to_end, peers[key], f"bench_e2e_{size}_{rnd}",
                                            size, plan))
                table.add("e2e", size, key, res)
                log(f"round {rnd + 1} {size:>5} B e2e      {key:9} {_fmt_rate(res)}")
            for key in order:
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


async def main_async(args: argparse.Namespace) -> int:
    from bench.plot import write_report

    plan = QUICK if args.quick else FULL
    keys = [k.strip() for k in args.peers.split(",") if k.strip()]
    unknown = [k for k in keys if k not in PEERS]
    if unknown:
        print(f"unknown peers: {unknown}; choose from {sorted(PEERS)}", file=sys.stderr)
        return 2
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - started:6.0f} s] {line}", flush=True)

    table = Table()
    rss: RssResult | None = None
    with tempfile.TemporaryDirectory(prefix="spoolmq-bench-") as tmp:
        workdir = Path(tmp)
        log(f"plan {plan.name}: starting {', '.join(keys)} under {workdir}")
        peers, failed = await start_peers(keys, workdir / "peers", plan.peer_start_cap_s)
        for key, why in failed.items():
            log(f"{key} unavailable: {why}")
        try:
            await run_peers(peers, plan, table, log)
        finally:
            for peer in peers.values():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(peer.stop(), 30)
        if "spoolmq" in keys and "spoolmq" not in failed and not args.skip_rss:
            rss = await run_rss(workdir / "rss", plan, log)
        elif "spoolmq" in keys:
            rss = RssResult(error=failed.get("spoolmq", "skipped (--skip-rss)"))
    markdown = write_report(RESULTS, plan, keys, peers, failed, table, rss,
                            elapsed_s=time.monotonic() - started)
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
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main_async(args))
    return uvloop.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
