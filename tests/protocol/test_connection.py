"""The sans-IO connection: handshake, pipelining, credit, the state table and bad input."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgpack
import pytest

from broker.protocol import (
    MAX_CREDIT,
    NEED_DATA,
    Close,
    Connection,
    Credit,
    Error,
    ErrorInfo,
    Event,
    Hello,
    LocalProtocolError,
    ProtocolError,
    Push,
    RemoteProtocolError,
    Request,
    Response,
    Role,
    State,
    SubscriptionEnded,
    Welcome,
)
from broker.protocol.connection import _TRANSITIONS, Direction
from broker.protocol.frames import event_to_map, pack

if TYPE_CHECKING:
    from conftest import Pair


def _push(sub: int, n: int) -> Push:
    return Push(sub, {"topic": "t", "offset": list(range(n))})


def test_handshake_opens_both_ends(pair: Pair) -> None:
    assert pair.client.state is State.AWAIT_HELLO
    assert pair.to_server(Hello("c1", ("producer",), token="s3cret")) == [
        Hello("c1", ("producer",), "s3cret")]
    assert pair.server.state is State.AWAIT_WELCOME
    assert pair.server.hello == Hello("c1", ("producer",), "s3cret")
    pair.to_client(Welcome("inc-7", 4096))
    assert pair.client.state is State.OPEN and pair.server.state is State.OPEN
    assert pair.client.welcome is not None and pair.client.welcome.incarnation == "inc-7"
    assert pair.client.peer_max_frame_bytes == 4096


def test_pipelined_requests_are_answered_out_of_order(open_pair: Pair) -> None:
    reqs = [Request(i, "ping", {"n": i}) for i in range(1, 6)]
    assert open_pair.to_server(*reqs) == reqs
    assert open_pair.client.pending_requests == 5
    answers = [Response(i, {"pong": i}) for i in (3, 1, 5, 2, 4)]
    assert open_pair.to_client(*answers) == answers
    assert open_pair.client.pending_requests == 0 and open_pair.server.pending_requests == 0


def test_many_frames_in_one_chunk_are_split(open_pair: Pair) -> None:
    data = b"".join(open_pair.client.send(Request(i, "ping")) for i in range(100))
    open_pair.server.receive_data(data)
    events = open_pair.drain(open_pair.server)
    assert [e.id for e in events if isinstance(e, Request)] == list(range(100))


def test_truncated_frames_fed_byte_by_byte_decode_once_complete(open_pair: Pair) -> None:
    data = open_pair.client.send(Request(1, "send", {"topic": "t", "values": [b"x" * 300]}))
    data += open_pair.client.send(Request(2, "ping"))
    events: list[Event] = []
    for i in range(len(data)):
        open_pair.server.receive_data(data[i:i + 1])
        events += open_pair.drain(open_pair.server)
        if i < len(data) - 1 - 20:
            assert len(events) <= 1
    assert [e.id for e in events if isinstance(e, Request)] == [1, 2]


def test_error_response_carries_code_and_retriable(open_pair: Pair) -> None:
    open_pair.to_server(Request(9, "send", {}))
    err = ErrorInfo.of("topic_full")
    assert open_pair.to_client(Response(9, error=err)) == [Response(9, None, err)]
    assert err.retriable and err.code == "topic_full"


def test_push_within_credit_and_credit_top_up(open_pair: Pair) -> None:
    open_pair.to_server(Request(7, "subscribe", {"topic": "t", "group": "g", "prefetch": 3}))
    open_pair.to_client(Response(7, {"sub": 7}))
    assert open_pair.server.credit(7) == 3 and open_pair.client.credit(7) == 3
    open_pair.to_client(_push(7, 2))
    assert open_pair.server.credit(7) == 1
    with pytest.raises(LocalProtocolError, match="exceeds credit 1"):
        open_pair.server.send(_push(7, 2))
    assert open_pair.to_server(Credit(7, 2)) == [Credit(7, 2)]
    assert open_pair.server.credit(7) == 3 and open_pair.client.credit(7) == 3
    open_pair.to_client(_push(7, 3))
    assert open_pair.server.credit(7) == 0


def test_push_beyond_credit_from_peer_breaks_the_connection(open_pair: Pair) -> None:
    open_pair.to_server(Request(1, "subscribe", {"topic": "t", "prefetch": 1}))
    open_pair.to_client(Response(1, {"sub": 1}))
    frame = pack(event_to_map(_push(1, 2)))
    open_pair.client.receive_data(frame)
    with pytest.raises(RemoteProtocolError, match="exceeds credit") as info:
        open_pair.client.next_event()
    assert info.value.code == "bad_request"
    assert open_pair.client.state is State.BROKEN


def test_failed_subscribe_grants_no_credit(open_pair: Pair) -> None:
    open_pair.to_server(Request(1, "subscribe", {"topic": "t", "prefetch": 5}))
    open_pair.to_client(Response(1, error=ErrorInfo.of("forbidden")))
    assert open_pair.server.credit(1) == 0
    with pytest.raises(LocalProtocolError, match="unknown subscription 1"):
        open_pair.server.send(_push(1, 1))


def test_unsubscribe_and_subscription_end_drop_credit(open_pair: Pair) -> None:
    for sub in (1, 2):
        open_pair.to_server(Request(sub, "subscribe", {"topic": "t", "prefetch": 5}))
        open_pair.to_client(Response(sub, {"sub": sub}))
    open_pair.to_server(Request(3, "unsubscribe", {"sub": 1}))
    open_pair.to_client(Response(3, {}))
    open_pair.to_client(SubscriptionEnded(2, ErrorInfo.of("topic_not_found")))
    assert open_pair.server.subscriptions == frozenset()
    assert open_pair.client.subscriptions == frozenset()
    # Credit racing with the end of its subscription is ignored, not an error.
    assert open_pair.to_server(Credit(2, 1)) == [Credit(2, 1)]


def test_credit_is_bounded(open_pair: Pair) -> None:
    open_pair.to_server(Request(1, "subscribe", {"topic": "t", "prefetch": MAX_CREDIT}))
    open_pair.to_client(Response(1, {"sub": 1}))
    with pytest.raises(LocalProtocolError, match="credit above"):
        open_pair.client.send(Credit(1, 1))


def test_duplicate_request_id_in_flight_is_refused(open_pair: Pair) -> None:
    open_pair.to_server(Request(1, "ping"))
    with pytest.raises(LocalProtocolError, match="already in flight"):
        open_pair.client.send(Request(1, "ping"))
    open_pair.server.receive_data(pack(event_to_map(Request(1, "ping"))))
    with pytest.raises(RemoteProtocolError, match="already in flight"):
        open_pair.server.next_event()


def test_response_to_unknown_id_is_refused(open_pair: Pair) -> None:
    with pytest.raises(LocalProtocolError, match="unknown request id 4"):
        open_pair.server.send(Response(4, None))


def test_oversized_frame_is_refused_from_its_header(open_pair: Pair) -> None:
    small = Connection(Role.SERVER, max_frame_bytes=1024)
    small.receive_data(pack(event_to_map(Hello("c"))))
    small.next_event()
    small.send(Welcome("i", 1024))
    small.receive_data((1025).to_bytes(4, "big") + b"\x80")
    with pytest.raises(RemoteProtocolError) as info:
        small.next_event()
    assert info.value.code == "payload_too_large"
    assert small.state is State.BROKEN
    # The only legal step left: tell the peer and close.
    small.send(Error.of(info.value.code, info.value.message))
    assert small.state is State.CLOSED


def test_send_beyond_peer_frame_limit_is_refused_locally(pair: Pair) -> None:
    pair.to_server(Hello("c"))
    pair.to_client(Welcome("i", 100))
    with pytest.raises(LocalProtocolError) as info:
        pair.client.send(Request(1, "send", {"values": [b"x" * 200]}))
    assert info.value.code == "payload_too_large"
    assert pair.client.state is State.OPEN and pair.client.pending_requests == 0


def test_receive_buffer_is_bounded() -> None:
    conn = Connection(Role.SERVER, max_frame_bytes=1024, max_buffer_bytes=2048)
    conn.receive_data(b"\x00" * 2000)
    with pytest.raises(RemoteProtocolError) as info:
        conn.receive_data(b"\x00" * 100)
    assert info.value.code == "payload_too_large"


@pytest.mark.parametrize("body", [
    b"\xc1",  # never-used msgpack byte
    b"\x92\x01\x02",  # an array, not a map
    b"\x81\xa1t\xa4nope",  # unknown frame type
    b"\x81\xa1t\xa5hello",  # hello without fields
    b"\x83\xa1t\xa3req\xa2id\xa1x\xa2op\xa4ping",  # id is a string
    b"\x81\xa1t\xa3req" + b"\x00",  # trailing byte after the map
    msgpack.packb({"t": "req", "id": 1, "op": "ping", "args": msgpack.ExtType(5, b"x")}),
    msgpack.packb({1: 2}),  # integer map keys are not used
    b"",  # an empty frame
])
def test_malformed_frame_breaks_the_connection_with_a_code(body: bytes) -> None:
    conn = Connection(Role.SERVER)
    conn.receive_data(len(body).to_bytes(4, "big") + body)
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.code == "malformed_frame"
    assert conn.state is State.BROKEN
    with pytest.raises(RemoteProtocolError):
        conn.next_event()  # stays broken
    with pytest.raises(LocalProtocolError, match="in state BROKEN"):
        conn.send(Welcome("i", 1))


def test_unsupported_version_is_refused(pair: Pair) -> None:
    pair.server.receive_data(pack(event_to_map(Hello("c", version=99))))
    with pytest.raises(RemoteProtocolError) as info:
        pair.server.next_event()
    assert info.value.code == "unsupported_version"
    client = Connection(Role.CLIENT)
    client.send(Hello("c"))
    client.receive_data(pack(event_to_map(Welcome("i", 10, version=2))))
    with pytest.raises(RemoteProtocolError) as info:
        client.next_event()
    assert info.value.code == "unsupported_version"


def test_close_ends_both_sides_and_later_bytes_are_dropped(open_pair: Pair) -> None:
    assert open_pair.to_server(Close("bye")) == [Close("bye")]
    assert open_pair.client.state is State.CLOSED and open_pair.server.state is State.CLOSED
    open_pair.server.receive_data(b"garbage")
    assert open_pair.server.next_event() is NEED_DATA


# -- the state table: every illegal (role, state, direction, event) raises naming both --

SAMPLES: list[Event] = [
    Hello("x"), Welcome("i", 1024), Request(1, "ping"), Response(1, None), _push(1, 0),
    Credit(1, 1), SubscriptionEnded(1), Close(), Error.of("internal"),
]


def _in_state(make_pair: type[Pair], role: Role, state: State) -> Connection:
    """A Connection of `role` driven into `state` through legal steps."""
    p = make_pair()
    conn = p.client if role is Role.CLIENT else p.server
    if state is State.AWAIT_HELLO:
        return conn
    p.to_server(Hello("c"))
    if state is State.AWAIT_WELCOME:
        return conn
    p.to_client(Welcome("i", 1 << 20))
    if state is State.OPEN:
        return conn
    if state is State.CLOSED:
        conn.send(Close())
        return conn
    conn.receive_data(b"\x00\x00\x00\x01\xc1")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    return conn


ILLEGAL = [
    (role, state, direction, event)
    for role in Role
    for state in State
    for direction in Direction
    for event in SAMPLES
    if (role, state, direction, type(event)) not in _TRANSITIONS
    # bytes after CLOSED are dropped and a BROKEN end re-raises its first failure
    and not (direction is Direction.RECEIVE and state in (State.CLOSED, State.BROKEN))
]


@pytest.mark.parametrize(("role", "state", "direction", "event"), ILLEGAL,
                         ids=[f"{r.value}-{s.value}-{d.value}-{type(e).__name__}"
                              for r, s, d, e in ILLEGAL])
def test_illegal_transition_names_state_and_event(make_pair: type[Pair], role: Role,
                                                  state: State, direction: Direction,
                                                  event: Event) -> None:
    conn = _in_state(make_pair, role, state)
    assert conn.state is state
    expected = LocalProtocolError if direction is Direction.SEND else RemoteProtocolError
    with pytest.raises(expected) as info:
        if direction is Direction.SEND:
            conn.send(event)
        else:
            conn.receive_data(pack(event_to_map(event)))
            conn.next_event()
    assert isinstance(info.value, ProtocolError)
    assert state.value in info.value.message
    assert type(event).__name__ in info.value.message
    assert info.value.code == "bad_request"


def test_the_table_covers_a_full_conversation() -> None:
    assert len(ILLEGAL) > 100
    legal = {(r, s, d, t) for (r, s, d, t) in _TRANSITIONS}
    assert (Role.CLIENT, State.OPEN, Direction.SEND, Request) in legal
    assert (Role.SERVER, State.OPEN, Direction.SEND, Request) not in legal
