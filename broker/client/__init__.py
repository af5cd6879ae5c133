"""The native client of spoolmq: `Client` (asyncio) and `BlockingClient` (for scripts).

    async with Client("tcp://127.0.0.1:7070", client_id="worker-1") as c:
        offset = await c.send("jobs", b"hello")
        for msg in await c.receive("jobs", max=10, wait=5):
            await c.ack(msg)
"""

from broker.client.blocking import BlockingClient, BlockingSubscription
from broker.client.client import Client, parse_url
from broker.client.subscription import Subscription
from broker.client.types import ClientError, Message, Received

__all__ = [
    "BlockingClient",
    "BlockingSubscription",
    "Client",
    "ClientError",
    "Message",
    "Received",
    "Subscription",
    "parse_url",
]
