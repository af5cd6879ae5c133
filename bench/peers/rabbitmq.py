"""RabbitMQ: a private rabbitmq-server node on loopback with a durable classic queue.

Producers publish persistent messages on a channel with publisher confirms, 1,000 in
flight, and wait for every confirm (RabbitMQ confirms a persistent message on a durable
queue once it is fsynced). Consumers use manual acks with prefetch 500; a fetch takes
what has been pushed and the ack uses `multiple=True` on its last delivery tag. AMQP's
basic.ack has no reply, so the ack returns once written and the broker keeps pushing
deliveries meanwhile.

Isolation: node name, AMQP port, Erlang distribution port, epmd port, mnesia and log dirs
are all private to this run and bound to 127.0.0.1; no plugins. The Erlang schedulers are
told not to busy-wait (`+sbwt none`), which RabbitMQ advises on hosts shared with other
busy processes, as this two-core machine is during the benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.common import HOST, debian_version, free_port, spawn, wait_port
from bench.peers.base import Consumer, Fetched, Peer, PeerUnavailable, Producer

PREFETCH = 500  # unacked deliveries the broker pushes ahead to one consumer
SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
ERL_ARGS = ("+sbwt none +sbwtdcpu none +sbwtdio none "
            "-kernel inet_dist_use_interface {127,0,0,1}")


class RabbitProducer(Producer):
    def __init__(self, conn: Any, channel: Any, queue: str) -> None:
        self._conn = conn
        self._channel = channel
        self._queue = queue

    async def publish(self, values: Sequence[bytes]) -> None:
        from aio_pika import DeliveryMode, Message

        exchange = self._channel.default_exchange
        await asyncio.gather(*(
            exchange.publish(Message(v, delivery_mode=DeliveryMode.PERSISTENT),
                             routing_key=self._queue)
            for v in values))

    async def close(self) -> None:
        await self._conn.close()


class RabbitConsumer(Consumer):
    # basic.ack has no reply; acks also must reach the channel in delivery tag order for
    # multiple=True, which running them one after another keeps.
    ack_confirmed = False

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._buffer: list[Any] = []
        self._arrived = asyncio.Event()

    async def on_message(self, message: Any) -> None:
        self._buffer.append(message)
        self._arrived.set()

    async def fetch(self, max_messages: int, wait_s: float) -> Fetched:
        if not self._buffer and wait_s > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), wait_s)
        taken = self._buffer[:max_messages]
        del self._buffer[:max_messages]
        return Fetched([m.body for m in taken], taken)

    async def ack(self, fetched: Fetched) -> None:
        if fetched.token:
            # Deliveries on one channel arrive in tag order and are taken in that order,
            # so acking the last with multiple=True acks exactly this batch.
            await fetched.token[-1].ack(multiple=True)

    async def ack_some(self, fetched: Fetched, keep: Sequence[int]) -> None:
        for i in keep:
            await fetched.token[i].ack()

    async def close(self) -> None:
        await self._conn.close()


class RabbitPeer(Peer):
    name = "RabbitMQ"
    durability = "durable classic queue, persistent messages: confirm after fsync"

    def __init__(self) -> None:
        super().__init__()
        self.port = 0
        self._epmd_port = 0
        self._admin: Any = None
        self._admin_channel: Any = None

    async def start(self, workdir: Path, start_cap_s: float) -> None:
        if not Path(SERVER).exists():
            raise PeerUnavailable("rabbitmq-server is not installed (bench/setup_peers.sh)")
        try:
            import aio_pika
        except ImportError as exc:
            raise PeerUnavailable("the aio-pika client is not installed") from exc
        self.version = debian_version("rabbitmq-server") or "?"
        self.client = f"aio-pika {version('aio-pika')}"
        base = workdir / "rabbitmq"
        base.mkdir(parents=True, exist_ok=True)
        (base / "enabled_plugins").write_text("[].\n")
        self.port = free_port()
        dist_port = free_port()
        self._epmd_port = free_port()
        env = {
            "HOME": str(base),  # the Erlang cookie is written here
            "RABBITMQ_NODENAME": f"bench{os.getpid()}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "ERL_EPMD_PORT": str(self._epmd_port),
            "ERL_EPMD_ADDRESS": HOST,
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": ERL_ARGS,
        }
        self.proc = spawn([SERVER], workdir / "rabbitmq.log", env=env, cwd=base)
        started = time.monotonic()
        try:
            await wait_port(self.port, start_cap_s, self.proc)
        except RuntimeError as exc:
            await self.stop()
            raise PeerUnavailable(f"rabbitmq-server {exc}") from exc
        # The port opens a moment before the node accepts AMQP logins: retry, bounded.
        last: Exception | None = None
        while time.monotonic() - started < start_cap_s:
            try:
                self._admin = await aio_pika.connect(self.url(), timeout=10)
                break
            except Exception as exc:  # any connect failure: retry until the cap
                last = exc
                await asyncio.sleep(0.5)
        if self._admin is None:
            await self.stop()
            raise PeerUnavailable(f"rabbitmq-server refused AMQP logins: {last}")
        self._admin_channel = await self._admin.channel()

    def url(self) -> str:
        return f"amqp://guest:guest@{HOST}:{self.port}/"

    async def stop(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()
            self._admin = None
        await super().stop()
        if self._epmd_port and shutil.which("epmd"):
            # The node started an epmd of its own on a private port; end that one only.
            subprocess.run(["epmd", "-port", str(self._epmd_port), "-kill"],
                           capture_output=True, check=False, timeout=10)
        self._epmd_port = 0

    async def create_topic(self, topic: str) -> None:
        await self.delete_topic(topic)
        await self._admin_channel.declare_queue(topic, durable=True)

    async def delete_topic(self, topic: str) -> None:
        await self._admin_channel.queue_delete(topic)

    async def producer(self, topic: str) -> Producer:
        import aio_pika

        conn = await aio_pika.connect(self.url(), timeout=10)
        channel = await conn.channel(publisher_confirms=True)
        return RabbitProducer(conn, channel, topic)

    async def consumer(self, topic: str) -> Consumer:
        import aio_pika

        conn = await aio_pika.connect(self.url(), timeout=10)
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.declare_queue(topic, durable=True, passive=True)
        consumer = RabbitConsumer(conn)
        await queue.consume(consumer.on_message, no_ack=False)
        return consumer
