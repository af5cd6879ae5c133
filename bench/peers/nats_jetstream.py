"""NATS JetStream: nats-server -js with a private store dir and a file-storage stream.

Producers issue 1,000 `publish_async` calls and gather their PubAcks (nats-py's
recommended way to keep many publishes in flight); consumers use a durable pull
consumer with explicit acks, `fetch(500)` and one ack per message. `Msg.ack()` publishes
the ack and returns without waiting for the server (`ack_sync` would wait), so the next
fetch is never held up by acks.

Durability, said plainly: the Debian build (2.9.x) has no `sync_interval` setting (its
config parser rejects the key; it arrived in 2.10), so JetStream acknowledges a publish
once the message is written to the file store, before fsync, and syncs on a timer. That
is weaker than the other systems here, which fsync before they acknowledge.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.common import HOST, debian_version, free_port, spawn, wait_port
from bench.peers.base import Consumer, Fetched, Peer, PeerUnavailable, Producer

DURABLE = "bench"
# Leases a pull consumer may hold; above what the workloads keep in flight (500 per fetch).
MAX_ACK_PENDING = 20_000
# nats-py's fetch(n) returns only when n messages came or its wait ended, so a consumer
# that wants each message as soon as it is stored has to use a short wait.
LOW_LATENCY_WAIT_S = 0.005


class NatsProducer(Producer):
    def __init__(self, nc: Any, subject: str) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._subject = subject

    async def publish(self, values: Sequence[bytes]) -> None:
        futures = [await self._js.publish_async(self._subject, v) for v in values]
        await asyncio.gather(*futures)

    async def close(self) -> None:
        await self._nc.close()


class NatsConsumer(Consumer):
    low_latency_wait_s = LOW_LATENCY_WAIT_S
    ack_confirmed = False  # Msg.ack() is a publish without a reply

    def __init__(self, nc: Any, psub: Any) -> None:
        self._nc = nc
        self._psub = psub

    async def fetch(self, max_messages: int, wait_s: float) -> Fetched:
        import nats.errors

        try:
            msgs = await self._psub.fetch(max_messages, timeout=max(wait_s, 0.001))
        except (TimeoutError, nats.errors.TimeoutError):
            return Fetched([], [])
        return Fetched([m.data for m in msgs], msgs)

    async def ack(self, fetched: Fetched) -> None:
        for m in fetched.token:
            await m.ack()

    async def ack_some(self, fetched: Fetched, keep: Sequence[int]) -> None:
        for i in keep:
            await fetched.token[i].ack()

    async def close(self) -> None:
        await self._nc.close()


class NatsPeer(Peer):
    name = "NATS JetStream"
    durability = ("file store; Debian 2.9 build has no sync_interval: "
                  "ack before fsync (timer sync)")

    def __init__(self) -> None:
        super().__init__()
        self.port = 0
        self._admin: Any = None

    async def start(self, workdir: Path, start_cap_s: float) -> None:
        exe = shutil.which("nats-server") or (
            "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
        if exe is None:
            raise PeerUnavailable("nats-server is not installed (bench/setup_peers.sh)")
        try:
            import nats
        except ImportError as exc:
            raise PeerUnavailable("the nats-py client is not installed") from exc
        self.version = debian_version("nats-server") or "?"
        self.client = f"nats-py {version('nats-py')}"
        store = workdir / "nats"
        store.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        argv = [exe, "-a", HOST, "-p", str(self.port), "-js", "-sd", str(store),
                "--server_name", "bench"]
        self.proc = spawn(argv, workdir / "nats.log")
        try:
            await wait_port(self.port, start_cap_s, self.proc)
        except RuntimeError as exc:
            raise PeerUnavailable(f"nats-server {exc}") from exc
        self._admin = await nats.connect(f"nats://{HOST}:{self.port}")

    async def stop(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
        await super().stop()

    async def _connect(self) -> Any:
        import nats

        return await nats.connect(f"nats://{HOST}:{self.port}", max_reconnect_attempts=0)

    async def create_topic(self, topic: str) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

        js = self._admin.jetstream()
        await self.delete_topic(topic)
        await js.add_stream(StreamConfig(name=topic, subjects=[topic], storage=StorageType.FILE))
        await js.add_consumer(topic, ConsumerConfig(
            durable_name=DURABLE, ack_policy=AckPolicy.EXPLICIT, ack_wait=60.0,
            max_ack_pending=MAX_ACK_PENDING))

    async def delete_topic(self, topic: str) -> None:
        from nats.js.errors import NotFoundError

        try:
            await self._admin.jetstream().delete_stream(topic)
        except NotFoundError:
            pass

    async def producer(self, topic: str) -> Producer:
        return NatsProducer(await self._connect(), topic)

    async def consumer(self, topic: str) -> Consumer:
        nc = await self._connect()
        psub = await nc.jetstream().pull_subscribe_bind(durable=DURABLE, stream=topic)
        return NatsConsumer(nc, psub)
