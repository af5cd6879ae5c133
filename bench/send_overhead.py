"""Loop-thread CPU of the broker's single-message send path, in process.

Starts a Broker on a temporary data directory (file store, "sync" durability with
group commit) under uvloop, and has CONCURRENCY tasks send one message per call
through `Broker.send_columns`, as the HTTP gateway's POST /send does, until N calls
are done. Prints calls/s, the event-loop thread's CPU per call (time.thread_time on
the loop thread: the fsync worker threads are not counted), fsyncs and writes per
call, then a cProfile top of one more run.

    .venv/bin/python -m bench.send_overhead [--n 20000] [--concurrency 64] [--repeat 3]

It must not start a server or touch the network: it measures the broker alone.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path

import uvloop

from broker.api import ClientRef
from broker.broker import Broker
from broker.config import Config

TOPIC = "bench"
PAYLOAD = b"x" * 100  # a short form-posted message, as the HTTP benchmark sends
CLIENT = ClientRef("bench-http", "http", "127.0.0.1")


async def _run(n: int, concurrency: int, profile: cProfile.Profile | None
               ) -> tuple[float, float, int, int]:
    """Run n sends from `concurrency` tasks on a fresh broker.
    Returns (wall seconds, loop-thread CPU seconds, syncs, writes)."""
    with tempfile.TemporaryDirectory(prefix="spoolmq-send-") as root:
        broker = Broker(Config(data_dir=Path(root), durability="sync"), sweep_interval_s=0)
        await broker.start()
        try:
            await broker.create_topic(TOPIC)
            for _ in range(200):  # warm up: first segment, code paths, allocator
                await broker.send_columns(TOPIC, [PAYLOAD], CLIENT)
            committer = broker._committer  # counters only, read-only
            assert committer is not None
            syncs0, groups0 = committer.syncs, committer.groups
            left = n

            async def worker() -> None:
                nonlocal left
                send = broker.send_columns
                while left > 0:
                    left -= 1
                    await send(TOPIC, [PAYLOAD], CLIENT)

            if profile is not None:
                profile.enable()
            cpu0, wall0 = time.thread_time(), time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
            if profile is not None:
                profile.disable()
            return wall, cpu, committer.syncs - syncs0, committer.groups - groups0
        finally:
            await broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--top", type=int, default=25, help="profile lines (0: no profile)")
    args = ap.parse_args()
    best_us = float("inf")
    for i in range(args.repeat):
        wall, cpu, syncs, groups = uvloop.run(_run(args.n, args.concurrency, None))
        us = cpu / args.n * 1e6
        best_us = min(best_us, us)
        print(f"run {i + 1}: {args.n / wall:,.0f} calls/s  {us:.1f} us loop CPU/call  "
              f"{args.n / max(syncs, 1):.1f} calls/fsync  {args.n / max(groups, 1):.1f} "
              f"calls/write")
    print(f"best: {best_us:.1f} us loop CPU/call")
    if args.top > 0:
        prof = cProfile.Profile()
        uvloop.run(_run(args.n, args.concurrency, prof))
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())


if __name__ == "__main__":
    main()
