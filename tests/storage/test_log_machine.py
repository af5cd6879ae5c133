"""A hypothesis state machine drives FileLog on SimFileSystem against a plain list model.

Rules append, read, sync, roll (tiny segments), reopen, cut power, tear the unsynced
tail and flip bytes. After every step the whole log must read back exactly as the
model says. A flipped byte may be detected (damage or a corrupt read) or cut as a
torn tail, but wrong data is never served.
"""

from __future__ import annotations

import random

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from storage.api import AppendEntry
from storage.errors import CorruptRecord, PartitionDamaged
from storage.faults import SimFileSystem
from storage.log import FileLog
from tests.storage.logharness import ManualClock

D = "/data/p"
values_st = st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=6)


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fresh()

    def fresh(self) -> None:
        self.fs = SimFileSystem()
        self.clock = ManualClock()
        self.log = self.open()
        self.model: list[bytes] = []  # value of offset i at index i
        self.start = 0
        self.synced = 0  # offsets below this are durable

    def open(self) -> FileLog:
        return FileLog.open(self.fs, D, segment_bytes=400, index_interval_bytes=64,
                            clock_ms=self.clock, checkpoint_interval_bytes=300)

    @rule(batches=st.lists(values_st, min_size=1, max_size=4))
    def append(self, batches: list[list[bytes]]) -> None:
        bases = self.log.append_many([AppendEntry(v) for v in batches])
        expected = []
        for v in batches:
            expected.append(len(self.model))
            self.model += v
        assert bases == expected
        self.clock.now_ms += 1

    @rule()
    def sync(self) -> None:
        self.log.sync()
        self.synced = len(self.model)

    @rule(data=st.data())
    def read_somewhere(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.start, len(self.model)))
        max_records = data.draw(st.none() | st.integers(1, 10))
        batches = self.log.read(offset, max_bytes=data.draw(st.integers(1, 500)),
                                max_records=max_records)
        got = [v for b in batches for v in b.values]
        if offset < len(self.model):
            assert batches and batches[0].base_offset == offset
        assert got == self.model[offset:offset + len(got)]
        if max_records is not None:
            assert len(got) <= max_records

    @rule()
    def reopen(self) -> None:
        self.log.close()
        self.log = self.open()
        self.synced = len(self.model)

    @rule(seed=st.integers(0, 2**16))
    def power_cut(self, seed: int) -> None:
        self.fs.power_cut(random.Random(seed))
        self.log = self.open()
        end = self.log.end_offset
        assert self.synced <= end <= len(self.model)
        del self.model[end:]
        self.synced = end

    @precondition(lambda self: self.log._asize > self.log._synced)
    @rule(n=st.integers(1, 200))
    def tear_unsynced_tail(self, n: int) -> None:
        unsynced = self.log._asize - self.log._synced
        self.fs.corrupt_tail(self.log._active.path + ".log", min(n, unsynced))
        self.log = self.open()  # the process died mid-write; the disk kept its bytes
        end = self.log.end_offset
        assert self.log.damage is None
        assert self.synced <= end <= len(self.model)
        del self.model[end:]
        self.synced = end

    @precondition(lambda self: len(self.model) > self.start)
    @rule(data=st.data())
    def truncate_before(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.start, len(self.model)))
        self.log.truncate_before(offset)
        if offset > self.start:  # a truncation that moves start syncs first
            self.start = offset
            self.synced = len(self.model)

    @rule(data=st.data(), crash=st.booleans())
    def flip_byte_then_start_over(self, data: st.DataObject, crash: bool) -> None:
        names = [n for n in self.fs.listdir(D) if n.endswith(".log")]
        name = data.draw(st.sampled_from(names))
        size = self.fs.file_size(f"{D}/{name}")
        if size:
            self.fs.flip_byte(f"{D}/{name}", data.draw(st.integers(0, size - 1)))
        if not crash:
            self.log.close()
        log = self.open()
        assert log.start_offset == self.start
        assert log.end_offset <= len(self.model)
        offset = self.start
        while offset < log.end_offset:
            try:
                batches = log.read(offset, max_records=1)
            except (CorruptRecord, PartitionDamaged):
                offset += 1
                continue
            assert batches[0].values[0] == self.model[offset], "wrong data served"
            offset += 1
        self.fresh()

    @invariant()
    def reads_match_the_model(self) -> None:
        assert (self.log.start_offset, self.log.end_offset) == (self.start, len(self.model))
        got: list[bytes] = []
        offset = self.start
        while offset < len(self.model):
            batches = self.log.read(offset, max_bytes=300)
            got += [v for b in batches for v in b.values]
            offset = batches[-1].next_offset
        assert got == self.model[self.start:]


TestLogMachine = LogMachine.TestCase
