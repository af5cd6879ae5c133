"""The `spoolmq` command: serve, broker, send, receive, topics, groups.

The composition root's front door: parses flags into a Config (defaults < TOML
< SPOOLMQ_* env < flags) and hands it to `spoolmq.serve` or the native client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spoolmq import __version__
from spoolmq.config import Config, ConfigError, load_config

DESCRIPTION = """spoolmq: a self-hosted message broker. Producers send, consumers receive,
every message is delivered at least once, and a live dashboard shows the queue."""


def _server_flags(p: argparse.ArgumentParser, http: bool = True, dashboard: bool = True) -> None:
    p.add_argument("--config", type=Path, help="TOML file with settings (see README)")
    p.add_argument("--data-dir", dest="data_dir", help="where topics and state live (./data)")
    p.add_argument("--log-dir", dest="log_dir", help="where spoolmq.log is written (./logs)")
    p.add_argument("--host", help="address every listener binds (127.0.0.1)")
    p.add_argument("--tcp-port", dest="tcp_port", type=int, help="native protocol port (7070)")
    if http:
        p.add_argument("--http-port", dest="http_port", type=int, help="HTTP gateway port (8080)")
    if dashboard:
        p.add_argument("--dashboard-port", dest="dashboard_port", type=int,
                       help="dashboard port (3000)")
    p.add_argument("--durability", help="sync (default), interval:<ms> or none")
    p.add_argument("--insecure", action="store_const", const=True, default=None,
                   help="allow a non-loopback bind without auth tokens")
    p.add_argument("--log-level", dest="log_level", help="DEBUG, INFO (default), WARNING")


def _client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default="tcp://127.0.0.1:7070",
                   help="native protocol address of the broker (tcp://127.0.0.1:7070)")
    p.add_argument("--token", help="bearer token when the broker requires auth")
    p.add_argument("--client-id", dest="client_id", default="spoolmq-cli",
                   help="how this client shows on the dashboard")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spoolmq", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"spoolmq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run broker + HTTP gateway + dashboard in one process",
                       description="Run the broker (native TCP protocol), the HTTP gateway and "
                       "the dashboard in one process over one data directory. SIGTERM or "
                       "Ctrl-C shuts down cleanly.")
    _server_flags(p)
    p = sub.add_parser("broker", help="run the broker with its native TCP protocol only",
                       description="Run only the broker and its native TCP listener.")
    _server_flags(p, http=False, dashboard=False)

    p = sub.add_parser("send", help="send messages to a topic",
                       description="Send one message per argument (or per stdin line with -).")
    _client_flags(p)
    p.add_argument("topic", help="topic name")
    p.add_argument("messages", nargs="+", help="message text; '-' reads lines from stdin")
    p.add_argument("--key", help="message key (picks the partition)")

    p = sub.add_parser("receive", help="receive (and by default ack) messages",
                       description="Receive messages from a topic as a group member and print "
                       "them as JSON lines. Acks after printing unless --no-ack.")
    _client_flags(p)
    p.add_argument("topic", help="topic name")
    p.add_argument("--group", default="default", help="consumer group (default)")
    p.add_argument("--max", dest="max_messages", type=int, default=1, help="at most N (1)")
    p.add_argument("--wait", type=float, default=0.0, help="long-poll seconds, up to 20 (0)")
    p.add_argument("--no-ack", dest="ack", action="store_false",
                   help="leave the messages leased; they come back after the visibility timeout")

    p = sub.add_parser("topics", help="list, create, describe, purge or delete topics",
                       description="Topic administration over the native protocol.")
    _client_flags(p)
    p.add_argument("action", nargs="?", default="list",
                   choices=["list", "create", "describe", "purge", "delete"])
    p.add_argument("name", nargs="?", help="topic name (all but list)")
    p.add_argument("--partitions", type=int, default=1, help="partitions for create (1)")

    p = sub.add_parser("groups", help="list or describe consumer groups",
                       description="Consumer group administration over the native protocol.")
    _client_flags(p)
    p.add_argument("action", nargs="?", default="list", choices=["list", "describe", "delete"])
    p.add_argument("topic", nargs="?", help="topic name")
    p.add_argument("group", nargs="?", help="group name (describe, delete)")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    keys = ("data_dir", "log_dir", "host", "tcp_port", "http_port", "dashboard_port",
            "durability", "insecure", "log_level")
    overrides = {k: getattr(args, k, None) for k in keys}
    return load_config(getattr(args, "config", None), overrides=overrides)


def _print(obj: Any) -> None:
    print(json.dumps(obj, default=str, ensure_ascii=False))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("serve", "broker"):
        try:
            config = config_from_args(args)
        except ConfigError as exc:
            print(f"spoolmq: {exc}", file=sys.stderr)
            return 2
        from spoolmq.serve import run_server

        return run_server(config, with_http=args.command == "serve",
                          with_dashboard=args.command == "serve")
    from spoolmq.commands import run_client_command

    return asyncio.run(run_client_command(args, _print))


if __name__ == "__main__":
    sys.exit(main())
