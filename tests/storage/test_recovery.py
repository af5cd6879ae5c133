"""The checkpoint record: round trip, and checkpoints written before max_timestamp existed."""

from __future__ import annotations

from zlib import crc32

import msgpack

from storage.api import Damage
from storage.recovery import _CKPT_HEAD, _CKPT_MAGIC, Checkpoint


def test_checkpoint_round_trips_with_its_max_timestamp() -> None:
    ckpt = Checkpoint(5, 0, 4096, 77, (Damage(1, 2, "x.log", 3, "why"),), 123)
    assert Checkpoint.decode(ckpt.encode()) == ckpt


def test_checkpoint_without_max_timestamp_still_decodes() -> None:
    body = msgpack.packb({"start": 0, "segment": 0, "position": 10, "offset": 2,
                          "damages": []})
    old = _CKPT_HEAD.pack(_CKPT_MAGIC, crc32(body)) + body
    assert Checkpoint.decode(old) == Checkpoint(0, 0, 10, 2, (), None)


def test_checkpoint_with_a_bad_crc_is_treated_as_missing() -> None:
    data = bytearray(Checkpoint(0, 0, 10, 2, ()).encode())
    data[-1] ^= 0xFF
    assert Checkpoint.decode(bytes(data)) is None
