"""Garbage-collector settings for a long-running server process.

Reference counting frees almost every object the hot paths make; the cycle
collector only has to find the rare cycles. With CPython's default pacing (a
young collection every 700 net allocations) a busy gateway collects thousands of
times a second, and the older collections rescan the broker's long-lived state
(topics, groups, leases, indexes) again and again. So a server process:

- collects the youngest generation every `YOUNG_THRESHOLD` net allocations, and
  the older ones after `OLDER_THRESHOLD` collections of the one below; cyclic
  garbage then waits a little longer (bounded by those counts) before it is freed;
- freezes what starting made (modules, configuration, recovered state) out of
  every later collection, once the listeners are up.

Both are process-wide, so only the process entry points call them (`spoolmq
serve` / `spoolmq broker`, and the benchmark servers that stand in for them),
never code that tests run in-process.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
OLDER_THRESHOLD = 20


def pace_collections() -> None:
    """Collect less often than CPython's default (see the module text)."""
    gc.set_threshold(YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)


def freeze_startup_objects() -> None:
    """Collect once, then move every surviving object out of later collections."""
    gc.collect()
    gc.freeze()
