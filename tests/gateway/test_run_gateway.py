"""run_gateway: the composition root's entry point listens, refuses unsafe binds, stops."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import aiohttp
import pytest

from http_gateway.app import run_gateway
from http_gateway.security import UnsafeBindError
from spoolmq.config import Config
from tests.gateway.conftest import make_broker


async def test_run_gateway_listens_on_the_configured_address(tmp_path: Path) -> None:
    config = dataclasses.replace(Config(), data_dir=tmp_path, http_port=0)
    broker = make_broker(config)
    await broker.start()
    runner = await run_gateway(broker, config)
    try:
        host, port = runner.addresses[0][:2]
        assert host == "127.0.0.1"
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/send",
                                    data={"message": "Hello World"}) as resp:
                assert resp.status == 200
                assert (await resp.json())["status"] == "Message sent"
            async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert (await resp.json())["status"] == "ok"
    finally:
        await runner.cleanup()
        await broker.stop()


async def test_run_gateway_refuses_a_public_address_without_tokens(tmp_path: Path) -> None:
    config = dataclasses.replace(Config(), data_dir=tmp_path, http_port=0, host="0.0.0.0")
    broker = make_broker(config)
    await broker.start()
    try:
        with pytest.raises(UnsafeBindError, match="tokens"):
            await run_gateway(broker, config)
    finally:
        await broker.stop()
