"""HTTP gateway throughput with wrk: 64 keep-alive connections against the gateway over
the file-store broker (default sync durability) in a subprocess, with a bare aiohttp
handler answering a constant JSON to the same request as the ceiling.

    .venv/bin/python -m bench.http [--duration 10] [--connections 64] [--threads 2]

Workloads:
  bare         POST /send form "message=Hello World" -> constant JSON (no broker)
  send         POST /send form "message=Hello World"            (requests/s)
  batch        POST /send/bench-batch JSON of 100 messages      (messages/s)
  receive+ack  GET /receive/bench-recv?max=100, then POST /ack of its receipts (messages/s)
Prints a table and writes bench/results/http.md. wrk is installed with apt-get if missing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import HOST, free_port, spawn, terminate, wait_port

RESULTS = Path(__file__).resolve().parent / "results" / "http.md"
BATCH = 100  # messages per batched send, as the target is stated
RECEIVE_MAX = 100  # messages per receive in receive+ack
MESSAGE_BYTES = 100  # batch and backlog message size
PREFILL_BATCH = 1_000  # messages per broker.send while building the receive backlog
START_CAP_S = 120.0  # bounded wait for a server (the prefill happens before it listens)
TARGET_BATCH_MSGS = 200_000.0
TARGET_RECV_ACK_MSGS = 100_000.0
TARGET_SEND_RATIO = 0.60

SEND_LUA = """
wrk.method = "POST"
wrk.body = "message=Hello%20World"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
"""

BATCH_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local entries = {}
for i = 1, BATCH do
  entries[i] = '"' .. string.format("%06d", i) .. string.rep("x", SIZE - 6) .. '"'
end
wrk.body = '{"messages":[' .. table.concat(entries, ",") .. ']}'
"""

RECV_ACK_LUA = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  acked = 0; received = 0; empty = 0; failed = 0
  pending = {}
  recv_req = wrk.format("GET", "/receive/bench-recv?max=RECEIVE_MAX")
  ack_headers = {["Content-Type"] = "application/json"}
end
function request()
  local body = table.remove(pending)
  if body then return wrk.format("POST", "/ack", ack_headers, body) end
  return recv_req
end
function response(status, headers, body)
  if status ~= 200 then failed = failed + 1; return end
  if string.find(body, '"messages":', 1, true) then
    local r = {}
    for rc in string.gmatch(body, '"receipt":"([^"]+)"') do r[#r + 1] = '"' .. rc .. '"' end
    received = received + #r
    if #r == 0 then empty = empty + 1
    else pending[#pending + 1] = '{"receipts":[' .. table.concat(r, ",") .. ']}' end
  else
    local _, n = string.gsub(body, '"ok":true', "")
    acked = acked + n
  end
end
function done(summary, latency, requests)
  local a, r, e, f = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("acked"); r = r + t:get("received"); e = e + t:get("empty")
    f = f + t:get("failed")
  end
  io.write(string.format("RESULT acked=%d received=%d empty=%d failed=%d\n", a, r, e, f))
end
"""


# -- the servers (run in the subprocess)


def _event_loop_run(main: object) -> None:
    try:
        import uvloop

        uvloop.run(main)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(main)  # type: ignore[arg-type]


async def _serve_gateway(port: int, data_dir: Path, prefill: int) -> None:
    import dataclasses

    from broker.api import ClientRef, OutMessage
    from broker.broker import Broker
    from http_gateway.app import run_gateway
    from spoolmq.config import Config

    config = dataclasses.replace(Config(), data_dir=data_dir, http_port=port, host=HOST)
    broker = Broker(config)
    await broker.start()
    filler = ClientRef("bench-prefill", "native", HOST)
    batch = [OutMessage(b"%06d" % i + b"y" * (MESSAGE_BYTES - 6)) for i in range(PREFILL_BATCH)]
    for _ in range(0, prefill, PREFILL_BATCH):
        await broker.send("bench-recv", batch, filler)
    runner = await run_gateway(broker, config)
    print("READY", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await broker.stop()


async def _serve_bare(port: int) -> None:
    from aiohttp import web

    body = (b'{"status":"Message sent","message":"Hello World","topic":"default",'
            b'"partition":0,"offset":0,"created":false,"duplicate":false}')

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/send", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port, backlog=1024).start()
    print("READY", flush=True)
    await asyncio.Event().wait()


# -- the driver


@dataclass(frozen=True, slots=True)
class Run:
    name: str
    requests_s: float
    messages_s: float
    errors: int
    p50_ms: float
    p99_ms: float
    note: str = ""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found; installing it with apt-get", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True,
                   stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk could not be installed")
    return found


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_wrk(wrk: str, args: argparse.Namespace, url: str, script: Path, name: str,
            per_request: int) -> Run:
    cmd = [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s",
           "--latency", "-s", str(script), url]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         timeout=args.duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(g) for g in m.groups())
    p50 = re.search(r"50%\s+(\S+)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    msgs = rps * per_request
    note = ""
    r = re.search(r"RESULT acked=(\d+) received=(\d+) empty=(\d+) failed=(\d+)", out)
    if r:
        acked, received, empty, failed = map(int, r.groups())
        msgs = acked / args.duration
        errors += failed
        note = f"{received} received, {acked} acked, {empty} empty receives"
    return Run(name, rps, msgs, errors, _ms(p50.group(1)) if p50 else float("nan"),
               _ms(p99.group(1)) if p99 else float("nan"), note)


async def _start(mode: list[str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = spawn([sys.executable, "-m", "bench.http", *mode, "--port", str(port)], log,
                 cwd=Path(__file__).resolve().parent.parent)
    await wait_port(port, START_CAP_S, proc)
    return proc, port


def table(runs: list[Run], ceiling: float) -> str:
    lines = ["| workload | requests/s | messages/s | vs target | errors | p50 ms | p99 ms |",
             "|---|---:|---:|---|---:|---:|---:|"]
    for r in runs:
        if r.name == "bare":
            verdict = "ceiling"
        elif r.name == "send":
            ratio = r.requests_s / ceiling if ceiling else 0.0
            ok = "met" if ratio >= TARGET_SEND_RATIO else "NOT met"
            verdict = f"{ratio:.0%} of bare (>= {TARGET_SEND_RATIO:.0%}: {ok})"
        else:
            target = TARGET_BATCH_MSGS if r.name == "batch" else TARGET_RECV_ACK_MSGS
            ok = "met" if r.messages_s >= target else "NOT met"
            verdict = f">= {target:,.0f} msg/s: {ok}"
        lines.append(f"| {r.name} | {r.requests_s:,.0f} | {r.messages_s:,.0f} | {verdict} | "
                     f"{r.errors} | {r.p50_ms:.2f} | {r.p99_ms:.2f} |")
    return "\n".join(lines)


async def drive(args: argparse.Namespace) -> None:
    wrk = ensure_wrk()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="spoolmq-bench-http-") as tmp:
        tmpdir = Path(tmp)
        scripts = {
            "send": SEND_LUA,
            "batch": BATCH_LUA.replace("BATCH", str(BATCH)).replace("SIZE", str(MESSAGE_BYTES)),
            "recv": RECV_ACK_LUA.replace("RECEIVE_MAX", str(RECEIVE_MAX)),
        }
        paths = {}
        for name, text in scripts.items():
            paths[name] = tmpdir / f"{name}.lua"
            paths[name].write_text(text)
        log = tmpdir / "server.log"

        proc, port = await _start(["_bare"], log)
        try:
            runs.append(run_wrk(wrk, args, f"http://{HOST}:{port}/send", paths["send"], "bare", 1))
        finally:
            terminate(proc)

        prefill = args.prefill
        proc, port = await _start(["_serve", "--data-dir", str(tmpdir / "data"),
                                   "--prefill", str(prefill)], log)
        base = f"http://{HOST}:{port}"
        try:
            runs.append(run_wrk(wrk, args, base + "/send", paths["send"], "send", 1))
            runs.append(run_wrk(wrk, args, base + "/send/bench-batch", paths["batch"], "batch",
                                BATCH))
            runs.append(run_wrk(wrk, args, base + "/receive/bench-recv", paths["recv"],
                                "receive+ack", RECEIVE_MAX))
        except Exception:
            print(log.read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            terminate(proc)

    ceiling = runs[0].requests_s
    text = table(runs, ceiling)
    notes = [r for r in runs if r.note]
    header = (f"# HTTP gateway throughput\n\n"
              f"`.venv/bin/python -m bench.http --duration {args.duration} --connections "
              f"{args.connections} --threads {args.threads}` on {platform.node()} "
              f"({os.cpu_count()} CPUs, Python {platform.python_version()}), "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n\n"
              f"wrk and the server share the machine. Gateway: file-store broker, sync "
              f"durability (fdatasync before the answer, group commit). Batches hold {BATCH} "
              f"messages of {MESSAGE_BYTES} bytes; receive+ack leases up to {RECEIVE_MAX} "
              f"per request and acks them in one request, from a backlog of {prefill:,} "
              f"messages.\n\n")
    body = header + text + "\n"
    for r in notes:
        body += f"\n{r.name}: {r.note}.\n"
    print(text)
    for r in notes:
        print(f"{r.name}: {r.note}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(body)
    print(f"wrote {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    sub = parser.add_subparsers(dest="mode")
    serve = sub.add_parser("_serve")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--data-dir", type=Path, required=True)
    serve.add_argument("--prefill", type=int, default=0)
    bare = sub.add_parser("_bare")
    bare.add_argument("--port", type=int, required=True)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prefill", type=int, default=1_500_000,
                        help="backlog for receive+ack (must outlast the run)")
    args = parser.parse_args()
    if args.mode == "_serve":
        _event_loop_run(_serve_gateway(args.port, args.data_dir, args.prefill))
    elif args.mode == "_bare":
        _event_loop_run(_serve_bare(args.port))
    else:
        asyncio.run(drive(args))


if __name__ == "__main__":
    main()
