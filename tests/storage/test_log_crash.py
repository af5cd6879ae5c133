"""SIGKILL a real appending process at random points; every synced offset must survive."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from storage.fileio import OsFileSystem
from storage.log import FileLog
from tests.storage.crash_writer import value
from tests.storage.logharness import read_all

ROUNDS = 24
WRITER = Path(__file__).with_name("crash_writer.py")
ROOT = Path(__file__).resolve().parents[2]


def test_sigkill_at_random_points_loses_no_synced_append(tmp_path: Path) -> None:
    rng = random.Random(20240601)
    directory = str(tmp_path / "p")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    highest = -1
    for round_ in range(ROUNDS):
        proc = subprocess.Popen([sys.executable, str(WRITER), directory, str(round_)],
                                stdout=subprocess.PIPE, env=env, text=True)
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("open "), first
        assert int(first.split()[1]) > highest  # nothing synced went missing at open
        for _ in range(rng.randint(1, 60)):
            line = proc.stdout.readline()
            assert line, "writer stopped early"
            highest = max(highest, int(line))
        proc.send_signal(signal.SIGKILL)
        for line in proc.stdout:  # offsets synced before the kill landed
            highest = max(highest, int(line))
        proc.wait(timeout=10)
        proc.stdout.close()

    log = FileLog.open(OsFileSystem(), directory, segment_bytes=64 * 1024)
    assert log.damage is None
    assert log.end_offset > highest
    records = read_all(log)
    assert [o for o, _ in records] == list(range(log.end_offset))
    assert all(v == value(o) for o, v in records)
    log.close()
