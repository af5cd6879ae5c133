"""DataDir: the lock, the format check and path containment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage.datadir import FORMAT_VERSION, DataDir
from storage.errors import DataDirLocked, FormatMismatch


def test_open_creates_layout_and_format(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with DataDir.open(root) as dd:
        assert (root / "LOCK").read_text().strip() == str(os.getpid())
        assert (root / "FORMAT").read_text().strip() == str(FORMAT_VERSION)
        assert os.path.isdir(dd.state_path())
        assert os.path.isdir(dd.topics_path())
        assert dd.partition_path("orders", 3) == str(root / "topics" / "orders" / "3")
        assert dd.state_path() == str(root / "state")


def test_second_opener_is_refused_with_path_and_pid(tmp_path: Path) -> None:
    dd = DataDir.open(tmp_path)
    with pytest.raises(DataDirLocked) as info:
        DataDir.open(tmp_path)
    assert str(tmp_path) in info.value.message
    assert f"pid {os.getpid()}" in info.value.message
    dd.close()
    DataDir.open(tmp_path).close()


def test_lock_held_by_other_process(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from storage.datadir import DataDir\n"
        "from storage.errors import DataDirLocked\n"
        "try:\n"
        f"    DataDir.open({str(tmp_path)!r})\n"
        "except DataDirLocked as e:\n"
        "    print(e.message); sys.exit(3)\n"
    )
    with DataDir.open(tmp_path):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, cwd=Path(__file__).resolve().parents[2])
        assert proc.returncode == 3, proc.stderr
        assert f"pid {os.getpid()}" in proc.stdout
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_format_mismatch(tmp_path: Path) -> None:
    DataDir.open(tmp_path).close()
    (tmp_path / "FORMAT").write_text("999\n")
    with pytest.raises(FormatMismatch, match="999"):
        DataDir.open(tmp_path)
    # The failed open released the lock.
    (tmp_path / "FORMAT").write_text(f"{FORMAT_VERSION}\n")
    DataDir.open(tmp_path).close()


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../x", "", "x" * 250, "a\x00", "/etc"])
def test_bad_topic_names_never_become_paths(tmp_path: Path, name: str) -> None:
    with DataDir.open(tmp_path) as dd, pytest.raises(ValueError):
        dd.partition_path(name, 0)


@pytest.mark.parametrize("partition", [-1, True, "1"])
def test_bad_partition_numbers(tmp_path: Path, partition: object) -> None:
    with DataDir.open(tmp_path) as dd, pytest.raises(ValueError):
        dd.partition_path("t", partition)  # type: ignore[arg-type]


def test_close_is_idempotent_and_lists_topics(tmp_path: Path) -> None:
    dd = DataDir.open(tmp_path)
    os.makedirs(dd.partition_path("b", 0))
    os.makedirs(dd.partition_path("a.x", 0))
    assert dd.list_topics() == ["a.x", "b"]
    dd.close()
    dd.close()
    assert dd.closed
