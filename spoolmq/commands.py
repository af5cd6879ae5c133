"""The client-side CLI commands (send, receive, topics, groups) over the native protocol."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Any

from broker.api import TopicConfig
from broker.client import Client, ClientError, Message

CLI_CONNECT_TIMEOUT_S = 3.0  # a person at a terminal wants "cannot reach" quickly


def _plain(obj: Any) -> Any:
    if isinstance(obj, Message):  # a tuple underneath: print its fields by name
        return _plain(obj.as_dict())
    if is_dataclass(obj) and not isinstance(obj, type):
        return _plain(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, bytes):
        try:
            return obj.decode("utf-8")
        except UnicodeDecodeError:
            return obj.hex()
    return obj


async def run_client_command(args: argparse.Namespace, out: Callable[[Any], None]) -> int:
    """Run one client command; return the exit code (0 ok, 1 broker error)."""
    try:
        async with Client(args.url, client_id=args.client_id, token=args.token,
                          connect_timeout=CLI_CONNECT_TIMEOUT_S) as c:
            if args.command == "send":
                values = args.messages
                if values == ["-"]:
                    values = [line.rstrip("\n") for line in sys.stdin]
                key = args.key.encode() if args.key else None
                for text in values:
                    offset = await c.send(args.topic, text.encode(), key=key)
                    out({"topic": args.topic, "offset": offset})
            elif args.command == "receive":
                messages = await c.receive(args.topic, group=args.group, max=args.max_messages,
                                           wait=args.wait)
                for m in messages:
                    out(_plain(m))
                if args.ack and messages:
                    await c.ack(messages)
            elif args.command == "topics":
                out(_plain(await _topics(c, args)))
            elif args.command == "groups":
                out(_plain(await _groups(c, args)))
    except ClientError as exc:
        print(f"spoolmq: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"spoolmq: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    return 0


def _need(value: str | None, what: str) -> str:
    if not value:
        raise SystemExit(f"spoolmq: {what} is required for this action")
    return value


async def _topics(c: Client, args: argparse.Namespace) -> Any:
    if args.action == "list":
        return await c.topics()
    name = _need(args.name, "a topic name")
    if args.action == "create":
        return await c.create_topic(name, TopicConfig(partitions=args.partitions))
    if args.action == "describe":
        return await c.describe_topic(name)
    if args.action == "purge":
        return await c.purge_topic(name)
    return await c.delete_topic(name)


async def _groups(c: Client, args: argparse.Namespace) -> Any:
    if args.action == "list":
        return await c.groups(args.topic)
    topic = _need(args.topic, "a topic name")
    group = _need(args.group, "a group name")
    if args.action == "describe":
        return await c.describe_group(topic, group)
    return await c.delete_group(topic, group)
