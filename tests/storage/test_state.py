"""The StateStore contract, run against every implementation (memory and file, each mode)."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage import state_file as state_mod
from storage.api import StateStore
from storage.errors import StorageError
from storage.fileio import OsFileSystem
from storage.state import FileStateStore, MemoryStateStore

Opener = Callable[[], StateStore]
SMALL_RESERVE = 64 * 1024  # the reserve is tested on its own; keep the rest fast
KINDS = ["memory", "file-sync", "file-interval", "file-none"]


def opener_for(kind: str, directory: str) -> Opener:
    if kind == "memory":
        mem = MemoryStateStore()
        return lambda: mem
    mode = kind.removeprefix("file-")
    return lambda: FileStateStore.open(OsFileSystem(), directory, durability=mode,
                                       interval_s=0.01 if mode == "interval" else 0.0,
                                       reserve_bytes=SMALL_RESERVE)


@pytest.fixture(params=KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    s = opener_for(request.param, str(tmp_path / "state"))()
    yield s
    await s.close()


async def test_put_get_delete_and_namespaces(store: StateStore) -> None:
    assert store.get("groups", "g1") is None
    store.put("groups", "g1", {"floor": 10, "acked": [[12, 14]]})
    store.put("topics", "g1", "other namespace")
    store.put("groups", "g2", 7)
    await store.commit()
    assert store.get("groups", "g1") == {"floor": 10, "acked": [[12, 14]]}
    assert store.get("topics", "g1") == "other namespace"
    assert sorted(store.items("groups")) == [("g1", {"floor": 10, "acked": [[12, 14]]}),
                                             ("g2", 7)]
    store.delete("groups", "g1")
    store.delete("groups", "missing")
    await store.commit()
    assert store.get("groups", "g1") is None
    assert list(store.items("groups")) == [("g2", 7)]
    assert list(store.items("nothing-here")) == []


async def test_values_read_back_as_msgpack_returns_them(store: StateStore) -> None:
    original = {"t": (1, 2), "b": b"\x00\xff", "n": None, "f": 1.5, "big": 2**63}
    store.put("ns", "k", original)
    original["t"] = (9, 9)  # the store kept its own copy
    assert store.get("ns", "k") == {"t": [1, 2], "b": b"\x00\xff", "n": None, "f": 1.5,
                                    "big": 2**63}


async def test_unencodable_values_and_keys_are_refused(store: StateStore) -> None:
    with pytest.raises(TypeError, match="not msgpack-able"):
        store.put("ns", "k", object())
    with pytest.raises(TypeError, match="must be str"):
        store.put("ns", 3, 1)  # type: ignore[arg-type]
    assert store.get("ns", "k") is None
    await store.commit()


async def test_oversized_values_are_refused(store: StateStore,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_mod, "MAX_OP_BYTES", 100)
    with pytest.raises(ValueError, match="limit is 100"):
        store.put("ns", "k", b"x" * 200)
    assert store.get("ns", "k") is None
    store.put("ns", "k", b"x" * 50)
    await store.commit()


async def test_items_is_a_snapshot_safe_to_mutate_under(store: StateStore) -> None:
    for i in range(5):
        store.put("ns", f"k{i}", i)
    for key, _ in store.items("ns"):
        store.delete("ns", key)
    assert list(store.items("ns")) == []
    await store.commit()


async def test_many_concurrent_commits_all_return(store: StateStore) -> None:
    async def one(i: int) -> None:
        store.put("acks", f"c{i}", i)
        await store.commit()
        assert store.get("acks", f"c{i}") == i

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(64))), 10)
    assert len(list(store.items("acks"))) == 64


async def test_commit_with_nothing_pending_returns(store: StateStore) -> None:
    await store.commit()
    await store.commit()


async def test_closed_store_refuses_writes(store: StateStore) -> None:
    await store.close()
    with pytest.raises(StorageError, match="closed"):
        store.put("ns", "k", 1)
    with pytest.raises(StorageError, match="closed"):
        await store.commit()
    await store.close()


INTS = st.integers(-(2**63), 2**64 - 1)  # msgpack's integer range
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(["a", "b"]), st.sampled_from(["x", "y", "z"]),
                  st.one_of(INTS, st.text(max_size=5), st.binary(max_size=5),
                            st.lists(INTS, max_size=3))),
        st.tuples(st.just("del"), st.sampled_from(["a", "b"]), st.sampled_from(["x", "y", "z"]),
                  st.none()),
        st.tuples(st.just("commit"), st.just(""), st.just(""), st.none()),
    ),
    max_size=40,
)


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        await coro_fn()
    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
@given(ops=OPS)
def test_matches_a_dict_model_and_survives_reopen(kind: str, ops: list[tuple[str, str, str, Any]]
                                                   ) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        open_store = opener_for(kind, tmp)

        async def scenario() -> None:
            model: dict[tuple[str, str], Any] = {}
            store = open_store()
            for op, ns, key, value in ops:
                if op == "put":
                    store.put(ns, key, value)
                    model[(ns, key)] = value
                elif op == "del":
                    store.delete(ns, key)
                    model.pop((ns, key), None)
                else:
                    await store.commit()
                for ns_ in ("a", "b"):
                    assert dict(store.items(ns_)) == {k: v for (n, k), v in model.items()
                                                      if n == ns_}
            await store.commit()
            await store.close()
            if kind != "memory":
                store = open_store()
                for ns_ in ("a", "b"):
                    assert dict(store.items(ns_)) == {k: v for (n, k), v in model.items()
                                                      if n == ns_}
                await store.close()

        run(scenario)
