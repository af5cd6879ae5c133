"""RangeSet: a set of integer offsets kept as sorted, disjoint, half-open ranges.

Acks, leases and redeliveries are tracked as ranges so that settling a run of
1,000 offsets costs about as much as settling one. Every operation is a bisect
plus a slice assignment: O(log n) to find, O(k) to splice k touched ranges.
Owns no I/O and knows nothing of groups.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator


class RangeSet:
    """Offsets as `[lo, hi)` ranges; adjacent ranges are merged, so the form is canonical."""

    __slots__ = ("_count", "_ends", "_starts")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._count = 0
        for lo, hi in ranges:
            self.add(lo, hi)

    # -- queries
    def __len__(self) -> int:
        """The number of offsets in the set (not the number of ranges)."""
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self._starts, self._ends, strict=True)

    def __contains__(self, offset: object) -> bool:
        if not isinstance(offset, int):
            return False
        i = bisect_right(self._starts, offset) - 1
        return i >= 0 and offset < self._ends[i]

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, RangeSet) and self._starts == other._starts
                and self._ends == other._ends)

    __hash__ = None  # type: ignore[assignment]  # mutable: unhashable like set

    def __repr__(self) -> str:
        return f"RangeSet({list(self)!r})"

    @property
    def range_count(self) -> int:
        return len(self._starts)

    def contains_range(self, lo: int, hi: int) -> bool:
        """True when every offset of `[lo, hi)` is in the set (an empty range always is)."""
        if hi <= lo:
            return True
        i = bisect_right(self._starts, lo) - 1
        return i >= 0 and hi <= self._ends[i]

    def first(self) -> tuple[int, int] | None:
        """The lowest range, or None when empty."""
        return (self._starts[0], self._ends[0]) if self._starts else None

    def min(self) -> int | None:
        return self._starts[0] if self._starts else None

    def first_gap(self, start: int) -> int:
        """The lowest offset >= start that is NOT in the set."""
        i = bisect_right(self._starts, start) - 1
        if i >= 0 and start < self._ends[i]:
            return self._ends[i]
        return start

    def count_range(self, lo: int, hi: int) -> int:
        """How many offsets of `[lo, hi)` are in the set."""
        if hi <= lo:
            return 0
        i = bisect_right(self._ends, lo)
        j = bisect_left(self._starts, hi)
        total = 0
        for k in range(i, j):
            total += min(hi, self._ends[k]) - max(lo, self._starts[k])
        return total

    def runs_within(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The parts of the set inside `[lo, hi)`, as ranges."""
        if hi <= lo:
            return []
        i = bisect_right(self._ends, lo)
        j = bisect_left(self._starts, hi)
        return [(max(lo, self._starts[k]), min(hi, self._ends[k])) for k in range(i, j)]

    def offsets(self) -> Iterator[int]:
        for lo, hi in self:
            yield from range(lo, hi)

    # -- updates
    def add(self, lo: int, hi: int) -> int:
        """Add `[lo, hi)`; return how many offsets were not already present."""
        if hi <= lo:
            return 0
        starts, ends = self._starts, self._ends
        i = bisect_left(ends, lo)  # first range ending at or after lo (touching merges)
        j = bisect_right(starts, hi)  # ranges before j start at or before hi
        before = 0
        new_lo, new_hi = lo, hi
        if i < j:
            new_lo = min(lo, starts[i])
            new_hi = max(hi, ends[j - 1])
            for k in range(i, j):
                before += ends[k] - starts[k]
        starts[i:j] = [new_lo]
        ends[i:j] = [new_hi]
        added = (new_hi - new_lo) - before
        self._count += added
        return added

    def remove(self, lo: int, hi: int) -> int:
        """Remove `[lo, hi)`; return how many offsets were present and removed."""
        if hi <= lo:
            return 0
        starts, ends = self._starts, self._ends
        i = bisect_right(ends, lo)  # first range ending after lo
        j = bisect_left(starts, hi)  # ranges before j start before hi
        if i >= j:
            return 0
        new_starts: list[int] = []
        new_ends: list[int] = []
        removed = 0
        for k in range(i, j):
            s, e = starts[k], ends[k]
            removed += min(hi, e) - max(lo, s)
        if starts[i] < lo:
            new_starts.append(starts[i])
            new_ends.append(lo)
        if ends[j - 1] > hi:
            new_starts.append(hi)
            new_ends.append(ends[j - 1])
        starts[i:j] = new_starts
        ends[i:j] = new_ends
        self._count -= removed
        return removed

    def discard_below(self, offset: int) -> int:
        """Remove every offset below `offset`; return how many were removed."""
        if not self._starts or self._starts[0] >= offset:
            return 0
        return self.remove(self._starts[0], offset)

    def pop_first(self, limit: int) -> tuple[int, int] | None:
        """Remove and return the lowest run, at most `limit` offsets long; None when empty."""
        if not self._starts or limit <= 0:
            return None
        lo = self._starts[0]
        hi = min(self._ends[0], lo + limit)
        if hi == self._ends[0]:
            del self._starts[0]
            del self._ends[0]
        else:
            self._starts[0] = hi
        self._count -= hi - lo
        return lo, hi

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()
        self._count = 0

    def copy(self) -> RangeSet:
        out = RangeSet()
        out._starts = list(self._starts)
        out._ends = list(self._ends)
        out._count = self._count
        return out

    # -- persistence
    def to_flat(self) -> list[int]:
        """`[lo0, hi0, lo1, hi1, ...]`: compact and msgpack-able."""
        out: list[int] = []
        for lo, hi in self:
            out.append(lo)
            out.append(hi)
        return out

    @classmethod
    def from_flat(cls, flat: list[int]) -> RangeSet:
        out = cls()
        for k in range(0, len(flat) - 1, 2):
            out.add(int(flat[k]), int(flat[k + 1]))
        return out


def runs(offsets: Iterable[int]) -> list[tuple[int, int]]:
    """Collapse offsets (any order, duplicates allowed) into sorted maximal `[lo, hi)` runs."""
    out: list[tuple[int, int]] = []
    lo = hi = -1
    for off in sorted(set(offsets)):
        if off == hi:
            hi += 1
            continue
        if hi > lo:
            out.append((lo, hi))
        lo, hi = off, off + 1
    if hi > lo:
        out.append((lo, hi))
    return out
