"""SimFileSystem: what survives a power cut, and the injected failures."""

from __future__ import annotations

import random

import pytest

from storage.errors import FsyncFailed, StorageFull
from storage.faults import SimFileSystem


def test_power_cut_keeps_only_fsynced_bytes_and_entries() -> None:
    fs = SimFileSystem()
    fs.makedirs("/d")
    f = fs.open("/d/a")
    fs.fsync_dir("/d")
    f.append(b"durable")
    f.fdatasync()
    f.append(b"-lost")
    fs.open("/d/never-fsynced-entry").append(b"x")
    fs.power_cut()
    assert fs.listdir("/d") == ["a"]
    assert fs.contents("/d/a") == b"durable"


def test_power_cut_with_rng_keeps_a_prefix_of_the_tail() -> None:
    fs = SimFileSystem()
    fs.makedirs("/d")
    f = fs.open("/d/a")
    fs.fsync_dir("/d")
    f.append(b"ok")
    f.fdatasync()
    f.append(b"0123456789")
    fs.power_cut(random.Random(3))
    data = fs.contents("/d/a")
    assert data.startswith(b"ok") and b"ok0123456789".startswith(data)


def test_write_file_atomic_survives_a_power_cut_and_rename_needs_fsync_dir() -> None:
    fs = SimFileSystem()
    fs.makedirs("/d")
    fs.write_file_atomic("/d/ckpt", b"v1")
    fs.rename("/d/ckpt", "/d/moved")
    fs.power_cut()
    assert fs.listdir("/d") == ["ckpt"]
    assert fs.read_file("/d/ckpt") == b"v1"


def test_stale_handles_refuse_use_after_a_power_cut() -> None:
    fs = SimFileSystem()
    fs.makedirs("/d")
    f = fs.open("/d/a")
    fs.power_cut()
    with pytest.raises(Exception, match="before a power cut"):
        f.append(b"x")


def test_fail_fsync_next_raises_fsync_failed() -> None:
    fs = SimFileSystem()
    fs.makedirs("/d")
    f = fs.open("/d/a")
    fs.fail_fsync_next(2)
    with pytest.raises(FsyncFailed):
        f.fdatasync()
    with pytest.raises(FsyncFailed):
        fs.fsync_dir("/d")
    f.fdatasync()


def test_enospc_cuts_the_write_and_space_can_return() -> None:
    fs = SimFileSystem()
    fs.makedirs("/d")
    f = fs.open("/d/a")
    fs.enospc_after(5)
    f.append(b"1234")
    with pytest.raises(StorageFull):
        f.append(b"56")
    assert f.size() == 4
    f.truncate(2)
    f.append(b"ab")
    fs.set_free_bytes(None)
    f.append(b"z" * 100)
    assert f.size() == 104


def test_flip_byte_and_corrupt_tail() -> None:
    fs = SimFileSystem()
    fs.makedirs("/d")
    fs.open("/d/a").append(b"\x00\x00\x00\x00")
    fs.flip_byte("/d/a", 1)
    assert fs.contents("/d/a") == b"\x00\xff\x00\x00"
    fs.corrupt_tail("/d/a", 2)
    assert fs.contents("/d/a")[:2] == b"\x00\xff" and fs.contents("/d/a")[2:] != b"\x00\x00"
