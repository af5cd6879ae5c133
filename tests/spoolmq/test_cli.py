"""The `spoolmq` command as a user runs it: a real `spoolmq serve` process, curl, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from spoolmq.cli import build_parser

SPOOLMQ = [sys.executable, "-m", "spoolmq.cli"]
START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until(predicate, timeout_s: float = START_TIMEOUT_S) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout_s} s")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.mark.parametrize("command", ["serve", "broker", "send", "receive", "topics", "groups"])
def test_every_command_explains_itself(command: str) -> None:
    out = subprocess.run([*SPOOLMQ, command, "--help"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    assert "usage: spoolmq " + command in out
    parser_help = build_parser().format_help()
    assert command in parser_help


class Server:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.http = _free_port()
        self.tcp = _free_port()
        self.dash = _free_port()
        self.data = tmp / "data"
        self.logs = tmp / "logs"

    def start(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*SPOOLMQ, "serve", "--data-dir", str(self.data), "--log-dir", str(self.logs),
             "--http-port", str(self.http), "--tcp-port", str(self.tcp),
             "--dashboard-port", str(self.dash)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http}{path}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*SPOOLMQ, args[0], "--url", f"tcp://127.0.0.1:{self.tcp}",
                               *args[1:]], capture_output=True, text=True, timeout=30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Server, subprocess.Popen[str]]]:
    s = Server(tmp_path)
    proc = s.start()
    try:
        _wait_until(lambda: _http_ok(s.url("/healthz")) or proc.poll() is not None)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        yield s, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_serve_answers_the_readme_commands_and_stops_cleanly_on_sigterm(
        server: tuple[Server, subprocess.Popen[str]]) -> None:
    s, proc = server
    sent = subprocess.run(["curl", "-s", "-X", "POST", s.url("/send"), "-d",
                           "message=Hello World"], capture_output=True, text=True, timeout=30,
                          check=True)
    assert json.loads(sent.stdout)["status"] == "Message sent"
    got = json.loads(subprocess.run(["curl", "-s", s.url("/receive")], capture_output=True,
                                    text=True, timeout=30, check=True).stdout)
    assert [m["message"] for m in got["messages"]] == ["Hello World"]
    assert _http_ok(f"http://127.0.0.1:{s.dash}/")

    # the native protocol through the CLI commands
    assert s.cli("send", "jobs", "one", "two").returncode == 0
    received = s.cli("receive", "jobs", "--max", "5")
    assert received.returncode == 0, received.stderr
    assert [json.loads(line)["value"] for line in received.stdout.splitlines()] == ["one", "two"]
    topics = s.cli("topics")
    assert {t["name"] for t in json.loads(topics.stdout)} == {"default", "jobs"}
    groups = s.cli("groups", "describe", "jobs", "default")
    assert json.loads(groups.stdout)["lag"] == 0

    # a second server on the same data directory refuses to start
    second = Server(s.tmp).start()
    assert second.wait(timeout=60) != 0
    assert second.stdout is not None and "in use by another process" in second.stdout.read()

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    log_text = (s.logs / "spoolmq.log").read_text()
    assert "stopped cleanly" in log_text
    markers = list((s.data / "topics" / "jobs").rglob("clean-shutdown"))
    assert markers, "SIGTERM must leave a clean-shutdown marker in every partition"


def test_bad_flag_value_is_a_clear_error(tmp_path: Path) -> None:
    r = subprocess.run([*SPOOLMQ, "serve", "--durability", "sometimes", "--data-dir",
                        str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "durability" in r.stderr


def test_client_command_without_a_broker_says_so() -> None:
    r = subprocess.run([*SPOOLMQ, "topics", "--url", f"tcp://127.0.0.1:{_free_port()}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "spoolmq:" in r.stderr
