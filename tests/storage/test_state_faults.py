"""FileStateStore on SimFileSystem: power cuts, failed fsyncs and a full disk."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage import state_file as state_mod
from storage.errors import FsyncFailed, StorageFull
from storage.faults import SimFileSystem
from storage.state import RESERVE_BYTES, RESERVE_NAME, FileStateStore

DIR = "/data/state"

Model = dict[tuple[str, str], Any]


def contents(store: FileStateStore) -> Model:
    return {(ns, k): v for ns in ("a", "b") for k, v in store.items(ns)}


STEPS = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["x", "y", "z"]),
              st.one_of(st.none(), st.integers(0, 1000)), st.booleans()),
    min_size=1, max_size=30,
)


@given(steps=STEPS, seed=st.integers(0, 2**32 - 1), compact_at=st.sampled_from([200, 10**9]))
def test_power_cut_in_sync_mode_keeps_exactly_the_committed_state(
        steps: list[tuple[str, str, int | None, bool]], seed: int, compact_at: int) -> None:
    """Values None mean delete; the bool says whether a commit follows the step."""
    fs = SimFileSystem()

    async def scenario() -> None:
        state_mod.COMPACT_MIN_BYTES = compact_at
        try:
            store = FileStateStore.open(fs, DIR)
            model: Model = {}
            committed: Model = {}
            for ns, key, value, commit in steps:
                if value is None:
                    store.delete(ns, key)
                    model.pop((ns, key), None)
                else:
                    store.put(ns, key, value)
                    model[(ns, key)] = value
                if commit:
                    await store.commit()
                    committed = dict(model)
            fs.power_cut(random.Random(seed))
            reopened = FileStateStore.open(fs, DIR)
            assert contents(reopened) == committed
            await reopened.close()
        finally:
            state_mod.COMPACT_MIN_BYTES = 1024 * 1024

    asyncio.run(scenario())


@given(steps=STEPS, seed=st.integers(0, 2**32 - 1))
def test_power_cut_in_none_mode_lands_on_a_commit_boundary(
        steps: list[tuple[str, str, int | None, bool]], seed: int) -> None:
    """Unsynced commits may be lost, newest first, but never half of one."""
    fs = SimFileSystem()

    async def scenario() -> None:
        store = FileStateStore.open(fs, DIR, durability="none")
        model: Model = {}
        boundaries: list[Model] = [{}]
        for ns, key, value, commit in steps:
            if value is None:
                store.delete(ns, key)
                model.pop((ns, key), None)
            else:
                store.put(ns, key, value)
                model[(ns, key)] = value
            if commit:
                await store.commit()
                boundaries.append(dict(model))
        fs.power_cut(random.Random(seed))
        reopened = FileStateStore.open(fs, DIR)
        assert contents(reopened) in boundaries
        await reopened.close()

    asyncio.run(scenario())


async def test_power_cut_after_close_in_interval_mode_loses_nothing() -> None:
    fs = SimFileSystem()
    store = FileStateStore.open(fs, DIR, durability="interval", interval_s=60)
    for i in range(20):
        store.put("a", f"k{i}", i)
        await store.commit()
    await store.close()
    fs.power_cut(random.Random(1))
    reopened = FileStateStore.open(fs, DIR)
    assert len(list(reopened.items("a"))) == 20
    await reopened.close()


async def test_sim_failed_fsync_is_fatal() -> None:
    fs = SimFileSystem()
    store = FileStateStore.open(fs, DIR)
    store.put("a", "x", 1)
    await store.commit()
    fs.fail_fsync_next()
    store.put("a", "x", 2)
    with pytest.raises(FsyncFailed):
        await store.commit()
    with pytest.raises(FsyncFailed):
        await store.commit()
    await store.close()
    fs.power_cut()
    reopened = FileStateStore.open(fs, DIR)
    assert reopened.get("a", "x") == 1
    await reopened.close()


async def test_sim_full_disk_acks_still_commit_from_the_reserve() -> None:
    fs = SimFileSystem()
    store = FileStateStore.open(fs, DIR)
    assert fs.file_size(f"{DIR}/{RESERVE_NAME}") == RESERVE_BYTES
    fs.set_free_bytes(0)
    for i in range(1000):
        store.put("acks", "g1", {"floor": i})
        await store.commit()
    assert not fs.exists(f"{DIR}/{RESERVE_NAME}")
    assert fs.free_bytes is not None and 0 < fs.free_bytes < RESERVE_BYTES
    fs.power_cut()
    reopened = FileStateStore.open(fs, DIR)  # still full: runs without a reserve
    assert reopened.get("acks", "g1") == {"floor": 999}
    await reopened.close()


async def test_sim_full_disk_past_the_reserve_fails_commits_then_recovers() -> None:
    fs = SimFileSystem()
    reserve = 64 * 1024
    store = FileStateStore.open(fs, DIR, reserve_bytes=reserve)
    assert fs.file_size(f"{DIR}/{RESERVE_NAME}") == reserve
    fs.set_free_bytes(0)
    big = "v" * 1000
    failed = 0
    for i in range(reserve // 1000 + 100):
        store.put("acks", f"g{i}", big)
        try:
            await store.commit()
        except StorageFull:
            failed += 1
            break
    assert failed == 1
    fs.set_free_bytes(None)
    await store.commit()  # the pending changes went out with the next commit
    fs.power_cut()
    reopened = FileStateStore.open(fs, DIR)
    assert len(list(reopened.items("acks"))) == i + 1
    await reopened.close()
