"""The systems the broker benchmark runs side by side, one module each.

`PEERS` maps a short key to the peer's class; Redis Streams (`redis`) is the baseline
every ratio is taken against. `start_peers` starts the chosen ones concurrently and
reports the ones that cannot run here instead of failing the run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.peers.base import Consumer, Fetched, Peer, PeerUnavailable, Producer
from bench.peers.nats_jetstream import NatsPeer
from bench.peers.rabbitmq import RabbitPeer
from bench.peers.redis_streams import RedisPeer
from bench.peers.spoolmq import SpoolPeer

BASELINE = "redis"
PEERS: dict[str, type[Peer]] = {
    "redis": RedisPeer,
    "nats": NatsPeer,
    "rabbitmq": RabbitPeer,
    "spoolmq": SpoolPeer,
}


async def start_peers(keys: list[str], workdir: Path, start_cap_s: float
                      ) -> tuple[dict[str, Peer], dict[str, str]]:
    """Start the peers named by `keys` at once, each under workdir/<key>.

    Returns (running peers by key, reason by key for those that could not start).
    """
    peers = {key: PEERS[key]() for key in keys}

    async def start(key: str) -> str | None:
        try:
            await asyncio.wait_for(peers[key].start(workdir / key, start_cap_s),
                                   start_cap_s + 30)
        except PeerUnavailable as exc:
            return str(exc)
        except Exception as exc:  # a peer that fails in any way is reported, not fatal
            await peers[key].stop()
            return f"{type(exc).__name__}: {exc}"
        return None

    reasons = await asyncio.gather(*(start(key) for key in keys))
    failed = {key: why for key, why in zip(keys, reasons, strict=True) if why is not None}
    return {k: p for k, p in peers.items() if k not in failed}, failed


__all__ = ["BASELINE", "PEERS", "Consumer", "Fetched", "Peer", "PeerUnavailable", "Producer",
           "start_peers"]
