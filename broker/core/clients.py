"""Who is producing and consuming: per client last seen, roles, message counts.

A client is "active" in a role when it used that role within the active window
(default 30 s). The table is bounded: clients idle for `FORGET_AFTER_S` are
forgotten by `prune`, and past `MAX_CLIENTS` the longest-idle one is dropped.
"""

from __future__ import annotations

from broker.api import ClientInfo, ClientRef

FORGET_AFTER_S = 3600.0  # an hour of silence: the dashboard has long stopped showing it
MAX_CLIENTS = 10_000  # one entry per connection or HTTP caller; bounds memory under churn


class ClientState:
    __slots__ = ("address", "client_id", "first_seen", "last_seen", "messages_in",
                 "messages_out", "protocol", "roles")

    def __init__(self, ref: ClientRef, now: float) -> None:
        self.client_id = ref.client_id
        self.protocol: str = ref.protocol
        self.address = ref.address
        self.first_seen = now
        self.last_seen = now
        self.roles: dict[str, float] = {}  # role -> last seen in that role
        self.messages_in = 0
        self.messages_out = 0


class ClientTable:
    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.clients: dict[str, ClientState] = {}

    def touch(self, ref: ClientRef, role: str | None, now: float) -> ClientState:
        c = self.clients.get(ref.client_id)
        if c is None:
            if len(self.clients) >= MAX_CLIENTS:
                oldest = min(self.clients.values(), key=lambda s: s.last_seen)
                del self.clients[oldest.client_id]
            c = self.clients[ref.client_id] = ClientState(ref, now)
        elif ref.address and c.address != ref.address:
            c.address = ref.address
        c.last_seen = now
        if role is not None:
            c.roles[role] = now
        return c

    def active(self, role: str, now: float) -> int:
        horizon = now - self.window_s
        return sum(1 for c in self.clients.values() if c.roles.get(role, -1e18) > horizon)

    def prune(self, now: float) -> None:
        horizon = now - FORGET_AFTER_S
        for cid in [cid for cid, c in self.clients.items() if c.last_seen < horizon]:
            del self.clients[cid]

    def infos(self, now: float, in_flight: dict[str, int]) -> list[ClientInfo]:
        horizon = now - self.window_s
        return [ClientInfo(c.client_id, c.protocol, c.address, tuple(sorted(c.roles)),
                           c.first_seen, c.last_seen, c.last_seen > horizon, c.messages_in,
                           c.messages_out, in_flight.get(c.client_id, 0))
                for c in sorted(self.clients.values(), key=lambda s: -s.last_seen)]
