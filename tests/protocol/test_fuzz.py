"""Property: whatever bytes arrive, the decoder yields events or a coded ProtocolError."""

from __future__ import annotations

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import ERRORS
from broker.protocol import (
    NEED_DATA,
    Connection,
    Credit,
    Hello,
    ProtocolError,
    Request,
    Role,
    State,
    Welcome,
)
from broker.protocol.frames import event_to_map, pack

VALID = [
    pack(event_to_map(Hello("c1", ("producer",), "tok"))),
    pack(event_to_map(Request(1, "send", {"topic": "t", "values": [b"a", b"bc"]}))),
    pack(event_to_map(Request(2, "subscribe", {"topic": "t", "prefetch": 3}))),
    pack(event_to_map(Credit(2, 1))),
    pack({"t": "req", "id": 3, "op": "ack", "args": {"receipts": ["r1"]}}),
]
msg_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=4),
    max_leaves=12,
)


def _feed(conn: Connection, data: bytes, chunk: int) -> None:
    """Feed in chunks, draining after each; only coded ProtocolErrors may escape."""
    try:
        for i in range(0, len(data), max(chunk, 1)):
            conn.receive_data(data[i:i + chunk])
            while conn.next_event() is not NEED_DATA:
                pass
    except ProtocolError as exc:
        assert exc.code in ERRORS
        assert conn.state in (State.BROKEN, State.CLOSED)


def _server() -> Connection:
    return Connection(Role.SERVER, max_frame_bytes=4096)


@given(st.binary(max_size=2048), st.integers(1, 64))
def test_random_bytes_never_crash_the_decoder(data: bytes, chunk: int) -> None:
    _feed(_server(), data, chunk)
    client = Connection(Role.CLIENT, max_frame_bytes=4096)
    client.send(Hello("c"))
    _feed(client, data, chunk)


@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
       st.integers(0, 100), st.integers(1, 64))
def test_mutated_valid_frames_never_crash_the_decoder(flips: list[tuple[int, int]],
                                                      cut: int, chunk: int) -> None:
    data = bytearray(b"".join(VALID))
    for pos, value in flips:
        data[pos % len(data)] = value
    _feed(_server(), bytes(data[:len(data) - cut]), chunk)


@given(st.dictionaries(st.text(max_size=6), msg_values, max_size=6),
       st.sampled_from(["hello", "req", "credit", "res", "push", "close", "error", "x"]))
def test_random_maps_with_a_frame_type_never_crash_the_decoder(fields: dict[str, object],
                                                               kind: str) -> None:
    body = msgpack.packb({**fields, "t": kind}, use_bin_type=True)
    conn = _server()
    data = pack(event_to_map(Hello("c")))
    conn.receive_data(data)
    conn.next_event()
    conn.send(Welcome("i", 4096))
    _feed(conn, len(body).to_bytes(4, "big") + body, 7)
