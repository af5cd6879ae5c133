"""The one I/O seam: every byte `storage` reads or writes goes through a `FileSystem`.

`OsFileSystem` is the real disk. Tests substitute `storage.faults.SimFileSystem`,
which can cut power (losing every byte and directory entry not yet fsynced),
fail fsync with EIO and fail writes with ENOSPC. OSError never leaves this
module raw: ENOSPC becomes StorageFull, a failed fsync FsyncFailed, the rest
StorageError.
"""

from __future__ import annotations

import errno
import os
import shutil
from typing import Protocol

from storage.errors import FsyncFailed, StorageError, StorageFull


class File(Protocol):
    """An open file. Writes append at the end; reads are positional."""

    def append(self, data: bytes) -> int:
        """Append data at the end; return the position it was written at.

        On ENOSPC raises StorageFull after cutting any partial write (the file's
        size is what it was before the call).
        """
        ...

    def pread(self, size: int, position: int) -> bytes: ...

    def size(self) -> int: ...

    def truncate(self, size: int) -> None: ...

    def fdatasync(self) -> None:
        """Raises FsyncFailed: the caller must treat it as fatal and never retry."""
        ...

    def close(self) -> None: ...


class FileSystem(Protocol):
    def open(self, path: str, create: bool = True) -> File:
        """Open for reading and appending; create when missing if `create`."""
        ...

    def read_file(self, path: str) -> bytes: ...

    def write_file_atomic(self, path: str, data: bytes) -> None:
        """Write `path.tmp`, fsync it, rename over `path`, fsync the directory."""
        ...

    def exists(self, path: str) -> bool: ...

    def listdir(self, path: str) -> list[str]: ...

    def makedirs(self, path: str) -> None:
        """Create the directory (and parents) and fsync each parent that gained an entry."""
        ...

    def rename(self, src: str, dst: str) -> None: ...

    def unlink(self, path: str) -> None: ...

    def rmtree(self, path: str) -> None: ...

    def fsync_dir(self, path: str) -> None: ...

    def file_size(self, path: str) -> int: ...


def _translate(exc: OSError, what: str) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"{what}: no space left on device")
    return StorageError(f"{what}: {exc.strerror or exc}")


class OsFile:
    __slots__ = ("_end", "_fd", "path")

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._end = os.fstat(fd).st_size

    def append(self, data: bytes) -> int:
        pos = self._end
        try:
            written = os.pwrite(self._fd, data, pos)
            while written < len(data):  # short writes happen near a full disk
                written += os.pwrite(self._fd, memoryview(data)[written:], pos + written)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, pos)
            except OSError:
                pass
            raise _translate(exc, f"write {self.path}") from None
        self._end = pos + len(data)
        return pos

    def pread(self, size: int, position: int) -> bytes:
        try:
            return os.pread(self._fd, size, position)
        except OSError as exc:
            raise _translate(exc, f"read {self.path}") from None

    def size(self) -> int:
        return self._end

    def truncate(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
        except OSError as exc:
            raise _translate(exc, f"truncate {self.path}") from None
        self._end = size

    def fdatasync(self) -> None:
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            raise FsyncFailed(f"fdatasync {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class OsFileSystem:
    """The real disk."""

    def open(self, path: str, create: bool = True) -> OsFile:
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        try:
            return OsFile(path, os.open(path, flags, 0o644))
        except OSError as exc:
            raise _translate(exc, f"open {path}") from None

    def read_file(self, path: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise _translate(exc, f"read {path}") from None

    def write_file_atomic(self, path: str, data: bytes) -> None:
        tmp = path + ".tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                try:
                    os.fsync(fd)
                except OSError as exc:
                    raise FsyncFailed(f"fsync {tmp}: {exc.strerror or exc}") from None
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise _translate(exc, f"write {path}") from None
        self.fsync_dir(os.path.dirname(path) or ".")

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _translate(exc, f"list {path}") from None

    def makedirs(self, path: str) -> None:
        path = os.path.abspath(path)
        missing = []
        p = path
        while not os.path.isdir(p):
            missing.append(p)
            p = os.path.dirname(p)
        try:
            for d in reversed(missing):
                os.mkdir(d)
                self.fsync_dir(os.path.dirname(d))
        except FileExistsError:
            pass
        except OSError as exc:
            raise _translate(exc, f"mkdir {path}") from None

    def rename(self, src: str, dst: str) -> None:
        try:
            os.replace(src, dst)
        except OSError as exc:
            raise _translate(exc, f"rename {src}") from None

    def unlink(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _translate(exc, f"unlink {path}") from None

    def rmtree(self, path: str) -> None:
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _translate(exc, f"remove {path}") from None

    def fsync_dir(self, path: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise _translate(exc, f"open dir {path}") from None
        try:
            os.fsync(fd)
        except OSError as exc:
            raise FsyncFailed(f"fsync dir {path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)

    def file_size(self, path: str) -> int:
        try:
            return os.path.getsize(path)
        except OSError as exc:
            raise _translate(exc, f"stat {path}") from None
