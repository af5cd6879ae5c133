"""State stores: the StateStore contract of storage.api, in memory and on disk.

`MemoryStateStore` lives here; `FileStateStore` and its on-disk format live in
storage.state_file and are re-exported, as are the small atomic JSON helpers the
broker keeps its metadata with. This module must not know what the keys mean.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from storage.errors import CorruptRecord, StorageError
from storage.fileio import FileSystem
from storage.state_file import (
    DURABILITY_MODES,
    HEADER_BYTES,
    MAX_FRAME_BYTES,
    MAX_OP_BYTES,
    MAX_SNAPSHOT_BYTES,
    RESERVE_BYTES,
    RESERVE_NAME,
    SNAPSHOT_NAME,
    FileStateStore,
    frame,
    normalise,
    pack_op,
)

__all__ = [
    "DURABILITY_MODES", "HEADER_BYTES", "MAX_FRAME_BYTES", "MAX_OP_BYTES",
    "MAX_SNAPSHOT_BYTES", "RESERVE_BYTES", "RESERVE_NAME", "SNAPSHOT_NAME",
    "FileStateStore", "MemoryStateStore", "frame", "read_json", "write_json_atomic",
]


class MemoryStateStore:
    """The StateStore contract with nothing on disk: commit() only checks the store is open.

    Values are copied through msgpack at put, exactly as FileStateStore does, so both
    read back the same values (tuples as lists) and raise the same TypeError.
    """

    def __init__(self) -> None:
        self._data: dict[str, dict[str, Any]] = {}
        self._closed = False

    def get(self, ns: str, key: str) -> Any | None:
        return self._data.get(ns, {}).get(key)

    def items(self, ns: str) -> Iterable[tuple[str, Any]]:
        return list(self._data.get(ns, {}).items())

    def put(self, ns: str, key: str, value: Any) -> None:
        self._check_open()
        self._data.setdefault(ns, {})[key] = normalise(pack_op(ns, key, value))

    def delete(self, ns: str, key: str) -> None:
        self._check_open()
        pack_op(ns, key, None)
        space = self._data.get(ns)
        if space is not None:
            space.pop(key, None)
            if not space:
                del self._data[ns]

    async def commit(self) -> None:
        self._check_open()

    async def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("state store is closed")


def write_json_atomic(fs: FileSystem, path: str, obj: Any) -> None:
    """Replace `path` with obj as JSON: tmp, fsync, rename, fsync dir. Raises StorageError."""
    data = json.dumps(obj, sort_keys=True, indent=1).encode() + b"\n"
    fs.write_file_atomic(path, data)


def read_json(fs: FileSystem, path: str) -> Any | None:
    """The JSON value at path, or None when the file does not exist.

    Raises CorruptRecord when the file is not valid JSON, StorageError for I/O.
    """
    if not fs.exists(path):
        return None
    data = fs.read_file(path)
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptRecord(f"{path}: not valid JSON ({exc})") from None
