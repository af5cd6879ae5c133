"""Renders the broker benchmark's results: the markdown page and the bar chart.

Owns bench/results/broker.md and broker.png. Reads the outcomes `bench.broker`
collected; measures nothing itself. The chart uses matplotlib's Agg backend (no display).
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import (
    ACK_DEPTH,
    FETCH_DEPTH,
    FETCH_MAX,
    LATENCY_RATE,
    LATENCY_TICK_S,
    PRODUCE_BATCH,
    Plan,
    machine_summary,
)
from bench.peers import BASELINE, PEERS, Peer
from bench.peers.spoolmq import RSS_MAX_DELIVERIES, RSS_SIZE, RSS_VISIBILITY_S, RssResult

if TYPE_CHECKING:
    from bench.broker import Outcome, Table

RSS_TARGET_MIB = 150.0
THROUGHPUT = (("produce", "produce"), ("consume", "consume+ack"), ("e2e", "end-to-end"))
LATENCY = (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9"))


def size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base <= 0 or math.isnan(value) or math.isnan(base):
        return ""
    return f" ({value / base:.2f}x)"


def _cell(o: Outcome | None, base: Outcome | None, attr: str, fmt: str,
          reason: str | None) -> str:
    if reason is not None:
        return "n/a: not running"
    if o is None:
        return "not run"
    if o.error is not None:
        return "failed"
    value = getattr(o, attr)
    if value is None or math.isnan(value):
        return "no data"
    if not o.sustained and o.carried is not None:
        return (f"{format(value, fmt)}, rate not carried: {o.carried[0]:,} of "
                f"{o.carried[1]:,} received")
    base_value = None if base is None or base.error else getattr(base, attr)
    return format(value, fmt) + _ratio(value, base_value)


def throughput_rows(table: Table, plan: Plan, keys: Sequence[str],
                    failed: dict[str, str]) -> list[str]:
    rows = []
    for workload, label in THROUGHPUT:
        for size in plan.sizes:
            base = table.best(workload, size, BASELINE)
            cells = [_cell(table.best(workload, size, k), base, "value", ",.0f", failed.get(k))
                     for k in keys]
            rows.append(f"| {label} {size_label(size)} (msg/s) | " + " | ".join(cells) + " |")
    for size in plan.sizes:
        base = table.best("latency", size, BASELINE)
        for attr, label in LATENCY:
            cells = [_cell(table.best("latency", size, k), base, attr, ".2f", failed.get(k))
                     for k in keys]
            rows.append(f"| latency {label} {size_label(size)} (ms) | " + " | ".join(cells)
                        + " |")
    return rows


def target_lines(table: Table, plan: Plan, keys: Sequence[str], rss: RssResult | None
                 ) -> list[str]:
    """The broker team's targets, each judged from the numbers above."""
    lines = []
    if "spoolmq" not in keys:
        return ["spoolmq was not part of this run."]

    def value(workload: str, size: int, key: str, attr: str = "value") -> float | None:
        o = table.best(workload, size, key)
        return None if o is None or o.error is not None else getattr(o, attr)

    for workload, label in THROUGHPUT:
        for size in plan.sizes:
            mine = value(workload, size, "spoolmq")
            base = value(workload, size, BASELINE)
            others = [(k, value(workload, size, k)) for k in keys if k != "spoolmq"]
            if mine is None or base is None:
                lines.append(f"- {label} {size_label(size)} >= 3x Redis: not measured")
                continue
            ahead = all(v is None or mine > v for _, v in others)
            met = mine >= 3 * base and ahead
            lines.append(f"- {label} {size_label(size)} >= 3x Redis and ahead of every peer: "
                         f"{mine / base:.2f}x Redis, "
                         f"{'ahead of' if ahead else 'behind'} the best peer "
                         f"-> **{'met' if met else 'not met'}**")
    for size in plan.sizes:
        mine = value("latency", size, "spoolmq", "p99")
        base = value("latency", size, BASELINE, "p99")
        if mine is None or base is None:
            lines.append(f"- p99 at {LATENCY_RATE:,} msg/s {size_label(size)}: not measured")
            continue
        mine_o = table.best("latency", size, "spoolmq")
        carried = mine_o is not None and mine_o.sustained
        met = carried and mine <= base
        lines.append(f"- p99 at {LATENCY_RATE:,} msg/s {size_label(size)} <= Redis: "
                     f"{mine:.2f} ms vs {base:.2f} ms"
                     f"{'' if carried else ' (spoolmq did not carry the rate)'} -> "
                     f"**{'met' if met else 'not met'}**")
    if rss is None or rss.error is not None:
        lines.append(f"- broker RSS < {RSS_TARGET_MIB:.0f} MB: not measured")
    else:
        for label, mib in (("with the backlog (VmHWM while filling)", rss.hwm_fill_mib),
                           ("over restart and the ack-every-other consumer (VmHWM)",
                            rss.hwm_consume_mib)):
            if mib is None:
                lines.append(f"- broker RSS {label}: not measured")
                continue
            lines.append(f"- broker RSS < {RSS_TARGET_MIB:.0f} MB {label}: {mib:.0f} MiB -> "
                         f"**{'met' if mib < RSS_TARGET_MIB else 'not met'}**")
    if rss is not None and rss.backlog and rss.backlog < 10_000_000:
        lines.append(f"  (the memory backlog was {rss.backlog:,} messages, not 10 million: "
                     f"{'the quick plan' if plan.name == 'quick' else 'the fill hit its cap'})")
    return lines


def rss_lines(rss: RssResult | None) -> list[str]:
    if rss is None:
        return ["Not run (spoolmq was not part of this run)."]
    if rss.error is not None and not rss.backlog:
        return [f"Not measured: {rss.error}"]

    def mib(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.0f} MiB"

    lines = [
        "| phase | what | VmRSS | VmHWM |",
        "|---|---|---|---|",
        f"| fill | {rss.backlog:,} x {RSS_SIZE} B at {rss.fill_rate:,.0f} msg/s "
        f"({rss.fill_s:.0f} s) | {mib(rss.rss_after_fill_mib)} | {mib(rss.hwm_fill_mib)} |",
        f"| restart over the backlog | listening after "
        f"{'n/a' if rss.restart_s is None else f'{rss.restart_s:.1f} s'} | "
        f"{mib(rss.rss_after_restart_mib)} | |",
        f"| ack every other, {rss.consume_s:.0f} s | received {rss.received:,}, acked "
        f"{rss.acked:,}, redelivered {rss.redelivered:,} | peak {mib(rss.rss_max_consume_mib)}"
        f" | {mib(rss.hwm_consume_mib)} |",
    ]
    if rss.error is not None:
        lines.append(f"\nThe workload stopped early: {rss.error}")
    lines.append(f"\nThe consumer leases with a {RSS_VISIBILITY_S:.0f} s visibility timeout "
                 f"and the topic has max deliveries {RSS_MAX_DELIVERIES} (TopicConfig), "
                 "so the messages it never acks come back and end in the group's dead letters "
                 "within the run. VmHWM of the restarted process covers restart and consumer.")
    return lines


def consumer_lines(table: Table, plan: Plan, keys: Sequence[str],
                   diagnosis: dict[int, tuple[Outcome, Outcome]]) -> list[str]:
    """Where spoolmq's consume+ack wall time went, next to Redis's; and what fsync costs."""
    if "spoolmq" not in keys:
        return []
    lines = [
        "Best consume+ack round per size. CPU is seconds on a core over the workload's wall "
        "time (the machine has 2 cores; the client process also holds the idle "
        "connections of the other peers, which cost nothing). 'fetch' is the time the "
        "consumer awaited fetches, 'blocked on acks' the time it could not fetch because "
        f"{ACK_DEPTH} confirmed acks were still unanswered; the ack round trip overlaps the next "
        "fetch, so it is not part of either.",
        "",
        "| system, size | msg/s | wall | server CPU | client CPU | fetch | blocked on acks "
        "| ack round trip (mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size in plan.sizes:
        for key in (BASELINE, "spoolmq"):
            o = table.best("consume", size, key)
            if o is None or o.error or o.wall_s is None or o.consumer is None:
                continue
            t = o.consumer
            rtt = t.ack_rtt_s / t.acks * 1000 if t.acks else 0.0
            lines.append(
                f"| {PEERS[key].name}, {size_label(size)} | {o.value:,.0f} | "
                f"{o.wall_s:.2f} s | {o.server_cpu_s or 0:.2f} s "
                f"({(o.server_cpu_s or 0) / o.wall_s:.0%}) | {o.client_cpu_s or 0:.2f} s "
                f"({(o.client_cpu_s or 0) / o.wall_s:.0%}) | {t.fetch_s:.2f} s | "
                f"{t.ack_block_s:.2f} s | {rtt:.1f} ms |")
    if diagnosis:
        lines += [
            "",
            "The fsync's share, measured right after the main rounds: consume+ack on the "
            "same spoolmq broker (durability sync), then on a second spoolmq broker started "
            "with `--durability none` (no fdatasync before the ack), same consumer:",
            "",
        ]
        for size, (sync, none) in diagnosis.items():
            if sync.error or none.error or not sync.value or not none.value:
                lines.append(f"- {size_label(size)}: not measured "
                             f"({sync.error or none.error or 'no data'})")
                continue
            lines.append(
                f"- {size_label(size)}: sync {sync.value:,.0f} msg/s "
                f"(server CPU {sync.server_cpu_s or 0:.1f} s, client CPU "
                f"{sync.client_cpu_s or 0:.1f} s over {sync.wall_s or 0:.1f} s), none "
                f"{none.value:,.0f} msg/s (server CPU {none.server_cpu_s or 0:.1f} s, client "
                f"CPU {none.client_cpu_s or 0:.1f} s over {none.wall_s or 0:.1f} s): "
                + (f"without the fsync the consumer is {none.value / sync.value:.2f}x as fast, "
                   f"so waiting on fdatasync is about {1 - sync.value / none.value:.0%} of "
                   "the sync wall time."
                   if none.value > 1.1 * sync.value else
                   f"no faster without the fsync ({none.value / sync.value:.2f}x, within this "
                   "machine's noise), so with the ack overlapped the fdatasync is hidden "
                   "behind the next receive and the consumer's time is its receive round "
                   "trips, i.e. client and broker CPU."))
    return lines


def detail_lines(table: Table, plan: Plan, keys: Sequence[str]) -> list[str]:
    lines = []
    for workload in ("produce", "consume", "e2e", "latency"):
        for size in plan.sizes:
            for key in keys:
                for i, o in enumerate(table.rows.get((workload, size), {}).get(key, [])):
                    what = o.error if o.error else o.detail
                    lines.append(f"- {workload} {size_label(size)} {PEERS[key].name} "
                                 f"round {i + 1}: {what}")
    return lines


def write_report(out_dir: Path, plan: Plan, keys: Sequence[str], peers: dict[str, Peer],
                 failed: dict[str, str], table: Table, rss: RssResult | None,
                 elapsed_s: float,
                 diagnosis: dict[int, tuple[Outcome, Outcome]] | None = None) -> str:
    """Write broker.md and broker.png under out_dir; return the markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [PEERS[k].name for k in keys]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    md = [
        "# spoolmq broker benchmark",
        "",
        f"`.venv/bin/python -m bench.broker{' --quick' if plan.name == 'quick' else ''}`, "
        f"{now}, plan `{plan.name}` ({plan.rounds} interleaved round(s), best round per "
        f"system), {elapsed_s / 60:.1f} min. Machine: {machine_summary()}; shared and noisy, "
        "so compare the systems within this run rather than across runs. Load average "
        "(1/5/15 min) when the report was written: "
        + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + "."
        + (f" This run had PYTHONOPTIMIZE={os.environ['PYTHONOPTIMIZE']} (asserts off) in "
           "every Python process, the spoolmq broker's included."
           if os.environ.get("PYTHONOPTIMIZE") else ""),
        "",
        "## Systems",
        "",
        "| system | server version | client | an acknowledged publish is |",
        "|---|---|---|---|",
    ]
    for key in keys:
        peer = peers.get(key)
        if peer is None:
            md.append(f"| {PEERS[key].name} | n/a | n/a | not running: {failed.get(key, '?')} |")
        else:
            md.append(f"| {peer.name} | {peer.version} | {peer.client} | {peer.durability} |")
    md += [
        "",
        "## Throughput and latency",
        "",
        "Ratios are against Redis Streams with `appendfsync always`: above 1.00x is faster "
        "for throughput; for latency a ratio below 1.00x is better. A latency cell that says "
        "'rate not carried' is from a system that did not deliver every offered message "
        "before the drain cap, so its percentiles only cover what arrived.",
        "",
        "| workload | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        *throughput_rows(table, plan, keys, failed),
        "",
        "![broker benchmark](broker.png)",
        "",
        "## spoolmq broker memory",
        "",
        *rss_lines(rss),
        "",
        "## Targets",
        "",
        *target_lines(table, plan, keys, rss),
        "",
        "## Where spoolmq's consume+ack time goes",
        "",
        *consumer_lines(table, plan, keys, diagnosis or {}),
        "",
        "## How it was measured",
        "",
        "- Every server runs as a subprocess on 127.0.0.1 with a private data dir in a temp "
        "dir, started and torn down by the benchmark; all of them run during the whole run "
        "and each workload runs system after system (first system rotated per round).",
        f"- Producers keep {PRODUCE_BATCH:,} messages in flight per call and wait for every "
        "confirmation: a pipeline of XADD (redis-py asyncio, hiredis), 1,000 gathered "
        "`publish_async` PubAcks (nats-py), 1,000 gathered confirmed publishes of persistent "
        "messages (aio-pika), one `send_batch` (spoolmq).",
        f"- Throughput consumers (consume+ack and end-to-end) fetch up to {FETCH_MAX} at a "
        "time and ack them, each the way its client is fastest; a message counts as "
        "consumed when its ack returned. Where the ack waits for the server's answer, and "
        f"so for its fsync, it runs as a task while the next fetch is in flight, at most "
        f"{ACK_DEPTH} acks outstanding, all awaited at the end. Redis Streams and spoolmq "
        f"also keep {FETCH_DEPTH} fetches in flight: fetch N+1 is issued before the "
        "messages of fetch N are handed over and acked, so the server prepares the next "
        "batch while the client decodes this one. Redis Streams: XREADGROUP COUNT "
        f"{FETCH_MAX} '>' + XACK of the previous batch, each concurrent call on a "
        "connection of its own from redis-py's pool (Redis hands each XREADGROUP entries "
        "of its own and answers what one event loop iteration read after one AOF fsync); "
        f"spoolmq: `receive(max={FETCH_MAX})` (columnar runs, one lease per run) + `ack` of "
        "the previous batch as one range receipt per run, receives and acks pipelined on "
        "the client's one connection (the ack returns after the fdatasync of the group "
        "state). JetStream durable pull "
        f"consumer `fetch({FETCH_MAX})` + one `Msg.ack()` per message, and aio-pika prefetch "
        f"{FETCH_MAX} + `ack(multiple=True)` on the last delivery tag: neither ack has a "
        "reply (they return once written, and are not confirmed durable when they do), so "
        "they are awaited in line and already overlap the next fetch; these two keep one "
        "fetch in flight (RabbitMQ pushes up to the prefetch ahead of it anyway). The latency "
        "workload's consumer acks in line after each fetch for every system.",
        f"- produce: up to {plan.produce_count:,} messages or {plan.produce_cap_s:.0f} s; "
        "consume+ack: the backlog that produce left, from a new connection; end-to-end: "
        f"producer and consumer together, up to {plan.e2e_count:,} messages or "
        f"{plan.e2e_cap_s:.0f} s of producing, rate = messages consumed / time to the last "
        "one consumed.",
        f"- latency: {LATENCY_RATE:,} msg/s offered as {int(LATENCY_RATE * LATENCY_TICK_S)} "
        f"messages every {LATENCY_TICK_S * 1000:.0f} ms for {plan.latency_s:.0f} s, without "
        "waiting for confirms between ticks; each message carries the time it was due "
        "(no coordinated omission) and the consumer takes now minus that when its fetch "
        "returns. nats-py's `fetch(n)` returns only when n messages came or its wait "
        "ended, so the NATS consumer fetches with a 5 ms wait; the others long-poll and "
        "return as soon as a message is ready.",
        "- The benchmark's clients all run in one Python process on uvloop, so on two "
        "cores client CPU is part of every number; that is how these clients are used "
        "from Python. That process paces the cyclic garbage collector as spoolmq's "
        "servers do (young threshold 20,000, spoolmq/gc_tuning.py), for every client "
        "alike: a consumer holding thousands of received messages otherwise pays for "
        "full collections that rescan them.",
        "",
        "## Details",
        "",
        *detail_lines(table, plan, keys),
        "",
    ]
    for key, why in failed.items():
        md.append(f"- {PEERS[key].name} did not run: {why}")
    text = "\n".join(md).rstrip() + "\n"
    (out_dir / "broker.md").write_text(text)
    chart(out_dir / "broker.png", table, plan, keys)
    return text


def chart(path: Path, table: Table, plan: Plan, keys: Sequence[str]) -> None:
    """Grouped bars: produce, consume+ack, end-to-end (msg/s) and p99 latency (ms)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, str, Callable[[Outcome], float | None], str]] = [
        ("produce", "produce (msg/s)", lambda o: o.value, ",.0f"),
        ("consume", "consume + ack (msg/s)", lambda o: o.value, ",.0f"),
        ("e2e", "end-to-end (msg/s)", lambda o: o.value, ",.0f"),
        ("latency", f"p99 latency at {LATENCY_RATE:,} msg/s (ms, lower is better)",
         lambda o: o.p99, ".1f"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    width = 0.8 / max(1, len(keys))
    for ax, (workload, title, pick, fmt) in zip(axes.flat, panels, strict=True):
        for i, key in enumerate(keys):
            heights, labels = [], []
            for size in plan.sizes:
                o = table.best(workload, size, key)
                v = None if o is None or o.error is not None else pick(o)
                if o is not None and v is not None and not o.sustained:
                    # Percentiles of a system that fell behind the offered rate would
                    # dwarf the others; the table has them.
                    heights.append(0.0)
                    labels.append("rate not carried")
                elif v is None or math.isnan(v):
                    heights.append(0.0)
                    labels.append("n/a")
                else:
                    heights.append(v)
                    labels.append(format(v, fmt))
            xs = [j + (i - (len(keys) - 1) / 2) * width for j in range(len(plan.sizes))]
            bars = ax.bar(xs, heights, width, label=PEERS[key].name)
            ax.bar_label(bars, labels=labels, fontsize=7, rotation=90, padding=2)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(plan.sizes)), [size_label(s) for s in plan.sizes])
        ax.margins(y=0.25)
        ax.tick_params(axis="y", labelsize=8)
    axes.flat[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"spoolmq vs peers ({plan.name} plan; Redis Streams with appendfsync always "
                 "is the baseline)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
