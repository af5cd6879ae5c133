"""The client tests use the server tests' fixtures: the real Broker in memory, a server on
127.0.0.1 port 0 and a connected native client."""

from __future__ import annotations

from tests.server.conftest import broker, client, raw, server

__all__ = ["broker", "client", "raw", "server"]
