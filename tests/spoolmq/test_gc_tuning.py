"""The server's collector settings (process-wide, so each test puts them back)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from spoolmq.gc_tuning import (
    OLDER_THRESHOLD,
    YOUNG_THRESHOLD,
    freeze_startup_objects,
    pace_collections,
)


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_collections_are_paced_and_still_enabled(restored_gc: None) -> None:
    pace_collections()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
    assert gc.isenabled()


def test_startup_objects_leave_later_collections_but_new_cycles_are_still_found(
        restored_gc: None) -> None:
    freeze_startup_objects()
    assert gc.get_freeze_count() > 0
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
