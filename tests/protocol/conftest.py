"""The protocol harness: a client and a server Connection wired together with no sockets."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from broker.protocol import (
    Connection,
    Event,
    Hello,
    NeedData,
    Role,
    Welcome,
)


@dataclass
class Pair:
    client: Connection = field(default_factory=lambda: Connection(Role.CLIENT))
    server: Connection = field(default_factory=lambda: Connection(Role.SERVER))

    def to_server(self, *events: Event) -> list[Event]:
        """Send events from the client; return every event the server decodes."""
        for event in events:
            self.server.receive_data(self.client.send(event))
        return self.drain(self.server)

    def to_client(self, *events: Event) -> list[Event]:
        for event in events:
            self.client.receive_data(self.server.send(event))
        return self.drain(self.client)

    @staticmethod
    def drain(conn: Connection) -> list[Event]:
        """Every whole event `conn` can decode now."""
        out: list[Event] = []
        while True:
            event = conn.next_event()
            if isinstance(event, NeedData):
                return out
            out.append(event)

    def handshake(self, client_id: str = "c1") -> None:
        assert self.to_server(Hello(client_id, ("producer",))) == [Hello(client_id, ("producer",))]
        welcome = Welcome("inc-1", self.server.max_frame_bytes)
        assert self.to_client(welcome) == [welcome]


@pytest.fixture
def pair() -> Pair:
    return Pair()


@pytest.fixture
def open_pair() -> Pair:
    p = Pair()
    p.handshake()
    return p


@pytest.fixture
def make_pair() -> type[Pair]:
    """The Pair class itself, for tests that build connections in many states."""
    return Pair
