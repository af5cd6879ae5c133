"""Tokens and TLS on the native server, and the fast message constructors' equivalence."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import uvloop

from broker.broker import Broker
from broker.client import Client, ClientError, Message
from broker.client.types import LeaseRef, make_message
from broker.server import start_server, token_authorizer
from spoolmq.config import TokenConfig
from tests.certs import self_signed


def test_fast_constructors_build_equal_values() -> None:
    row = ("t", 0, 5, b"v", b"k", {"h": 1}, 123, 2, "r", 9.5)
    assert make_message(*row) == Message(*row)
    assert make_message(*row).lease is None
    lease = LeaseRef("inc", 7, "g")
    assert make_message(*row, lease) == Message(*row, lease=lease)
    with pytest.raises(AttributeError):
        make_message(*row).value = b"other"  # type: ignore[misc]  # still frozen


def test_token_authorizer_checks_token_right_and_topic() -> None:
    assert token_authorizer([]) is None
    authorize = token_authorizer([
        TokenConfig("prod", topics=("orders.*",), rights=("produce",)),
        TokenConfig("root"),
    ])
    assert authorize is not None
    assert authorize(None, "hello", None) == "unauthorized"
    assert authorize("nope", "hello", None) == "unauthorized"
    assert authorize("prod", "hello", None) is None
    assert authorize("prod", "send", "orders.eu") is None
    assert authorize("prod", "send", "billing") == "forbidden"
    assert authorize("prod", "receive", "orders.eu") == "forbidden"
    assert authorize("prod", "ping", None) is None
    assert authorize("root", "delete_topic", "anything") is None


async def test_configured_tokens_guard_the_server(broker: Broker) -> None:
    authorize = token_authorizer([TokenConfig("ro", rights=("consume",)), TokenConfig("rw")])
    srv = await start_server(broker, "127.0.0.1", 0, authorize=authorize)
    url = f"tcp://127.0.0.1:{srv.port}"
    try:
        with pytest.raises(ClientError) as exc:
            await Client(url, token="wrong", connect_timeout=2).connect()
        assert exc.value.code == "unauthorized" and not exc.value.retriable
        async with Client(url, token="ro") as ro, Client(url, token="rw") as rw:
            assert await rw.send("g", b"x") == 0
            with pytest.raises(ClientError) as exc:
                await ro.send("g", b"x")
            assert exc.value.code == "forbidden"
            (msg,) = await ro.receive("g")
            assert await ro.ack(msg) == []
            with pytest.raises(ClientError) as exc:
                await ro.topics()
            assert exc.value.code == "forbidden"
    finally:
        srv.close()
        await srv.wait_closed()




async def test_tls_round_trip_and_untrusting_client_is_refused(broker: Broker,
                                                               tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    srv = await start_server(broker, "127.0.0.1", 0, ssl=server_ctx)
    url = f"tls://127.0.0.1:{srv.port}"
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        async with Client(url, ssl=trusting) as c:
            assert await c.send("sec", b"over tls") == 0
            assert [m.value for m in await c.receive("sec")] == [b"over tls"]
        with pytest.raises(ClientError) as exc:
            await Client(url, connect_timeout=30).connect()  # default trust store
        assert exc.value.code == "unavailable" and not exc.value.retriable  # fails at once
        assert "not trusted" in exc.value.message
    finally:
        srv.close()
        await srv.wait_closed()


def test_server_and_client_run_on_uvloop() -> None:
    async def scenario() -> list[bytes]:
        broker = Broker(memory=True)
        await broker.start()
        srv = await start_server(broker, "127.0.0.1", 0)
        try:
            async with Client(f"tcp://127.0.0.1:{srv.port}") as c:
                await c.send_batch("uv", [b"a", b"b"])
                async with c.subscribe("uv", prefetch=2) as sub:
                    got = [await sub.__anext__(), await sub.__anext__()]
                    await c.ack(got)
                return [m.value for m in got]
        finally:
            srv.close()
            await srv.wait_closed()
            await broker.stop()

    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(asyncio.wait_for(scenario(), 10)) == [b"a", b"b"]
    finally:
        loop.close()
