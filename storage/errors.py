"""Storage exceptions. Each carries a stable `code` that the broker's error table maps.

No raw OSError crosses out of `storage`: the seam translates it into one of these.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class; `code` is the stable name used in the broker's error table."""

    code = "storage_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StorageFull(StorageError):
    """A write hit ENOSPC: that append failed and was cut; the writer keeps serving."""

    code = "storage_full"


class FsyncFailed(StorageError):
    """fsync/fdatasync failed. Fatal: the kernel may have dropped dirty pages; never retried."""

    code = "fsync_failed"


class PartitionDamaged(StorageError):
    """A partition holds corrupt data in the middle of its log; reads of that range are refused."""

    code = "partition_damaged"


class DataDirLocked(StorageError):
    """Another process holds the data directory's lock."""

    code = "data_dir_locked"


class FormatMismatch(StorageError):
    """The data directory was written by an incompatible on-disk format version."""

    code = "format_mismatch"


class CorruptRecord(StorageError):
    """A checksum did not match; the record is never served."""

    code = "corrupt_record"


class OffsetOutOfRange(StorageError):
    """A read asked for an offset that is not (or no longer) in the log."""

    code = "offset_out_of_range"
