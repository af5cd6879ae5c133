"""The TCP server over real sockets against the real Broker: ops, errors, auth, limits."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import msgpack
import pytest

from broker.api import TopicConfig
from broker.broker import Broker
from broker.client import Client, ClientError
from broker.protocol import (
    Connection,
    Credit,
    Error,
    Hello,
    Push,
    Request,
    Response,
    Role,
    SubscriptionEnded,
    Welcome,
)
from broker.server import HANDLERS, Server, start_server
from broker.session import MAX_OUTSTANDING, Session
from spoolmq.config import Config
from tests.server.serverharness import Gate, Raw, wait_until


def frame(m: dict[str, Any]) -> bytes:
    body: bytes = msgpack.packb(m)
    return len(body).to_bytes(4, "big") + body


async def test_handshake_registers_the_client_with_its_address(server: Server) -> None:
    async with Client(f"tcp://127.0.0.1:{server.port}", client_id="w1",
                      roles=("producer",)) as c:
        assert c.incarnation == server.broker.incarnation
        await c.send("jobs", b"x")
        snap = await c.stats()
    (info,) = [ci for ci in snap.clients if ci.client_id == "w1"]
    assert info.protocol == "native" and info.address == "127.0.0.1"
    assert "producer" in info.roles


async def test_send_receive_ack_round_trip_keeps_keys_and_headers(client: Client) -> None:
    offsets = await client.send_batch("orders", [b"a", b"b", b"c"], keys=[b"k1", None, b"k3"],
                                      headers=[{"h": 1}, None, None])
    assert offsets == [0, 1, 2]
    msgs = await client.receive("orders", group="g", max=10)
    assert [m.value for m in msgs] == [b"a", b"b", b"c"]
    assert [m.key for m in msgs] == [b"k1", None, b"k3"]
    assert msgs[0].headers == {"h": 1} and msgs[1].headers is None
    assert all(m.topic == "orders" and m.delivery_count == 1 for m in msgs)
    assert await client.ack(msgs) == []
    failed = await client.ack(msgs[0])
    assert [f.error for f in failed] == ["stale_receipt"]
    assert await client.receive("orders", group="g", max=10) == []


async def test_nack_and_extend_settle_leases(client: Client) -> None:
    await client.send("t", b"v")
    (m,) = await client.receive("t", visibility=30)
    (ext,) = await client.extend(m, 60)
    assert ext.error is None and ext.deadline is not None and ext.deadline > m.deadline
    assert await client.nack(m) == []
    (again,) = await client.receive("t")
    assert again.offset == m.offset and again.delivery_count == 2


async def test_pipelined_requests_share_one_connection(client: Client, server: Server) -> None:
    await client.send_batch("p", [b"%d" % i for i in range(50)])
    results = await asyncio.gather(*(client.receive("p", group=f"g{i}", max=50)
                                     for i in range(20)), client.ping())
    assert all(len(r) == 50 for r in results[:20])
    assert len(server.sessions) == 1


async def test_admin_ops(client: Client) -> None:
    info = await client.create_topic("adm", TopicConfig(partitions=2))
    assert info.name == "adm" and info.partitions == 2
    with pytest.raises(ClientError) as exc:
        await client.create_topic("adm")
    assert exc.value.code == "topic_exists"
    await client.send("adm", b"x")
    await client.receive("adm", group="g1")
    assert [g.name for g in await client.groups("adm")] == ["g1"]
    assert (await client.describe_group("adm", "g1")).in_flight == 1
    assert "adm" in [t.name for t in await client.topics()]
    messages, _ = await client.browse("adm", partition=0)
    assert sum(len(m.value) for m in messages) <= 1
    assert (await client.stats()).messages_in_queue >= 1
    await client.delete_topic("adm")
    with pytest.raises(ClientError) as exc:
        await client.describe_topic("adm")
    assert exc.value.code == "topic_not_found"


async def test_broker_error_becomes_a_coded_error(client: Client) -> None:
    with pytest.raises(ClientError) as exc:
        await client.send("bad topic!", b"x")
    assert exc.value.code == "invalid_topic" and exc.value.retriable is False
    with pytest.raises(ClientError) as exc:
        await client.receive("t", max=0)
    assert exc.value.code == "invalid_argument"


async def test_unknown_op_and_bad_arguments_keep_the_connection(raw: Any) -> None:
    r: Raw = await raw()
    await r.handshake()
    r.send(Request(1, "no_such_op"))
    r.send(Request(2, "send", {"topic": "t", "values": "not a list"}))
    r.send(Request(3, "ping"))
    first, second, third = await r.events(3)
    assert isinstance(first, Response) and first.error and first.error.code == "bad_request"
    assert isinstance(second, Response) and second.error and second.error.code == "bad_request"
    assert isinstance(third, Response) and third.ok


async def test_unexpected_exception_becomes_internal_and_is_logged(
        broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    class Exploding(Gate):
        def snapshot(self) -> Any:
            raise RuntimeError("boom")

    srv = await start_server(Exploding(broker), "127.0.0.1", 0)  # type: ignore[arg-type]
    try:
        async with Client(f"tcp://127.0.0.1:{srv.port}") as c:
            with caplog.at_level(logging.ERROR, "broker.session"), \
                    pytest.raises(ClientError) as exc:
                await c.stats()
            assert exc.value.code == "internal" and exc.value.retriable
            assert "boom" in caplog.text
            assert await c.ping() >= 0  # the connection survived
    finally:
        srv.close()
        await srv.wait_closed()


async def test_malformed_frame_closes_only_that_connection(raw: Any, client: Client) -> None:
    r: Raw = await raw()
    await r.handshake()
    r.writer.write(b"\x00\x00\x00\x03\xc1\xc1\xc1")
    (err,) = await r.events(1)
    assert isinstance(err, Error) and err.code == "malformed_frame"
    assert await r.read_until_eof() == b""
    assert await client.ping() >= 0


async def test_oversized_frame_is_refused_from_its_header(raw: Any) -> None:
    r: Raw = await raw()
    await r.handshake()
    r.writer.write((3 * 1024 * 1024).to_bytes(4, "big") + b"\x80")
    (err,) = await r.events(1)
    assert isinstance(err, Error) and err.code == "payload_too_large"
    assert await r.read_until_eof() == b""


async def test_unsupported_version_is_refused(raw: Any) -> None:
    r: Raw = await raw()
    r.writer.write(frame({"t": "hello", "v": 99, "client_id": "x"}))
    (err,) = await r.events(1)
    assert isinstance(err, Error) and err.code == "unsupported_version"


async def test_request_before_hello_is_refused(raw: Any) -> None:
    r: Raw = await raw()
    r.writer.write(frame({"t": "req", "id": 1, "op": "ping"}))
    (err,) = await r.events(1)
    assert isinstance(err, Error) and err.code == "bad_request"
    assert "AWAIT_HELLO" in err.message and "Request" in err.message


async def test_authorize_refuses_missing_token_and_forbidden_ops(broker: Broker) -> None:
    def authorize(token: str | None, op: str, topic: str | None) -> str | None:
        if token not in ("rw", "ro"):
            return "unauthorized"
        if token == "ro" and op == "send":
            return "forbidden"
        return None

    srv = await start_server(broker, "127.0.0.1", 0, authorize=authorize)
    url = f"tcp://127.0.0.1:{srv.port}"
    try:
        with pytest.raises(ClientError) as exc:
            await Client(url, connect_timeout=2).connect()
        assert exc.value.code == "unauthorized"
        async with Client(url, token="ro") as ro:
            assert await ro.ping() >= 0
            with pytest.raises(ClientError) as exc:
                await ro.send("t", b"x")
            assert exc.value.code == "forbidden"
        async with Client(url, token="rw") as rw:
            assert await rw.send("t", b"x") == 0
    finally:
        srv.close()
        await srv.wait_closed()


async def test_reading_pauses_over_the_outstanding_limit(broker: Broker) -> None:
    gate = Gate(broker, gated=("receive_columns",))
    srv = await start_server(gate, "127.0.0.1", 0)  # type: ignore[arg-type]
    try:
        async with Client(f"tcp://127.0.0.1:{srv.port}") as c:
            calls = [asyncio.ensure_future(c.receive("t", group=f"g{i}"))
                     for i in range(MAX_OUTSTANDING + 8)]
            (session,) = srv.sessions
            await wait_until(lambda: len(gate.calls.get("receive_columns", [])) >= MAX_OUTSTANDING)
            assert session._reading_paused
            assert len(gate.calls["receive_columns"]) == MAX_OUTSTANDING  # the rest wait unread
            gate.open()
            assert all(r == [] for r in await asyncio.gather(*calls))
            assert not session._reading_paused
            assert len(gate.calls["receive_columns"]) == MAX_OUTSTANDING + 8
    finally:
        srv.close()
        await srv.wait_closed()


async def test_subscription_pushes_within_credit(raw: Any, client: Client) -> None:
    await client.send_batch("s", [b"%d" % i for i in range(10)])
    r: Raw = await raw()
    await r.handshake()
    r.send(Request(1, "subscribe", {"topic": "s", "group": "g", "prefetch": 3}))
    events = await r.events(2)
    assert isinstance(events[0], Response) and events[0].result == {"sub": 1}
    assert isinstance(events[1], Push) and events[1].count == 3
    assert r.conn.credit(1) == 0
    r.send(Credit(1, 4))
    (push,) = await r.events(1)
    assert isinstance(push, Push) and push.messages["offset"] == [3, 4, 5, 6]
    r.send(Request(2, "unsubscribe", {"sub": 1}))
    (res,) = await r.events(1)
    assert isinstance(res, Response) and res.ok


async def test_subscription_ends_with_an_error_when_its_topic_is_bad(raw: Any) -> None:
    r: Raw = await raw()
    await r.handshake()
    r.send(Request(1, "subscribe", {"topic": "bad topic", "prefetch": 3}))
    res, end = await r.events(2)
    assert isinstance(res, Response) and res.ok
    assert isinstance(end, SubscriptionEnded) and end.error and end.error.code == "invalid_topic"


async def test_receive_larger_than_one_frame_returns_what_fits(client: Client) -> None:
    big = b"x" * (900 * 1024)
    await client.send_batch("big", [big] * 5)
    seen: list[int] = []
    for _ in range(5):
        msgs = await client.receive("big", max=5)
        assert 1 <= len(msgs) <= 2
        seen += [m.offset for m in msgs]
        await client.ack(msgs)
        if len(seen) == 5:
            break
    assert sorted(seen) == [0, 1, 2, 3, 4]


async def test_file_store_round_trip_across_a_broker_restart(tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path / "data")
    b1 = Broker(config)
    await b1.start()
    srv = await start_server(b1, "127.0.0.1", 0)
    port = srv.port
    c = Client(f"tcp://127.0.0.1:{port}", client_id="durable")
    try:
        assert await c.send_batch("d", [b"one", b"two"]) == [0, 1]
        first_incarnation = c.incarnation
        srv.close()
        await srv.wait_closed()
        await b1.stop()
        b2 = Broker(config)
        await b2.start()
        srv = await start_server(b2, "127.0.0.1", port)
        try:
            msgs = await c.receive("d", max=10)
            assert [m.value for m in msgs] == [b"one", b"two"]
            assert c.incarnation != first_incarnation and c.connects == 2
            assert await c.ack(msgs) == []
        finally:
            await c.close()
            srv.close()
            await srv.wait_closed()
            await b2.stop()
    finally:
        await c.close()


class FakeTransport(asyncio.Transport):
    """Records what the session writes and whether it wants to read."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.reading = True
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else default


async def test_a_peer_that_does_not_read_its_answers_stops_being_read(broker: Broker) -> None:
    sessions: set[Session] = set()
    session = Session(broker, HANDLERS, None, sessions.add, sessions.discard, 1 << 20)
    transport = FakeTransport()
    session.connection_made(transport)
    client = Connection(Role.CLIENT)
    session.data_received(client.send(Hello("c")))
    client.receive_data(bytes(transport.written))
    transport.written.clear()
    assert isinstance(client.next_event(), Welcome)
    session.pause_writing()  # the transport's buffer passed its high-water mark
    assert not transport.reading
    session.data_received(b"".join(client.send(Request(i, "ping")) for i in range(10)))
    await asyncio.sleep(0)
    assert session.conn.pending_requests == 0  # buffered, not started
    session.resume_writing()
    assert transport.reading
    await wait_until(lambda: session.requests_served == 10)
    client.receive_data(bytes(transport.written))
    answers = [client.next_event() for _ in range(10)]
    assert all(isinstance(a, Response) and a.ok for a in answers)
    assert client.pending_requests == 0


async def test_send_and_receive_in_runs_form(raw: Any) -> None:
    r: Raw = await raw()
    welcome = await r.handshake()
    r.send(Request(1, "send", {"topic": "runs", "values": [b"a", b"b", b"c"], "runs": True}))
    (sent,) = await r.events(1)
    assert isinstance(sent, Response) and sent.result["runs"] == [[0, 0, 3]]
    r.send(Request(2, "receive", {"topic": "runs", "group": "g", "max": 10, "runs": True}))
    (got,) = await r.events(1)
    assert isinstance(got, Response) and got.ok
    res = got.result
    assert (res["topic"], res["group"], res["incarnation"]) == ("runs", "g",
                                                                welcome.incarnation)
    ((p, first, lease, _deadline, values, keys, headers, ts, counts),) = res["runs"]
    assert (p, first, values, keys, headers, counts) == (0, 0, [b"a", b"b", b"c"], None, None,
                                                         1)
    assert isinstance(ts, int)
    r.send(Request(3, "ack", {"receipts": [f"{welcome.incarnation}:{lease}:0:0-2:runs:g"]}))
    (acked,) = await r.events(1)
    assert isinstance(acked, Response) and acked.result == {"errors": None}


async def test_send_values_of_a_wrong_type_are_a_bad_request(raw: Any) -> None:
    r: Raw = await raw()
    await r.handshake()
    r.send(Request(1, "send", {"topic": "t", "values": [b"a", "text"]}))
    (res,) = await r.events(1)
    assert isinstance(res, Response) and res.error is not None
    assert res.error.code == "bad_request"
