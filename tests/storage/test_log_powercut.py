"""Power cuts at random points: every append that returned after sync() survives.

SimFileSystem drops whatever was not fsynced (keeping a random torn prefix of it).
The same workload without sync() must lose appends, which proves the check can fail.
"""

from __future__ import annotations

import random

from storage.api import AppendEntry
from storage.faults import SimFileSystem
from storage.log import FileLog
from tests.storage.logharness import ManualClock, read_all

D = "/data/p"


def value(offset: int) -> bytes:
    return f"<{offset}>".encode() * (1 + offset % 5)


def run(seed: int, sync: bool) -> tuple[int, int]:
    """Append in rounds, cut power at a random point, reopen and check. Returns
    (records that returned, records lost among those)."""
    rng = random.Random(seed)
    fs = SimFileSystem()
    segment_bytes = rng.choice([600, 4096, 1 << 20])
    checkpoint_bytes = rng.choice([0, 500, 1 << 20])
    clock = ManualClock()

    def reopen() -> FileLog:
        return FileLog.open(fs, D, segment_bytes=segment_bytes, index_interval_bytes=100,
                            checkpoint_interval_bytes=checkpoint_bytes, clock_ms=clock)

    log = reopen()
    returned = lost = 0
    for _ in range(6):
        acked: list[int] = []
        for _ in range(rng.randint(0, 25)):
            batch: list[list[bytes]] = []
            for _ in range(rng.randint(1, 3)):
                base = log.end_offset + sum(len(v) for v in batch)
                batch.append([value(base + i) for i in range(rng.randint(1, 4))])
            bases = log.append_many([AppendEntry(v) for v in batch])
            if sync:
                log.sync()
            acked += [b + i for b, v in zip(bases, batch, strict=True) for i in range(len(v))]
        fs.power_cut(rng)
        log = reopen()
        survivors = dict(read_all(log, log.start_offset))
        assert all(survivors[o] == value(o) for o in survivors), "wrong data after power cut"
        returned += len(acked)
        lost += sum(1 for o in acked if o not in survivors)
    return returned, lost


def test_every_synced_append_survives_random_power_cuts() -> None:
    total = 0
    for seed in range(120):
        returned, lost = run(seed, sync=True)
        assert lost == 0, f"seed {seed}: {lost} of {returned} synced records lost"
        total += returned
    assert total > 1000


def test_without_sync_power_cuts_lose_appends() -> None:
    lost = sum(run(seed, sync=False)[1] for seed in range(40))
    assert lost > 0
