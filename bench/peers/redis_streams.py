"""Redis Streams, the baseline: redis-server with AOF and `appendfsync always`.

Producers pipeline 1,000 XADDs per round trip (redis-py asyncio, hiredis parser);
consumers XREADGROUP COUNT 500 in group `bench` and XACK what they got. The throughput
workloads keep two XREADGROUP '>' in flight (FETCH_DEPTH), each on its own pooled
connection, so Redis reads batch N+1 while the client decodes and acks batch N; a read
that creates pending entries is itself written to the AOF, so both reads and acks landing
in one event loop iteration share one fsync. XACK waits for
the AOF fsync, so the throughput workloads run it as a task while the next XREADGROUP
is in flight; redis-py's connection pool gives the concurrent XACK a second connection,
and Redis answers both after one fsync when they land in one event loop iteration. With
`appendfsync always` Redis fsyncs the AOF before it answers the commands of one event
loop iteration, so a pipeline shares one fsync. RDB snapshots are off: the AOF is the
only persistence, inside the peer's private dir.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.common import HOST, debian_version, free_port, spawn, wait_port
from bench.peers.base import Consumer, Fetched, Peer, PeerUnavailable, Producer

GROUP = b"bench"
FIELD = b"v"


class RedisProducer(Producer):
    def __init__(self, client: Any, stream: str) -> None:
        self._r = client
        self._stream = stream

    async def publish(self, values: Sequence[bytes]) -> None:
        pipe = self._r.pipeline(transaction=False)
        for v in values:
            pipe.xadd(self._stream, {FIELD: v})
        await pipe.execute()

    async def close(self) -> None:
        await self._r.aclose()


class RedisConsumer(Consumer):
    def __init__(self, client: Any, stream: str, name: str) -> None:
        self._r = client
        self._stream = stream
        self._name = name

    # A second XREADGROUP '>' runs on another pooled connection; Redis hands each call
    # entries of its own.
    concurrent_fetch = True

    async def fetch(self, max_messages: int, wait_s: float) -> Fetched:
        block_ms = max(1, int(wait_s * 1000)) if wait_s > 0 else None
        reply = await self._r.xreadgroup(GROUP, self._name, {self._stream: ">"},
                                         count=max_messages, block=block_ms)
        if not reply:
            return Fetched([], [])
        entries = reply[0][1]
        return Fetched([fields[FIELD] for _, fields in entries], [eid for eid, _ in entries])

    async def ack(self, fetched: Fetched) -> None:
        if fetched.token:
            acked = await self._r.xack(self._stream, GROUP, *fetched.token)
            if acked != len(fetched.token):
                raise RuntimeError(f"XACK acked {acked} of {len(fetched.token)}")

    async def close(self) -> None:
        await self._r.aclose()


class RedisPeer(Peer):
    name = "Redis Streams"
    durability = "AOF, appendfsync always: fsync before the reply"

    def __init__(self) -> None:
        super().__init__()
        self.port = 0
        self._consumers = 0
        self._admin: Any = None

    async def start(self, workdir: Path, start_cap_s: float) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise PeerUnavailable("redis-server is not installed (bench/setup_peers.sh)")
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:
            raise PeerUnavailable("the redis Python client is not installed") from exc
        self.version = debian_version("redis-server") or "?"
        self.client = f"redis-py {version('redis')}"
        data = workdir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        argv = [exe, "--bind", HOST, "--port", str(self.port), "--dir", str(data),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--daemonize", "no", "--protected-mode", "yes", "--logfile", ""]
        self.proc = spawn(argv, workdir / "redis.log")
        try:
            await wait_port(self.port, start_cap_s, self.proc)
        except RuntimeError as exc:
            raise PeerUnavailable(f"redis-server {exc}") from exc
        self._admin = aioredis.Redis(host=HOST, port=self.port)
        await self._admin.ping()

    async def stop(self) -> None:
        if self._admin is not None:
            await self._admin.aclose()
            self._admin = None
        await super().stop()

    def _connect(self) -> Any:
        import redis.asyncio as aioredis

        return aioredis.Redis(host=HOST, port=self.port, socket_timeout=60)

    async def create_topic(self, topic: str) -> None:
        await self._admin.delete(topic)
        await self._admin.xgroup_create(topic, GROUP, id="0", mkstream=True)

    async def delete_topic(self, topic: str) -> None:
        await self._admin.delete(topic)

    async def producer(self, topic: str) -> Producer:
        return RedisProducer(self._connect(), topic)

    async def consumer(self, topic: str) -> Consumer:
        self._consumers += 1
        return RedisConsumer(self._connect(), topic, f"c{self._consumers}")
