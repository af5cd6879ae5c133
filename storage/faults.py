"""SimFileSystem: an in-memory FileSystem that can lose power, fail fsync and run out of space.

It follows the storage.fileio.FileSystem protocol and models what a crash can take:

- file bytes are durable up to the point of the last fdatasync (`durable`); a power
  cut drops the rest, optionally keeping a random prefix of it (a torn tail);
- a directory entry (a created, renamed or unlinked name) is durable only after
  fsync_dir of its directory; a power cut restores each directory to its last
  fsynced listing. Directories themselves are always durable (makedirs fsyncs).

Shrinking a file with truncate is treated as durable at once (the log follows
each truncate with fdatasync anyway). Tests only: nothing here touches the disk.
"""

from __future__ import annotations

import posixpath
import random

from storage.errors import FsyncFailed, StorageError, StorageFull


class _Inode:
    __slots__ = ("data", "durable")

    def __init__(self, data: bytes = b"", durable: int = 0) -> None:
        self.data = bytearray(data)
        self.durable = durable


class SimFile:
    """An open file of a SimFileSystem. Stale after a power cut: every use then raises."""

    __slots__ = ("_epoch", "_fs", "_inode", "path")

    def __init__(self, fs: SimFileSystem, path: str, inode: _Inode) -> None:
        self._fs = fs
        self._inode = inode
        self._epoch = fs.epoch
        self.path = path

    def _live(self) -> _Inode:
        if self._epoch != self._fs.epoch:
            raise StorageError(f"{self.path}: file handle from before a power cut")
        return self._inode

    def append(self, data: bytes) -> int:
        inode = self._live()
        pos = len(inode.data)
        self._fs.reserve(len(data), self.path)
        self._fs.appends += 1
        inode.data += data
        return pos

    def pread(self, size: int, position: int) -> bytes:
        data = self._live().data
        self._fs.bytes_read += max(0, min(size, len(data) - position))
        return bytes(data[position:position + size])

    def size(self) -> int:
        return len(self._live().data)

    def truncate(self, size: int) -> None:
        inode = self._live()
        if size < len(inode.data):
            self._fs.release(len(inode.data) - size)
            del inode.data[size:]
        else:
            self._fs.reserve(size - len(inode.data), self.path)
            inode.data += bytes(size - len(inode.data))
        inode.durable = min(inode.durable, size)

    def fdatasync(self) -> None:
        inode = self._live()
        self._fs.fsync_gate(self.path)
        inode.durable = len(inode.data)

    def close(self) -> None:
        pass


class SimFileSystem:
    """In-memory FileSystem with fault injection; see the module docstring for the model."""

    def __init__(self) -> None:
        self._files: dict[str, _Inode] = {}
        self._durable_files: dict[str, _Inode] = {}
        self._dirs: set[str] = {"/"}
        self.epoch = 0
        self.free_bytes: int | None = None  # None: unlimited
        self._fsync_failures = 0
        self.bytes_read = 0
        self.fsyncs = 0
        self.appends = 0

    # ---- fault injection -----------------------------------------------------------------

    def power_cut(self, rng: random.Random | None = None) -> None:
        """Lose everything not durable. With rng, each file keeps a random prefix of its
        undurable tail (a torn write). Open handles go stale."""
        self._files = dict(self._durable_files)
        for inode in set(self._files.values()):
            keep = inode.durable
            if rng is not None and len(inode.data) > keep:
                keep = rng.randint(keep, len(inode.data))
            del inode.data[keep:]
            inode.durable = len(inode.data)
        self.epoch += 1

    def fail_fsync_next(self, n: int = 1) -> None:
        """The next n fsyncs (file or directory) fail with EIO."""
        self._fsync_failures = n

    def set_free_bytes(self, n: int | None) -> None:
        """Bytes that may still be written before ENOSPC; None for unlimited."""
        self.free_bytes = n

    def enospc_after(self, n: int) -> None:
        """Allow n more bytes to be written, then fail writes with ENOSPC."""
        self.set_free_bytes(n)

    def flip_byte(self, path: str, position: int) -> None:
        """Invert one byte in place (durable or not: it models media corruption)."""
        self._inode(path).data[position] ^= 0xFF

    def corrupt_tail(self, path: str, n: int) -> None:
        """Overwrite the last n bytes with garbage."""
        data = self._inode(path).data
        n = min(n, len(data))
        data[len(data) - n:] = bytes((0x5A + i) & 0xFF for i in range(n))

    def contents(self, path: str) -> bytes:
        return bytes(self._inode(path).data)

    # ---- bookkeeping used by SimFile -----------------------------------------------------

    def reserve(self, n: int, path: str) -> None:
        if self.free_bytes is not None:
            if n > self.free_bytes:
                raise StorageFull(f"write {path}: no space left on device")
            self.free_bytes -= n

    def release(self, n: int) -> None:
        if self.free_bytes is not None:
            self.free_bytes += n

    def fsync_gate(self, path: str) -> None:
        self.fsyncs += 1
        if self._fsync_failures:
            self._fsync_failures -= 1
            raise FsyncFailed(f"fsync {path}: Input/output error")

    def _inode(self, path: str) -> _Inode:
        inode = self._files.get(posixpath.normpath(path))
        if inode is None:
            raise StorageError(f"{path}: no such file")
        return inode

    # ---- FileSystem ----------------------------------------------------------------------

    def open(self, path: str, create: bool = True) -> SimFile:
        path = posixpath.normpath(path)
        inode = self._files.get(path)
        if inode is None:
            if not create or posixpath.dirname(path) not in self._dirs:
                raise StorageError(f"open {path}: no such file or directory")
            inode = self._files[path] = _Inode()
        return SimFile(self, path, inode)

    def read_file(self, path: str) -> bytes:
        data = self._inode(path).data
        self.bytes_read += len(data)
        return bytes(data)

    def write_file_atomic(self, path: str, data: bytes) -> None:
        path = posixpath.normpath(path)
        tmp = path + ".tmp"
        self.reserve(len(data), tmp)
        self._files[tmp] = _Inode(data)
        self.fsync_gate(tmp)
        self._files[tmp].durable = len(data)
        self.rename(tmp, path)
        self.fsync_dir(posixpath.dirname(path))

    def exists(self, path: str) -> bool:
        path = posixpath.normpath(path)
        return path in self._files or path in self._dirs

    def listdir(self, path: str) -> list[str]:
        path = posixpath.normpath(path)
        names = {posixpath.basename(p) for p in (*self._files, *self._dirs)
                 if p != path and posixpath.dirname(p) == path}
        return sorted(names)

    def makedirs(self, path: str) -> None:
        path = posixpath.normpath(path)
        while path not in self._dirs:
            self._dirs.add(path)
            path = posixpath.dirname(path)

    def rename(self, src: str, dst: str) -> None:
        src, dst = posixpath.normpath(src), posixpath.normpath(dst)
        inode = self._files.pop(src)
        old = self._files.get(dst)
        if old is not None and old is not inode:
            self.release(len(old.data))
        self._files[dst] = inode

    def unlink(self, path: str) -> None:
        inode = self._files.pop(posixpath.normpath(path), None)
        if inode is not None:
            self.release(len(inode.data))

    def rmtree(self, path: str) -> None:
        path = posixpath.normpath(path)
        for p in [p for p in self._files if p.startswith(path + "/")]:
            self.unlink(p)
        self._dirs = {d for d in self._dirs if d != path and not d.startswith(path + "/")}

    def fsync_dir(self, path: str) -> None:
        path = posixpath.normpath(path)
        self.fsync_gate(path)
        for p in [p for p in self._durable_files if posixpath.dirname(p) == path]:
            del self._durable_files[p]
        for p, inode in self._files.items():
            if posixpath.dirname(p) == path:
                self._durable_files[p] = inode

    def file_size(self, path: str) -> int:
        return len(self._inode(path).data)
