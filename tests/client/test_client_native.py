"""The native client against a real server and the real Broker: batching, reconnect,
in-flight failures, subscriptions with lease keeping, and the blocking wrapper."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from broker.api import TopicConfig
from broker.broker import Broker
from broker.client import BlockingClient, Client, ClientError, Received, parse_url
from broker.client.client import _ranges
from broker.client.types import LeaseRef, make_messages
from broker.server import Server, start_server
from broker.session import Session
from spoolmq.config import Config
from tests.server.serverharness import Gate, wait_until


async def _serve(broker: object, port: int = 0) -> Server:
    return await start_server(broker, "127.0.0.1", port)  # type: ignore[arg-type]


def test_parse_url() -> None:
    assert parse_url("tcp://10.0.0.1:9000") == parse_url("10.0.0.1:9000")
    assert parse_url("tls://h").port == 7070 and parse_url("tls://h").tls
    with pytest.raises(ValueError):
        parse_url("http://h:1")


async def test_concurrent_sends_are_coalesced_into_few_requests(broker: Broker) -> None:
    gate = Gate(broker)
    srv = await _serve(gate)
    try:
        async with Client(f"tcp://127.0.0.1:{srv.port}") as c:
            offsets = await asyncio.gather(*(c.send("co", b"m%d" % i) for i in range(300)))
            assert sorted(offsets) == list(range(300))
            assert len(gate.calls["send_columns"]) <= 2
            msgs = await c.receive("co", max=300)
            assert [m.value for m in msgs] == [b"m%d" % i for i in range(300)]
    finally:
        srv.close()
        await srv.wait_closed()


async def test_a_lone_send_goes_out_at_once_and_later_ones_wait_for_it(broker: Broker) -> None:
    gate = Gate(broker, gated=("send_columns",))
    srv = await _serve(gate)
    try:
        async with Client(f"tcp://127.0.0.1:{srv.port}") as c:
            first = asyncio.ensure_future(c.send("lone", b"first"))
            # It reaches the broker alone, without waiting for company or a timer.
            await wait_until(lambda: len(gate.calls.get("send_columns", [])) == 1)
            assert len(gate.calls["send_columns"][0][1]) == 1
            rest = [asyncio.ensure_future(c.send("lone", b"r%d" % i)) for i in range(10)]
            await asyncio.sleep(0)
            assert len(gate.calls["send_columns"]) == 1  # queued behind the one in flight
            gate.open()
            assert await first == 0
            assert await asyncio.gather(*rest) == list(range(1, 11))
            assert [len(call[1]) for call in gate.calls["send_columns"]] == [1, 10]
    finally:
        srv.close()
        await srv.wait_closed()


async def test_send_batch_splits_by_bytes_and_keeps_order(broker: Broker) -> None:
    gate = Gate(broker)
    srv = await _serve(gate)
    try:
        async with Client(f"tcp://127.0.0.1:{srv.port}", max_batch_bytes=1000) as c:
            offsets = await c.send_batch("sb", [b"x" * 100] * 50)
            assert offsets == list(range(50))
            assert len(gate.calls["send_columns"]) == 5
            assert await c.send_batch("sb", ["text"]) == [50]
    finally:
        srv.close()
        await srv.wait_closed()


async def test_errors_carry_code_message_and_retriable(client: Client) -> None:
    with pytest.raises(ClientError) as exc:
        await client.receive("no good")
    assert exc.value.code == "invalid_topic" and not exc.value.retriable
    assert "invalid_topic" in str(exc.value)


async def test_connecting_to_nothing_fails_unavailable_after_the_timeout() -> None:
    srv = await _serve(object())
    port = srv.port
    srv.close()
    await srv.wait_closed()
    start = time.monotonic()
    with pytest.raises(ClientError) as exc:
        await Client(f"tcp://127.0.0.1:{port}", connect_timeout=0.3).connect()
    assert exc.value.code == "unavailable" and exc.value.retriable
    assert time.monotonic() - start < 3


async def test_a_server_that_never_welcomes_fails_unavailable_after_the_timeout() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)  # reads the hello, answers nothing

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ClientError) as exc:
            await Client(f"tcp://127.0.0.1:{port}", connect_timeout=0.3).connect()
        assert exc.value.code == "unavailable" and exc.value.retriable
        assert accepted
    finally:
        for w in accepted:
            w.close()
        srv.close()
        await srv.wait_closed()


async def test_reconnects_after_a_server_restart(broker: Broker) -> None:
    srv = await _serve(broker)
    port = srv.port
    async with Client(f"tcp://127.0.0.1:{port}") as c:
        assert await c.send("rc", b"a") == 0
        srv.close()
        await srv.wait_closed()
        srv = await _serve(broker, port)
        try:
            assert await c.send("rc", b"b") == 1
            assert c.connects == 2
        finally:
            srv.close()
            await srv.wait_closed()


async def test_in_flight_receive_fails_retriable_when_the_connection_drops(
        broker: Broker) -> None:
    gate = Gate(broker, gated=("receive_columns",))
    srv = await _serve(gate)
    port = srv.port
    async with Client(f"tcp://127.0.0.1:{port}") as c:
        pending = asyncio.ensure_future(c.receive("drop"))
        await wait_until(lambda: "receive_columns" in gate.calls)
        srv.close()
        with pytest.raises(ClientError) as exc:
            await pending
        assert exc.value.code == "unavailable" and exc.value.retriable
        assert "may or may not" in exc.value.message
        gate.open()
        await srv.wait_closed()


async def test_in_flight_idempotent_request_is_resent_after_reconnect(broker: Broker) -> None:
    servers: list[Server] = []

    class DropsFirstStats(Gate):
        def snapshot(self) -> object:
            if not self.calls.get("snapshot"):
                self.calls["snapshot"] = [()]
                for session in list(servers[0].sessions):
                    session.transport.abort()  # type: ignore[union-attr]
            return broker.snapshot()

    srv = await _serve(DropsFirstStats(broker))
    servers.append(srv)
    try:
        async with Client(f"tcp://127.0.0.1:{srv.port}") as c:
            snap = await c.stats()
            assert snap.timestamp > 0 and c.connects == 2
    finally:
        srv.close()
        await srv.wait_closed()


async def test_subscription_keeps_leases_while_the_handler_runs(client: Client,
                                                                server: Server) -> None:
    await client.send_batch("keep", [b"slow"])
    async with client.subscribe("keep", group="g", prefetch=1, visibility=0.6) as sub:
        msg = await asyncio.wait_for(sub.__anext__(), 5)
        await asyncio.sleep(1.5)  # the handler works for 2.5 visibility timeouts
        async with Client(f"tcp://127.0.0.1:{server.port}") as other:
            assert await other.receive("keep", group="g") == []
        assert await client.ack(msg) == []
    info = await client.describe_group("keep", "g")
    assert info.in_flight == 0 and info.lag == 0


async def test_subscription_grants_credit_as_messages_are_acked(client: Client) -> None:
    await client.send_batch("cr", [b"%d" % i for i in range(20)])
    got: list[int] = []
    async with client.subscribe("cr", group="g", prefetch=4) as sub:
        await wait_until(lambda: sub.describe()["buffered"] == 4)
        async for msg in sub:
            got.append(msg.offset)
            assert sub.describe()["unsettled"] <= 4
            await client.ack(msg)
            if len(got) == 20:
                break
    assert got == list(range(20))


async def test_closing_a_subscription_hands_back_unread_messages(client: Client) -> None:
    await client.send_batch("hb", [b"a", b"b", b"c"])
    async with client.subscribe("hb", group="g", prefetch=3) as sub:
        await wait_until(lambda: sub.describe()["buffered"] == 3)
        first = await sub.__anext__()
        await client.ack(first)
    again = await client.receive("hb", group="g", max=10)
    assert [m.offset for m in again] == [1, 2]


async def test_blocking_client_round_trip(server: Server) -> None:
    url = f"tcp://127.0.0.1:{server.port}"

    def script() -> list[bytes]:
        with BlockingClient(url, client_id="script") as bc:
            assert bc.send("blk", "hello") == 0
            assert bc.send_batch("blk", [b"a", b"b"]) == [1, 2]
            msgs = bc.receive("blk", max=10)
            assert bc.nack(msgs[1:]) == []
            assert bc.ack(msgs[:1]) == []
            with bc.subscribe("blk", prefetch=2) as sub:
                pushed = [sub.next(timeout=5), sub.next(timeout=5)]
                bc.ack(pushed)
            assert "blk" in [t.name for t in bc.topics()]
            return [m.value for m in msgs + pushed]

    values = await asyncio.to_thread(script)
    assert values == [b"hello", b"a", b"b", b"a", b"b"]


async def test_blocking_client_reports_connect_failures() -> None:
    def script() -> None:
        BlockingClient("tcp://127.0.0.1:1", connect_timeout=0.2)

    with pytest.raises(ClientError) as exc:
        await asyncio.to_thread(script)
    assert exc.value.code == "unavailable"


async def test_file_store_broker_serves_a_subscription(tmp_path: object) -> None:
    broker = Broker(Config(data_dir=tmp_path / "d"))  # type: ignore[operator]
    await broker.start()
    srv = await _serve(broker)
    try:
        async with Client(f"tcp://127.0.0.1:{srv.port}") as c:
            await c.send_batch("fs", [b"%d" % i for i in range(5)])
            async with c.subscribe("fs", prefetch=5) as sub:
                seen = []
                async for m in sub:
                    seen.append(m.value)
                    await c.ack(m)
                    if len(seen) == 5:
                        break
            assert seen == [b"0", b"1", b"2", b"3", b"4"]
    finally:
        srv.close()
        await srv.wait_closed()
        await broker.stop()


async def test_subscription_survives_a_server_restart(broker: Broker) -> None:
    srv = await _serve(broker)
    port = srv.port
    async with Client(f"tcp://127.0.0.1:{port}") as c:
        await c.send_batch("re", [b"a"])
        async with c.subscribe("re", group="g", prefetch=2) as sub:
            first = await asyncio.wait_for(sub.__anext__(), 5)
            srv.close()
            await srv.wait_closed()
            srv = await _serve(broker, port)
            try:
                await c.send_batch("re", [b"b"])
                second = await asyncio.wait_for(sub.__anext__(), 5)
                assert (first.value, second.value) == (b"a", b"b")
                assert c.connects == 2
                assert await c.ack([first, second]) == []  # same incarnation: still valid
            finally:
                srv.close()
                await srv.wait_closed()


async def test_ack_of_a_whole_receive_is_one_range_receipt(broker: Broker) -> None:
    gate = Gate(broker)
    srv = await _serve(gate)
    try:
        async with Client(f"tcp://127.0.0.1:{srv.port}") as c:
            await c.send_batch("rr", [b"m%d" % i for i in range(500)])
            msgs = await c.receive("rr", group="g", max=500)
            assert [m.offset for m in msgs] == list(range(500))
            lease = msgs[7].lease
            assert lease is not None and all(m.lease is lease for m in msgs)
            assert msgs[7].receipt == f"{c.incarnation}:{lease.lease_id}:0:7:rr:g"
            assert await c.ack(msgs) == []
            (receipts,) = [call[0] for call in gate.calls["ack"]]
            assert len(receipts) == 1 and receipts[0].split(":")[3] == "0-499"
            assert (await c.describe_group("rr", "g")).ack_floor == {0: 500}
    finally:
        srv.close()
        await srv.wait_closed()


async def test_a_failed_range_is_settled_one_by_one_to_name_the_failures(client: Client
                                                                        ) -> None:
    await client.send_batch("fr", [b"m%d" % i for i in range(10)])
    msgs = await client.receive("fr", group="g", max=10)
    assert await client.ack(msgs[2:4]) == []
    failed = await client.ack(msgs)
    assert sorted(r.receipt for r in failed) == sorted(m.receipt for m in msgs[2:4])
    assert all(r.error == "stale_receipt" for r in failed)
    assert (await client.describe_group("fr", "g")).ack_floor == {0: 10}


async def test_nack_of_a_run_hands_it_back_in_one_receipt(client: Client) -> None:
    await client.send_batch("nr", [b"a", b"b", b"c"])
    msgs = await client.receive("nr", group="g", max=3)
    assert await client.nack(msgs[1:]) == []
    again = await client.receive("nr", group="g", max=3)
    assert [(m.offset, m.delivery_count) for m in again] == [(1, 2), (2, 2)]


async def test_a_received_list_is_acked_by_its_runs_until_it_is_changed(client: Client
                                                                        ) -> None:
    await client.create_topic("runs2", TopicConfig(partitions=2))
    await client.send_batch("runs2", [b"m%d" % i for i in range(20)],
                            keys=[b"k%d" % (i % 5) for i in range(20)])
    msgs = await client.receive("runs2", group="g", max=20)
    assert isinstance(msgs, Received) and msgs.runs is not None and len(msgs.runs) == 2
    # The runs give the receipts that looking at each message gives.
    assert _ranges(msgs) == _ranges(list(msgs))
    assert type(msgs[:3]) is list and type(msgs.copy()) is list
    msgs.reverse()  # changed in place: the runs are forgotten
    assert msgs.runs is None
    receipts, _ = _ranges(msgs)
    assert receipts == _ranges(list(msgs))[0] and len(receipts) == 20  # descending offsets
    msgs.sort(key=lambda m: (m.partition, m.offset))
    assert len(_ranges(msgs)[0]) == 2
    assert await client.ack(msgs) == []
    info = await client.describe_group("runs2", "g")
    assert sum(info.ack_floor.values()) == 20


def test_changing_a_received_list_forgets_its_runs() -> None:
    changes: list[Callable[[Received], object]] = [
        lambda r: r.append(r[0]), lambda r: r.extend([r[0]]), lambda r: r.insert(0, r[0]),
        lambda r: r.pop(), lambda r: r.remove(r[0]), lambda r: r.clear(),
        lambda r: r.sort(key=id), lambda r: r.reverse(), lambda r: r.__setitem__(0, r[1]),
        lambda r: r.__delitem__(0), lambda r: r.__iadd__([r[0]]), lambda r: r.__imul__(2),
    ]
    lease = LeaseRef("inc", 1, "g")
    for change in changes:
        r = Received(make_messages([("t", 0, o, b"v", None, None, 0, 1, None, 0.0, lease)
                                    for o in range(3)]), [(0, 3)])
        change(r)
        assert r.runs is None


async def test_requests_made_in_one_turn_leave_in_one_socket_write(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    original = Session.data_received

    def counting(self: Session, data: bytes) -> None:
        reads.append(len(data))
        original(self, data)

    monkeypatch.setattr(Session, "data_received", counting)
    async with Client(f"tcp://127.0.0.1:{server.port}") as c:
        await c.ping()
        reads.clear()
        await asyncio.gather(*(c.ping() for _ in range(20)))
        # One write of twenty frames: on loopback the server reads it in one piece.
        assert len(reads) == 1 and reads[0] > 20 * 4
