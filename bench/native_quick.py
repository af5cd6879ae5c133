"""A quick, reproducible measurement of the native path, with Redis Streams alongside.

`spoolmq broker` runs in a subprocess over a temporary data directory (default `sync`
durability); the benchmark process drives it with the real `broker.client.Client`:

  produce   one producer, `send_batch` of 1,000 values per call, until COUNT or CAP_S;
  consume   one consumer over that backlog: `receive(max=500)` then `ack` of what came;
  e2e       producer and consumer together; rate = consumed / wall time;
  latency   a paced producer at 5,000 msg/s (50 per 10 ms tick); p50/p99 of
            receive time - due time, stamped in the payload.

When `redis-server` is on PATH, the same workloads run against it with
`--appendonly yes --appendfsync always` (redis-py asyncio: pipelines of 1,000 XADD;
XREADGROUP COUNT 500 + XACK), and the ratios are printed. Every line shows wall-time
rates and the CPU seconds of the server process and of this (client) process.

    .venv/bin/python -m bench.native_quick [--count 200000] [--sizes 100,1024] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
PRODUCE_BATCH = 1_000  # values per send_batch / XADD pipeline
FETCH_MAX = 500  # messages per receive / XREADGROUP
LATENCY_RATE = 5_000  # msg/s offered in the latency workload
LATENCY_TICK_S = 0.010
STAMP = struct.Struct("<q")
START_CAP_S = 30.0  # a server that does not accept connections by then has failed

Publish = Callable[[list[bytes]], Coroutine[Any, Any, None]]
Fetch = Callable[[float], Coroutine[Any, Any, list[bytes]]]
Ack = Callable[[], Coroutine[Any, Any, None]]


@dataclass(slots=True)
class Rate:
    count: int
    wall_s: float
    server_cpu_s: float
    client_cpu_s: float

    @property
    def per_s(self) -> float:
        return self.count / self.wall_s if self.wall_s > 0 else 0.0

    def __str__(self) -> str:
        return (f"{self.per_s:>10,.0f} msg/s  ({self.count:,} in {self.wall_s:.2f} s; "
                f"CPU server {self.server_cpu_s:.2f} s, client {self.client_cpu_s:.2f} s)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_CAP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            _, w = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        w.close()
        return
    raise RuntimeError(f"nothing listens on port {port} after {START_CAP_S:g} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class System:
    """One server under test: its process and how to produce and consume on it."""

    name = ""
    proc: subprocess.Popen[bytes]

    async def start(self, workdir: Path) -> None: ...

    async def close(self) -> None:
        stop(self.proc)

    def cpu(self) -> float:
        return proc_cpu_s(self.proc.pid)

    async def topic(self, name: str) -> None: ...

    async def producer(self, topic: str) -> Publish:
        raise NotImplementedError

    async def consumer(self, topic: str) -> tuple[Fetch, Ack]:
        """(fetch(wait_s) -> values, ack() of the last fetch)."""
        raise NotImplementedError

    async def release(self) -> None:
        """Close the connections of the last workload."""


class Spoolmq(System):
    name = "spoolmq"

    def __init__(self) -> None:
        self._clients: list[Any] = []
        self.port = 0

    async def start(self, workdir: Path) -> None:
        self.port = free_port()
        exe = Path(sys.executable).with_name("spoolmq")
        argv = [str(exe) if exe.exists() else "spoolmq", "broker",
                "--data-dir", str(workdir / "data"), "--log-dir", str(workdir / "logs"),
                "--tcp-port", str(self.port), "--log-level", "WARNING"]
        with open(workdir / "spoolmq.err", "wb") as err:  # the child keeps its own copy
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        await wait_port(self.port, self.proc)

    async def _client(self) -> Any:
        from broker.client import Client

        c = Client(f"tcp://{HOST}:{self.port}")
        await c.connect()
        self._clients.append(c)
        return c

    async def topic(self, name: str) -> None:
        c = await self._client()
        await c.create_topic(name)

    async def producer(self, topic: str) -> Publish:
        c = await self._client()

        async def publish(values: list[bytes]) -> None:
            await c.send_batch(topic, values)

        return publish

    async def consumer(self, topic: str) -> tuple[Fetch, Ack]:
        c = await self._client()
        last: list[Any] = []

        async def fetch(wait_s: float) -> list[bytes]:
            last[:] = await c.receive(topic, group="bench", max=FETCH_MAX, wait=wait_s)
            return [m.value for m in last]

        async def ack() -> None:
            if last:
                failed = await c.ack(last)
                if failed:
                    raise RuntimeError(f"{len(failed)} acks failed: {failed[0]}")

        return fetch, ack

    async def release(self) -> None:
        for c in self._clients:
            await c.close()
        self._clients.clear()


class Redis(System):
    name = "redis"

    def __init__(self) -> None:
        self._clients: list[Any] = []
        self.port = 0

    async def start(self, workdir: Path) -> None:
        exe = shutil.which("redis-server")
        assert exe is not None
        self.port = free_port()
        data = workdir / "redis"
        data.mkdir()
        argv = [exe, "--bind", HOST, "--port", str(self.port), "--dir", str(data),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--daemonize", "no", "--logfile", ""]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        await wait_port(self.port, self.proc)

    async def _client(self) -> Any:
        import redis.asyncio as aioredis

        r = aioredis.Redis(host=HOST, port=self.port, socket_timeout=60)
        self._clients.append(r)
        return r

    async def topic(self, name: str) -> None:
        r = await self._client()
        await r.delete(name)
        await r.xgroup_create(name, "bench", id="0", mkstream=True)

    async def producer(self, topic: str) -> Publish:
        r = await self._client()

        async def publish(values: list[bytes]) -> None:
            pipe = r.pipeline(transaction=False)
            for v in values:
                pipe.xadd(topic, {b"v": v})
            await pipe.execute()

        return publish

    async def consumer(self, topic: str) -> tuple[Fetch, Ack]:
        r = await self._client()
        ids: list[bytes] = []

        async def fetch(wait_s: float) -> list[bytes]:
            block = max(1, int(wait_s * 1000)) if wait_s > 0 else None
            reply = await r.xreadgroup("bench", "c1", {topic: ">"}, count=FETCH_MAX,
                                       block=block)
            entries = reply[0][1] if reply else []
            ids[:] = [eid for eid, _ in entries]
            return [fields[b"v"] for _, fields in entries]

        async def ack() -> None:
            if ids:
                await r.xack(topic, "bench", *ids)

        return fetch, ack

    async def release(self) -> None:
        for r in self._clients:
            await r.aclose()
        self._clients.clear()


class Meter:
    def __init__(self, system: System) -> None:
        self.system = system
        self.t0 = time.perf_counter()
        self.s0 = system.cpu()
        self.c0 = time.process_time()

    def done(self, count: int, end: float | None = None) -> Rate:
        wall = (end or time.perf_counter()) - self.t0
        return Rate(count, wall, self.system.cpu() - self.s0, time.process_time() - self.c0)


async def produce_consume(sys_: System, topic: str, size: int, count: int, cap_s: float
                          ) -> tuple[Rate, Rate]:
    await sys_.topic(topic)
    publish = await sys_.producer(topic)
    batch = [b"x" * size] * PRODUCE_BATCH
    m = Meter(sys_)
    sent = 0
    while sent < count and time.perf_counter() - m.t0 < cap_s:
        await publish(batch)
        sent += len(batch)
    produced = m.done(sent)
    fetch, ack = await sys_.consumer(topic)
    m = Meter(sys_)
    got = 0
    while got < sent and time.perf_counter() - m.t0 < cap_s:
        values = await fetch(0.2)
        if values:
            await ack()
            got += len(values)
    consumed = m.done(got)
    await sys_.release()
    return produced, consumed


async def end_to_end(sys_: System, topic: str, size: int, count: int, cap_s: float) -> Rate:
    await sys_.topic(topic)
    publish = await sys_.producer(topic)
    fetch, ack = await sys_.consumer(topic)
    batch = [b"x" * size] * PRODUCE_BATCH
    state = {"sent": 0, "got": 0, "producing": 1}
    m = Meter(sys_)

    async def produce() -> None:
        try:
            while state["sent"] < count and time.perf_counter() - m.t0 < cap_s:
                await publish(batch)
                state["sent"] += len(batch)
        finally:
            state["producing"] = 0

    async def consume() -> float:
        last = m.t0
        while time.perf_counter() - m.t0 < cap_s + 10:
            if not state["producing"] and state["got"] >= state["sent"]:
                break
            values = await fetch(0.2)
            if values:
                await ack()
                state["got"] += len(values)
                last = time.perf_counter()
        return last

    async with asyncio.TaskGroup() as tg:
        tg.create_task(produce())
        consuming = tg.create_task(consume())
    rate = m.done(state["got"], consuming.result())
    await sys_.release()
    return rate


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


async def latency(sys_: System, topic: str, size: int, seconds: float) -> str:
    await sys_.topic(topic)
    publish = await sys_.producer(topic)
    fetch, ack = await sys_.consumer(topic)
    per_tick = int(LATENCY_RATE * LATENCY_TICK_S)
    ticks = int(seconds / LATENCY_TICK_S)
    expected = per_tick * ticks
    pad = b"x" * max(0, size - STAMP.size)
    tick_ns = int(LATENCY_TICK_S * 1e9)
    samples: list[int] = []
    start_ns = time.monotonic_ns() + 100_000_000
    end = start_ns / 1e9 + seconds + 5.0
    m = Meter(sys_)

    async def produce() -> None:
        pending: set[asyncio.Task[None]] = set()
        for k in range(ticks):
            due = start_ns + k * tick_ns
            delay = (due - time.monotonic_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(publish([STAMP.pack(due) + pad] * per_tick))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)

    async def consume() -> None:
        while len(samples) < expected and time.monotonic() < end:
            values = await fetch(0.1)
            now = time.monotonic_ns()
            samples.extend(now - STAMP.unpack_from(v)[0] for v in values)
            if values:
                await ack()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(produce())
        tg.create_task(consume())
    rate = m.done(len(samples))
    await sys_.release()
    samples.sort()
    return (f"p50 {percentile(samples, 0.50) / 1e6:6.2f} ms  p99 "
            f"{percentile(samples, 0.99) / 1e6:6.2f} ms  ({len(samples):,} of {expected:,}; "
            f"CPU server {rate.server_cpu_s:.2f} s, client {rate.client_cpu_s:.2f} s)")


async def run(args: argparse.Namespace) -> None:
    systems: list[System] = [Spoolmq()]
    if shutil.which("redis-server") and not args.no_redis:
        systems.append(Redis())
    sizes = [int(s) for s in args.sizes.split(",")]
    best: dict[tuple[str, str, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="native_quick_") as tmp:
        for s in systems:
            workdir = Path(tmp) / s.name
            workdir.mkdir()
            await s.start(workdir)
        try:
            for rnd in range(args.rounds):
                for size in sizes:
                    for s in systems:
                        tag = f"r{rnd}_{size}"
                        p, c = await produce_consume(s, f"pc_{tag}", size, args.count, args.cap)
                        e = await end_to_end(s, f"e2e_{tag}", size, args.count, args.cap)
                        print(f"round {rnd + 1} {size:>5} B {s.name:8} produce {p}", flush=True)
                        print(f"round {rnd + 1} {size:>5} B {s.name:8} consume {c}", flush=True)
                        print(f"round {rnd + 1} {size:>5} B {s.name:8} e2e     {e}", flush=True)
                        for wl, r in (("produce", p), ("consume", c), ("e2e", e)):
                            key = (s.name, wl, size)
                            best[key] = max(best.get(key, 0.0), r.per_s)
                        if args.latency > 0:
                            lat = await latency(s, f"lat_{tag}", size, args.latency)
                            print(f"round {rnd + 1} {size:>5} B {s.name:8} latency {lat}",
                                  flush=True)
        finally:
            for s in systems:
                with contextlib.suppress(Exception):
                    await s.release()
                await s.close()
    print("\nbest of rounds (msg/s):")
    for size in sizes:
        for wl in ("produce", "consume", "e2e"):
            ours = best.get(("spoolmq", wl, size), 0.0)
            theirs = best.get(("redis", wl, size))
            ratio = f"  x{ours / theirs:.2f} vs redis {theirs:,.0f}" if theirs else ""
            print(f"  {size:>5} B {wl:8} spoolmq {ours:>10,.0f}{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200_000, help="messages per workload")
    parser.add_argument("--cap", type=float, default=10.0, help="seconds per workload at most")
    parser.add_argument("--sizes", default="100,1024")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency", type=float, default=3.0,
                        help="seconds of the 5,000 msg/s latency workload (0: skip)")
    parser.add_argument("--no-redis", action="store_true")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(args))
    else:
        uvloop.run(run(args))


if __name__ == "__main__":
    main()
