"""The data directory: one process owns it, its format version is checked, paths never escape it.

Layout::

    <root>/LOCK                         flock'ed by the owning process; holds its pid
    <root>/FORMAT                       the on-disk format version, written atomically
    <root>/topics/<topic>/<partition>/  one partition log per directory
    <root>/state/                       the state store

This module owns the lock, the version check and the path arithmetic. It must not
open logs or stores itself: the broker passes the paths it hands out to them.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re

from storage.errors import DataDirLocked, FormatMismatch, StorageError
from storage.fileio import OsFileSystem

FORMAT_VERSION = 1
LOCK_NAME = "LOCK"
FORMAT_NAME = "FORMAT"
TOPICS_DIR = "topics"
STATE_DIR = "state"

# Topic names as DESIGN.md defines them; checked again here so that a bug above
# can never turn a name into a path outside the data directory.
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def _check_topic(name: str) -> None:
    if not _TOPIC_NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(f"invalid topic name {name!r}: must match [A-Za-z0-9._-]{{1,249}}, "
                         "not '.' or '..'")


class DataDir:
    """An open, locked data directory. Use `DataDir.open(path)`; `close()` releases the lock."""

    def __init__(self, root: str, lock_fd: int) -> None:
        self.root = root
        self._lock_fd = lock_fd
        self.fs = OsFileSystem()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> DataDir:
        """Create the directory if needed, lock it and check its format version.

        Raises DataDirLocked when another process holds the lock (the message names
        the path and the holder's pid), FormatMismatch when FORMAT names another
        version, StorageError for other I/O failures.
        """
        root = os.path.abspath(os.fspath(path))
        fs = OsFileSystem()
        fs.makedirs(root)
        lock_path = os.path.join(root, LOCK_NAME)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(f"open {lock_path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DataDirLocked(
                    f"data directory {root} is in use by another process (pid {holder}); "
                    "stop it or choose another data directory") from None
            raise StorageError(f"lock {lock_path}: {exc.strerror or exc}") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            _check_format(fs, root)
            fs.makedirs(os.path.join(root, TOPICS_DIR))
            fs.makedirs(os.path.join(root, STATE_DIR))
        except OSError as exc:
            os.close(fd)
            raise StorageError(f"prepare {root}: {exc.strerror or exc}") from None
        except BaseException:
            os.close(fd)
            raise
        return cls(root, fd)

    @property
    def closed(self) -> bool:
        return self._lock_fd < 0

    def topics_path(self) -> str:
        return os.path.join(self.root, TOPICS_DIR)

    def topic_path(self, topic: str) -> str:
        """`<root>/topics/<topic>`; raises ValueError for a name that could escape."""
        _check_topic(topic)
        return self._inside(os.path.join(self.root, TOPICS_DIR, topic))

    def partition_path(self, topic: str, partition: int) -> str:
        """`<root>/topics/<topic>/<partition>/`; raises ValueError for bad names or numbers."""
        if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
            raise ValueError(f"invalid partition {partition!r}: must be a non-negative int")
        return self._inside(os.path.join(self.topic_path(topic), str(partition)))

    def state_path(self) -> str:
        return os.path.join(self.root, STATE_DIR)

    def list_topics(self) -> list[str]:
        """The topic directories present, in name order (invalid names are skipped)."""
        return [n for n in self.fs.listdir(self.topics_path())
                if _TOPIC_NAME.fullmatch(n) and n not in (".", "..")]

    def _inside(self, path: str) -> str:
        real = os.path.normpath(path)
        if os.path.commonpath([real, self.root]) != self.root or real == self.root:
            raise ValueError(f"path {path!r} escapes the data directory {self.root}")
        return real

    def close(self) -> None:
        """Release the lock. Idempotent."""
        if self._lock_fd >= 0:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = -1

    def __enter__(self) -> DataDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def _check_format(fs: OsFileSystem, root: str) -> None:
    path = os.path.join(root, FORMAT_NAME)
    if not fs.exists(path):
        fs.write_file_atomic(path, f"{FORMAT_VERSION}\n".encode())
        return
    text = fs.read_file(path).decode("ascii", "replace").strip()
    if text != str(FORMAT_VERSION):
        raise FormatMismatch(
            f"data directory {root} has format version {text!r}; this spoolmq reads "
            f"version {FORMAT_VERSION}")
