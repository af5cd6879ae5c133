"""Shared pieces of the benchmarks: run plans, payloads, percentiles, ports and processes.

Owns the bounds every workload obeys (message counts, time caps) and the helpers that
start and watch server subprocesses on loopback. It must not talk to any broker itself:
drivers live in `bench.peers`, workloads in `bench.broker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"  # every server in the benchmarks binds loopback only
KIB = 1024
MIB = 1024 * KIB

# What the brief fixes for every system alike.
PRODUCE_BATCH = 1_000  # messages in flight per producer call
FETCH_MAX = 500  # messages a consumer asks for at a time
# Server-confirmed acks a throughput consumer keeps in flight while it fetches (Redis
# XACK and spoolmq ack answer after their fsync). Acks only settle what was already
# handed over, so a consumer need not wait for each before fetching on, as Kafka's
# commitAsync and SQS's batched deletes do not; with 500 messages per ack and fsyncs of
# a few milliseconds on a busy disk, 2 in flight would cap a consumer near 500 x 2 per
# fsync time whatever the broker could serve. Memory bounds it: 8 x 500 messages.
ACK_DEPTH = 8
# Fetches a throughput consumer keeps in flight where its client allows concurrent ones:
# fetch N+1 is issued before the messages of fetch N are handed over and acked.
FETCH_DEPTH = 2
LATENCY_RATE = 5_000  # msg/s offered by the paced producer of the latency workload
LATENCY_TICK_S = 0.010  # the paced producer sends RATE * TICK messages every tick
STAMP = struct.Struct("<q")  # monotonic ns stamped at the head of a latency payload


@dataclass(frozen=True, slots=True)
class Plan:
    """Bounds of one run. Every loop stops at its count or its time cap, whichever is first."""

    name: str
    sizes: tuple[int, ...]
    rounds: int  # interleaved repetitions; the best round per system is reported
    produce_count: int  # messages per produce workload; they become the consume backlog
    produce_cap_s: float
    consume_cap_s: float
    e2e_count: int
    e2e_cap_s: float
    latency_s: float  # duration of the paced producer
    rss_backlog: int  # spoolmq backlog for the memory workload
    rss_fill_cap_s: float
    rss_consume_s: float  # how long the ack-every-other consumer runs
    peer_start_cap_s: float  # bounded wait for a peer to accept connections


FULL = Plan(name="full", sizes=(100, 1 * KIB), rounds=2,
            produce_count=500_000, produce_cap_s=15.0, consume_cap_s=20.0,
            e2e_count=500_000, e2e_cap_s=15.0, latency_s=10.0,
            rss_backlog=10_000_000, rss_fill_cap_s=420.0, rss_consume_s=60.0,
            peer_start_cap_s=90.0)

QUICK = Plan(name="quick", sizes=(100, 1 * KIB), rounds=1,
             produce_count=100_000, produce_cap_s=5.0, consume_cap_s=8.0,
             e2e_count=100_000, e2e_cap_s=5.0, latency_s=4.0,
             rss_backlog=1_000_000, rss_fill_cap_s=90.0, rss_consume_s=15.0,
             peer_start_cap_s=90.0)


def payload(size: int) -> bytes:
    """An incompressible payload of `size` bytes, made once and sent many times."""
    return os.urandom(size)


def stamped(size: int, ns: int, pad: bytes) -> bytes:
    """A latency payload: the send time (monotonic ns) followed by padding up to `size`."""
    return STAMP.pack(ns) + pad[: max(0, size - STAMP.size)]


def stamp_of(value: bytes) -> int:
    return int(STAMP.unpack_from(value)[0])


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100); nan when empty."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100.0 * len(sorted_values))))
    return float(sorted_values[rank - 1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def wait_port(port: int, cap_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Return once HOST:port accepts a connection; raise RuntimeError after cap_s or if the
    process died first."""
    deadline = time.monotonic() + cap_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} before listening")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 1.0)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.2)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    raise RuntimeError(f"not listening on {HOST}:{port} after {cap_s:.0f} s")


def spawn(argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None,
          cwd: Path | None = None, inherit: bool = True) -> subprocess.Popen[bytes]:
    """Start a server in its own process group with stdout+stderr to `log`.

    `env` is added to this process's environment, or replaces it when inherit is False.
    """
    full_env = dict(os.environ) if inherit else {}
    full_env.update(env or {})
    with open(log, "ab") as out:
        return subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=full_env, cwd=cwd,
                                start_new_session=True)


def terminate(proc: subprocess.Popen[bytes] | None, grace_s: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL it after grace_s."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@dataclass(frozen=True, slots=True)
class Memory:
    rss_mib: float  # VmRSS: resident now
    hwm_mib: float  # VmHWM: the peak resident size of the process so far


def memory_of(pid: int) -> Memory | None:
    """VmRSS and VmHWM of a live process from /proc/<pid>/status, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields: dict[str, float] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(rest.split()[0]) / KIB  # the kernel reports kB
    if "VmRSS" not in fields:
        return None
    return Memory(fields["VmRSS"], fields.get("VmHWM", fields["VmRSS"]))


def machine_summary() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB RAM, Linux "
            f"{platform.release()}, Python {platform.python_version()}")


def debian_version(package: str) -> str | None:
    """The installed Debian version of a package, or None."""
    if shutil.which("dpkg-query") is None:
        return None
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or None if out.returncode == 0 else None
