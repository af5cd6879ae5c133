"""Appends to a FileLog on the real disk forever, printing each offset once it is synced.

Run by test_log_crash.py, which SIGKILLs it at random points. Usage:
    python crash_writer.py DIRECTORY SEED
"""

from __future__ import annotations

import random
import sys

from storage.api import AppendEntry
from storage.fileio import OsFileSystem
from storage.log import FileLog


def value(offset: int) -> bytes:
    return f"[{offset}]".encode() * (1 + offset % 7)


def main() -> None:
    directory, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    log = FileLog.open(OsFileSystem(), directory, segment_bytes=64 * 1024,
                       index_interval_bytes=512, checkpoint_interval_bytes=16 * 1024)
    print(f"open {log.end_offset}", flush=True)
    while True:
        entries = []
        offset = log.end_offset
        for _ in range(rng.randint(1, 4)):
            n = rng.randint(1, 20)
            entries.append(AppendEntry([value(offset + i) for i in range(n)]))
            offset += n
        log.append_many(entries)
        log.sync()
        print(offset - 1, flush=True)


if __name__ == "__main__":
    main()
