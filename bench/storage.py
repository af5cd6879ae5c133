"""Storage benchmark: the partition log and the group committer on this machine's disk.

    .venv/bin/python -m bench.storage [--quick] [--dir /tmp/...] [--out bench/results/storage.md]

Measures, and prints as markdown (also written to --out):
- the disk itself: sequential write MB/s and fdatasync/s from a raw os.write loop;
- append throughput through GroupCommitter for 100 B and 1 KiB records in batches of
  1, 100 and 1,000 under sync, interval:5 and none (one appender), plus raw
  FileLog.append_many without the committer for comparison;
- group-commit scaling: 1, 8 and 64 concurrent appenders of 100-record batches (sync);
- sequential read throughput;
- FileLog.open time of a 1 GiB and a 4 GiB log after a clean close and after SIGKILL in
  the middle of 1-record appends (--quick: one 256 MiB log);
- peak RSS (VmHWM) of a process appending 10 million records (--quick: 2 million).

Every loop is bounded by a record count and a time cap. Everything is written under
--dir (a fresh directory under /tmp by default) and removed at the end.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as `python bench/storage.py`: import the repo's storage
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(_here))

import argparse
import asyncio
import json
import platform
import shutil
import signal
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import msgpack

from storage.api import AppendEntry
from storage.committer import GroupCommitter
from storage.fileio import OsFileSystem
from storage.log import FileLog
from storage.state import FileStateStore

MIB = 1 << 20
GIB = 1 << 30
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Bounds of one append cell: the time cap, and a byte cap so a fast mode cannot fill the disk.
CELL_MAX_BYTES = 1 * GIB
SIGKILL_CHILD_MAX_S = 60.0  # the appender child exits by itself if never killed
CHILD_START_MAX_S = 120.0  # opening a 4 GiB log in the child must take far less

TARGETS = {
    "interval_batched_100B": 2_000_000,  # rec/s, 100 B in 1,000-record batches, interval:5
    "sync_64x100": 1_000_000,  # rec/s, 64 appenders of 100-record batches, sync
    "open_s": 0.5,
    "rss_mb": 100.0,
}


@dataclass(frozen=True, slots=True)
class Plan:
    cell_s: float  # time cap of one append cell
    scale_s: float  # time cap of one group-commit scaling run
    disk_write_bytes: int
    fsync_s: float
    read_records: int
    open_sizes: tuple[int, ...]
    rss_records: int


FULL = Plan(2.0, 3.0, 512 * MIB, 2.0, 2_000_000, (1 * GIB, 4 * GIB), 10_000_000)
QUICK = Plan(0.5, 1.0, 128 * MIB, 1.0, 300_000, (256 * MIB,), 2_000_000)


def run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def fresh_dir(base: str, name: str) -> str:
    path = os.path.join(base, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


# -- the disk itself ----------------------------------------------------------------------

GROUP_BYTES = 64 * 100 * 110  # one sync group of 64 appenders x 100 records x ~110 B on disk


def bench_disk(base: str, plan: Plan) -> dict[str, float]:
    """Raw os.write + fdatasync loops: 100 B per fdatasync (latency), one sync group's
    bytes per fdatasync (the synced bandwidth that bounds sync mode), and 1 MiB writes
    with one fdatasync at the end (sequential write)."""
    path = os.path.join(base, "raw.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        small = b"\x5a" * 100
        lat: list[float] = []
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < plan.fsync_s and len(lat) < 1_000_000:
            os.write(fd, small)
            t1 = time.perf_counter()
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t1)
        fsyncs_s = len(lat) / (time.perf_counter() - t0)
        group = b"\x3c" * GROUP_BYTES
        written = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < plan.fsync_s and written < 4 * GIB:
            written += os.write(fd, group)
            os.fdatasync(fd)
        group_mb_s = written / (time.perf_counter() - t0) / 1e6
        chunk = b"\xa5" * MIB
        written = 0
        t0 = time.perf_counter()
        while written < plan.disk_write_bytes and time.perf_counter() - t0 < 30:
            written += os.write(fd, chunk)
        os.fdatasync(fd)
        seq_mb_s = written / (time.perf_counter() - t0) / 1e6
    finally:
        os.close(fd)
        os.unlink(path)
    lat.sort()
    print(f"  sequential {seq_mb_s:,.0f} MB/s, {fsyncs_s:,.0f} fdatasync/s, synced groups "
          f"{group_mb_s:,.0f} MB/s", flush=True)
    return {"seq_mb_s": seq_mb_s, "fsyncs_s": fsyncs_s, "fsync_p50_ms": pct(lat, 0.5) * 1e3,
            "fsync_p99_ms": pct(lat, 0.99) * 1e3, "group_mb_s": group_mb_s}


# -- appends ------------------------------------------------------------------------------

def entry_of(size: int, batch: int) -> list[AppendEntry]:
    return [AppendEntry([bytes([65 + i % 26]) * size for i in range(batch)])]


async def _append_run(directory: str, mode: str, size: int, batch: int, appenders: int,
                      cap_s: float) -> dict[str, float]:
    log = FileLog.open(OsFileSystem(), directory)
    committer = GroupCommitter(mode, 0.005 if mode == "interval" else 0.0)
    entry = entry_of(size, batch)
    max_appends = max(1, CELL_MAX_BYTES // (size * batch) // appenders)
    lat: list[float] = []
    count = 0
    clock = time.perf_counter
    deadline = clock() + cap_s

    async def appender() -> None:
        nonlocal count
        for _ in range(max_appends):
            t = clock()
            if t >= deadline:
                return
            await committer.append(log, entry)
            lat.append(clock() - t)
            count += 1

    t0, c0 = clock(), time.process_time()
    await asyncio.gather(*(appender() for _ in range(appenders)))
    elapsed = clock() - t0
    cpu = time.process_time() - c0
    await committer.close()
    disk_bytes = log.size_bytes()
    log.close()
    records = count * batch
    lat.sort()
    return {"rec_s": records / elapsed, "mb_s": records * size / elapsed / 1e6,
            "rec_cpu_s": records / max(cpu, 1e-9),
            "p50_ms": pct(lat, 0.5) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3,
            "per_sync": count / max(1, committer.syncs), "records": records,
            "disk_bytes_per_record": disk_bytes / max(1, records)}


def _raw_append_run(directory: str, size: int, batch: int, cap_s: float) -> dict[str, float]:
    """FileLog.append_many alone, no committer, no sync: the log's own ceiling."""
    log = FileLog.open(OsFileSystem(), directory)
    entry = entry_of(size, batch)
    max_appends = max(1, CELL_MAX_BYTES // (size * batch))
    count = 0
    t0, c0 = time.perf_counter(), time.process_time()
    deadline = t0 + cap_s
    while count < max_appends and time.perf_counter() < deadline:
        log.append_many(entry)
        count += 1
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    log.close()
    return {"rec_s": count * batch / elapsed, "mb_s": count * batch * size / elapsed / 1e6,
            "rec_cpu_s": count * batch / max(cpu, 1e-9)}


def bench_appends(base: str, plan: Plan) -> list[tuple[str, int, int, dict[str, float]]]:
    rows = []
    for mode in ("sync", "interval", "none", "raw"):
        for size in (100, 1024):
            for batch in (1, 100, 1000):
                d = fresh_dir(base, "append")
                if mode == "raw":
                    r = _raw_append_run(d, size, batch, plan.cell_s)
                else:
                    r = run_loop(_append_run(d, mode, size, batch, 1, plan.cell_s))
                shutil.rmtree(d)
                os.sync()  # the next cell does not pay for this one's writeback
                rows.append((mode, size, batch, r))
                print(f"  append {mode:8} {size:5} B x {batch:5}: {r['rec_s']:>12,.0f} rec/s "
                      f"({r['rec_cpu_s']:,.0f} per CPU s)", flush=True)
    return rows


SCALE_REPEATS = 3  # this disk's fdatasync time wanders; the median of three runs is reported


def bench_scaling(base: str, plan: Plan) -> list[tuple[int, dict[str, float]]]:
    rows = []
    for appenders in (1, 8, 64):
        runs = []
        for _ in range(SCALE_REPEATS):
            d = fresh_dir(base, "scale")
            runs.append(run_loop(_append_run(d, "sync", 100, 100, appenders, plan.scale_s)))
            shutil.rmtree(d)
            os.sync()
        runs.sort(key=lambda r: r["rec_s"])
        r = dict(runs[len(runs) // 2])
        r["min_rec_s"], r["max_rec_s"] = runs[0]["rec_s"], runs[-1]["rec_s"]
        rows.append((appenders, r))
        print(f"  sync x{appenders:3}: {r['rec_s']:>12,.0f} rec/s (runs "
              + ", ".join(f"{x['rec_s']:,.0f}" for x in runs) + ")", flush=True)
    return rows


# -- the state store --------------------------------------------------------------------

async def _state_run(directory: str, committers: int, cap_s: float) -> float:
    """Commits/s of FileStateStore (sync): each committer puts one small record, commits."""
    store = FileStateStore.open(OsFileSystem(), directory)
    done = 0
    deadline = time.perf_counter() + cap_s

    async def committer(w: int) -> None:
        nonlocal done
        for i in range(1_000_000):
            if time.perf_counter() >= deadline:
                return
            store.put("acks", f"g{w}", {"floor": i})
            await store.commit()
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(committer(w) for w in range(committers)))
    rate = done / (time.perf_counter() - t0)
    await store.close()
    return rate


async def _sqlite_run(directory: str, committers: int, cap_s: float) -> float:
    """The same with aiosqlite (WAL, synchronous=FULL, a CRC per row), one commit per put."""
    import aiosqlite

    db = await aiosqlite.connect(os.path.join(directory, "state.db"))
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute("CREATE TABLE kv (ns TEXT, k TEXT, v BLOB, crc INTEGER, "
                     "PRIMARY KEY (ns, k))")
    await db.commit()
    lock = asyncio.Lock()  # one connection: transactions must not interleave
    done = 0
    deadline = time.perf_counter() + cap_s

    async def committer(w: int) -> None:
        nonlocal done
        for i in range(1_000_000):
            if time.perf_counter() >= deadline:
                return
            value = msgpack.packb({"floor": i})
            async with lock:
                await db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?)",
                                 ("acks", f"g{w}", value, zlib.crc32(value)))
                await db.commit()
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(committer(w) for w in range(committers)))
    rate = done / (time.perf_counter() - t0)
    await db.close()
    return rate


def bench_state(base: str, plan: Plan) -> list[tuple[int, float, float]]:
    rows = []
    for committers in (1, 64):
        d = fresh_dir(base, "state")
        own = run_loop(_state_run(d, committers, plan.cell_s))
        shutil.rmtree(d)
        d = fresh_dir(base, "state")
        sqlite = run_loop(_sqlite_run(d, committers, plan.cell_s))
        shutil.rmtree(d)
        rows.append((committers, own, sqlite))
        print(f"  state x{committers:3}: own log {own:,.0f} commits/s, aiosqlite "
              f"{sqlite:,.0f} commits/s", flush=True)
    return rows


# -- reads --------------------------------------------------------------------------------

def bench_reads(base: str, plan: Plan) -> list[tuple[int, dict[str, float]]]:
    rows = []
    for size in (100, 1024):
        d = fresh_dir(base, "read")
        log = FileLog.open(OsFileSystem(), d)
        entry = entry_of(size, 1000)
        for _ in range(max(1, plan.read_records // 1000)):
            log.append_many(entry)
        log.close()
        log = FileLog.open(OsFileSystem(), d)
        offset = records = 0
        t0 = time.perf_counter()
        while offset < log.end_offset and time.perf_counter() - t0 < 60:
            batches = log.read(offset, max_bytes=MIB)
            records += sum(b.count for b in batches)
            offset = batches[-1].next_offset
        elapsed = time.perf_counter() - t0
        log.close()
        shutil.rmtree(d)
        rows.append((size, {"rec_s": records / elapsed,
                            "mb_s": records * size / elapsed / 1e6}))
        print(f"  read {size:5} B: {records / elapsed:>12,.0f} rec/s", flush=True)
    return rows


# -- open time ----------------------------------------------------------------------------

def _fill(directory: str, size_bytes: int) -> int:
    """Append 1 KiB records in 1,000-record batches until the log holds size_bytes."""
    log = FileLog.open(OsFileSystem(), directory)
    entry = entry_of(1024, 1000)
    t0 = time.perf_counter()
    while log.size_bytes() < size_bytes and time.perf_counter() - t0 < 600:
        log.append_many(entry)
    log.close()
    return log.size_bytes()


def _timed_open(directory: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    log = FileLog.open(OsFileSystem(), directory)
    elapsed = time.perf_counter() - t0
    end = log.end_offset
    log.close()
    return elapsed, end


def _child_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.storage", *args]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def child_append(directory: str) -> None:
    """Append 1-record batches, syncing every 5 ms, until killed (or the time cap)."""
    log = FileLog.open(OsFileSystem(), directory)
    entry = entry_of(100, 1)
    print("ready", flush=True)
    t0 = last_sync = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < SIGKILL_CHILD_MAX_S:
        log.append_many(entry)
        n += 1
        if n == 20_000:
            print("appending", flush=True)
        now = time.perf_counter()
        if now - last_sync >= 0.005:
            log.sync()
            last_sync = now
    log.close()


def _sigkill_during_appends(directory: str) -> None:
    proc = subprocess.Popen(_child_cmd("--child-append", directory), cwd=REPO,
                            env=_child_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + CHILD_START_MAX_S
        for expected in ("ready", "appending"):
            line = proc.stdout.readline().strip()
            if line != expected or time.monotonic() > deadline:
                raise RuntimeError(f"appender child said {line!r}, expected {expected!r}")
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def bench_open(base: str, plan: Plan) -> list[tuple[int, dict[str, float]]]:
    rows = []
    for size in plan.open_sizes:
        d = fresh_dir(base, "open")
        actual = _fill(d, size)
        clean_s, _ = _timed_open(d)
        _sigkill_during_appends(d)
        killed_s, end = _timed_open(d)
        shutil.rmtree(d)
        rows.append((actual, {"clean_s": clean_s, "killed_s": killed_s, "end": end}))
        print(f"  open {actual / GIB:.2f} GiB: clean {clean_s:.3f} s, after SIGKILL "
              f"{killed_s:.3f} s", flush=True)
    return rows


# -- memory -------------------------------------------------------------------------------

def _vm_hwm_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def child_rss(directory: str, records: int) -> None:
    """Append `records` 100 B records in 1,000-record batches through the committer
    (interval:5); print VmHWM in KiB every million records, as one JSON line."""
    async def go() -> list[tuple[int, int]]:
        log = FileLog.open(OsFileSystem(), directory)
        committer = GroupCommitter("interval", 0.005)
        entry = entry_of(100, 1000)
        samples = [(0, _vm_hwm_kb())]
        for i in range(records // 1000):
            await committer.append(log, entry)
            if (i + 1) % 1000 == 0:
                samples.append(((i + 1) * 1000, _vm_hwm_kb()))
        await committer.close()
        log.close()
        return samples

    print(json.dumps(run_loop(go())), flush=True)


def bench_rss(base: str, plan: Plan) -> list[tuple[int, int]]:
    d = fresh_dir(base, "rss")
    try:
        out = subprocess.run(_child_cmd("--child-rss", d, str(plan.rss_records)), cwd=REPO,
                             env=_child_env(), capture_output=True, text=True, timeout=900,
                             check=True).stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)
    samples = [(int(n), int(kb)) for n, kb in json.loads(out.strip().splitlines()[-1])]
    print(f"  peak RSS: {samples[-1][1] / 1024:.1f} MiB after {samples[-1][0]:,} records",
          flush=True)
    return samples


# -- report -------------------------------------------------------------------------------

def machine() -> str:
    fs_type = "?"
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split() for line in f]
        best = ""
        for m in mounts:
            if len(m) > 2 and BASE_FOR_MOUNT.startswith(m[1]) and len(m[1]) > len(best):
                best, fs_type = m[1], f"{m[2]} on {m[0]}"
    except OSError:
        pass
    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    return (f"{platform.node()} · {os.cpu_count()} CPUs · Linux {platform.release()} · "
            f"Python {platform.python_version()} · {loop} · {fs_type}")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min)"


BASE_FOR_MOUNT = "/tmp"


def fmt_rate(v: float) -> str:
    return f"{v:,.0f}"


def report(plan: Plan, quick: bool, disk: dict[str, float],
           appends: list[tuple[str, int, int, dict[str, float]]],
           scaling: list[tuple[int, dict[str, float]]],
           reads: list[tuple[int, dict[str, float]]],
           opens: list[tuple[int, dict[str, float]]],
           rss: list[tuple[int, int]], state: list[tuple[int, float, float]], command: str,
           loads: tuple[str, str]) -> str:
    out = ["# Storage benchmark", "",
           f"`{command}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
           + (" (quick run)" if quick else ""), "", f"Machine: {machine()}", "",
           f"Load average at start: {loads[0]}; at end: {loads[1]}. Other work on the "
           "machine competes for its CPUs and disk, so compare runs at similar load.", "",
           "## The disk itself (raw os.write + fdatasync)", "",
           "| sequential write (1 MiB writes, one fdatasync) | fdatasync/s (100 B write each) "
           f"| fdatasync p50 | fdatasync p99 | synced write, {GROUP_BYTES // 1024} KiB "
           "per fdatasync |",
           "|---:|---:|---:|---:|---:|",
           f"| {disk['seq_mb_s']:,.0f} MB/s | {disk['fsyncs_s']:,.0f} "
           f"| {disk['fsync_p50_ms']:.2f} ms | {disk['fsync_p99_ms']:.2f} ms "
           f"| {disk['group_mb_s']:,.0f} MB/s |", "",
           "The last column bounds sync mode: every record must pass through an fdatasync.",
           "",
           "## Append throughput (one appender through GroupCommitter)", "",
           f"Each cell runs {plan.cell_s:g} s (or {CELL_MAX_BYTES // GIB} GiB). `raw` is "
           "FileLog.append_many alone: no committer, no fsync. `per CPU s` divides by the "
           "process's CPU time (every thread, kernel time included) instead of wall time: "
           "it is what load on the machine distorts least.", "",
           "| mode | record | batch | records/s | per CPU s | MB/s | p50 append | p99 append |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    names = {"sync": "sync", "interval": "interval:5", "none": "none", "raw": "raw"}
    for mode, size, batch, r in appends:
        lat = (f"{r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms" if "p50_ms" in r else "- | -")
        out.append(f"| {names[mode]} | {size} B | {batch:,} | {fmt_rate(r['rec_s'])} "
                   f"| {fmt_rate(r['rec_cpu_s'])} | {r['mb_s']:,.1f} | {lat} |")
    out += ["", "## Group commit scaling (sync, 100-record batches of 100 B)", "",
            f"Median of {SCALE_REPEATS} runs of {plan.scale_s:g} s each; the range is min-max.",
            "",
            "| appenders | records/s | range | per CPU s | MB/s | appends per fsync "
            "| p50 append | p99 append |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, r in scaling:
        out.append(f"| {n} | {fmt_rate(r['rec_s'])} | {fmt_rate(r['min_rec_s'])} - "
                   f"{fmt_rate(r['max_rec_s'])} | {fmt_rate(r['rec_cpu_s'])} "
                   f"| {r['mb_s']:,.1f} | {r['per_sync']:.1f} "
                   f"| {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms |")
    per_rec = scaling[-1][1]["disk_bytes_per_record"]
    out += ["", f"On disk a 100 B record takes {per_rec:.0f} B, so this disk's synced bandwidth "
            f"caps sync mode at about {disk['group_mb_s'] * 1e6 / per_rec:,.0f} records/s "
            "before any CPU is spent."]
    out += ["", "## Sequential read (FileLog.read, 1 MiB at a time, page cache warm)", "",
            "| record | records/s | MB/s |", "|---:|---:|---:|"]
    for size, r in reads:
        out.append(f"| {size} B | {fmt_rate(r['rec_s'])} | {r['mb_s']:,.1f} |")
    out += ["", "## FileLog.open time", "",
            "| log size | after clean close | after SIGKILL mid 1-record appends |",
            "|---:|---:|---:|"]
    for size, r in opens:
        out.append(f"| {size / GIB:.2f} GiB | {r['clean_s']:.3f} s | {r['killed_s']:.3f} s |")
    out += ["", f"## Peak RSS while appending {rss[-1][0]:,} records (VmHWM, interval:5, "
            "1,000 x 100 B batches)", "",
            "| records appended | " + " | ".join(f"{n / 1e6:g} M" for n, _ in rss) + " |",
            "|---|" + "---:|" * len(rss),
            "| VmHWM MiB | " + " | ".join(f"{kb / 1024:.1f}" for _, kb in rss) + " |"]
    out += ["", "## State store commits (sync; each committer puts one small record)", "",
            "| concurrent committers | FileStateStore (own CRC-framed log) "
            "| aiosqlite (WAL, synchronous=FULL) |", "|---:|---:|---:|"]
    for n, own, sqlite in state:
        out.append(f"| {n} | {fmt_rate(own)} commits/s | {fmt_rate(sqlite)} commits/s |")
    interval = next(r for m, s, b, r in appends if (m, s, b) == ("interval", 100, 1000))
    sync64 = next(r for n, r in scaling if n == 64)
    worst_open = max(max(r["clean_s"], r["killed_s"]) for _, r in opens)
    peak = rss[-1][1] / 1024
    growth = (rss[-1][1] - rss[1][1]) / 1024 if len(rss) > 1 else 0.0
    checks = [
        ("interval:5, 100 B x 1,000 batches", f"≥ {TARGETS['interval_batched_100B']:,} rec/s",
         fmt_rate(interval["rec_s"]), interval["rec_s"] >= TARGETS["interval_batched_100B"]),
        ("sync, 64 appenders x 100-record batches (median)",
         f"≥ {TARGETS['sync_64x100']:,} rec/s",
         fmt_rate(sync64["rec_s"]), sync64["rec_s"] >= TARGETS["sync_64x100"]),
        ("open time, every case", f"< {TARGETS['open_s']} s", f"{worst_open:.3f} s",
         worst_open < TARGETS["open_s"]),
        ("peak RSS", f"< {TARGETS['rss_mb']:.0f} MB, flat", f"{peak:.1f} MiB "
         f"(+{growth:.1f} MiB after the first million)",
         peak * 1.048576 < TARGETS["rss_mb"] and growth < 10),
    ]
    out += ["", "## Targets", "", "| what | target | measured | met |", "|---|---|---:|---|"]
    for what, target, got, ok in checks:
        out.append(f"| {what} | {target} | {got} | {'yes' if ok else 'NO'} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short run, small files")
    parser.add_argument("--dir", help="scratch directory (default: a new one under /tmp)")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "storage.md"))
    parser.add_argument("--only", default="disk,append,scale,read,open,rss,state",
                        help="comma-separated sections to run")
    parser.add_argument("--child-append", help=argparse.SUPPRESS)
    parser.add_argument("--child-rss", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_append:
        child_append(args.child_append)
        return 0
    if args.child_rss:
        child_rss(args.child_rss[0], int(args.child_rss[1]))
        return 0

    plan = QUICK if args.quick else FULL
    made = args.dir is None
    base = tempfile.mkdtemp(prefix="spoolmq-bench-", dir="/tmp") if made else args.dir
    os.makedirs(base, exist_ok=True)
    global BASE_FOR_MOUNT
    BASE_FOR_MOUNT = os.path.abspath(base)
    only = set(args.only.split(","))
    runs: dict[str, Callable[[str, Plan], Any]] = {
        "disk": bench_disk, "append": bench_appends, "scale": bench_scaling,
        "read": bench_reads, "open": bench_open, "rss": bench_rss, "state": bench_state}
    results: dict[str, Any] = {}
    load_before = load()
    try:
        for name, fn in runs.items():
            if name in only:
                print(f"{name}:", flush=True)
                results[name] = fn(base, plan)
    finally:
        for name in ("raw.bin", "append", "scale", "read", "open", "rss", "state"):
            path = os.path.join(base, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.exists(path):
                os.unlink(path)
        if made:
            shutil.rmtree(base, ignore_errors=True)
    if set(runs) - set(results):
        print("(partial run: no report written)")
        return 0
    command = "python -m bench.storage" + (" --quick" if args.quick else "")
    text = report(plan, args.quick, results["disk"], results["append"], results["scale"],
                  results["read"], results["open"], results["rss"], results["state"],
                  command, (load_before, load()))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
