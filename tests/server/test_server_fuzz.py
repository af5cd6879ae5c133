"""Live fuzz: random and mutated frames on one connection get a coded error and a close,
while another connection on the same server keeps working."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import msgpack

from broker.client import Client
from broker.errors import ERRORS
from broker.protocol import Error, Response
from tests.server.serverharness import Raw

VALID_BODIES = [
    msgpack.packb({"t": "req", "id": 7, "op": "send", "args": {"topic": "f", "values": [b"a"]}}),
    msgpack.packb({"t": "req", "id": 8, "op": "ack", "args": {"receipts": ["x:1:0:0:f:g"]}}),
    msgpack.packb({"t": "credit", "sub": 3, "n": 2}),
]


def _cases(seed: int, n: int) -> list[bytes]:
    """Deterministic frame bodies: random bytes, random msgpack and mutated valid frames."""
    rng = random.Random(seed)
    out: list[bytes] = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            out.append(rng.randbytes(rng.randint(1, 64)))
        elif kind == 1:
            body = {"t": rng.choice(["req", "res", "push", "hello", "welcome", "zzz"]),
                    "id": rng.choice([1, -1, "x", None, 2**70 // 2**7]),
                    rng.choice(["op", "args", "sub"]): rng.choice([[], {}, b"\x00", 3.5])}
            out.append(msgpack.packb(body))
        else:
            body = bytearray(rng.choice(VALID_BODIES))
            for _ in range(rng.randint(1, 4)):
                body[rng.randrange(len(body))] = rng.randrange(256)
            out.append(bytes(body))
    return out


async def _fuzz_one(raw: Any, body: bytes) -> None:
    r: Raw = await raw()
    await r.handshake()
    r.writer.write(len(body).to_bytes(4, "big") + body)
    r.writer.write(b"\x00\x00\x00\x01\xc1")  # a sure-bad frame behind it, so every case ends
    events = await r.events(1)
    while not isinstance(events[-1], Error):
        assert isinstance(events[-1], Response)  # the mutation happened to stay valid
        events += await r.events(1)
    error = events[-1]
    assert isinstance(error, Error) and error.code in ERRORS
    assert await r.read_until_eof() == b""


async def test_fuzzed_connections_fail_alone(raw: Any, client: Client) -> None:
    await client.send("f", b"before")
    for body in _cases(seed=20261128, n=45):
        await asyncio.wait_for(_fuzz_one(raw, body), 5)
        assert await client.ping() >= 0
    before = (await client.describe_topic("f")).messages
    assert await client.send("f", b"after") == before  # the next offset: nothing was lost
