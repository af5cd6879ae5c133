"""RangeSet against a plain set of ints: same membership, counts and gaps after any edits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker.core.ranges import RangeSet, runs

ops = st.lists(st.tuples(st.sampled_from(["add", "remove", "pop", "discard_below"]),
                         st.integers(0, 60), st.integers(0, 12)), max_size=40)


@given(ops)
def test_rangeset_matches_a_set_of_offsets(steps: list[tuple[str, int, int]]) -> None:
    rs = RangeSet()
    ref: set[int] = set()
    for op, lo, width in steps:
        hi = lo + width
        if op == "add":
            assert rs.add(lo, hi) == len(set(range(lo, hi)) - ref)
            ref |= set(range(lo, hi))
        elif op == "remove":
            assert rs.remove(lo, hi) == len(set(range(lo, hi)) & ref)
            ref -= set(range(lo, hi))
        elif op == "pop":
            got = rs.pop_first(width)
            if not ref or width == 0:
                assert got is None
            else:
                first = min(ref)
                run = range(first, first + width)
                taken = [o for o in run if o in ref]
                taken = taken[: next((i for i, o in enumerate(run) if o not in ref), len(run))]
                assert got == (first, first + len(taken))
                ref -= set(taken)
        else:
            assert rs.discard_below(lo) == len({o for o in ref if o < lo})
            ref = {o for o in ref if o >= lo}
        assert len(rs) == len(ref)
        assert list(rs.offsets()) == sorted(ref)
        assert list(rs) == runs(ref)  # canonical: adjacent ranges are merged
        for probe in range(0, 75, 7):
            assert (probe in rs) == (probe in ref)
            gap = probe
            while gap in ref:
                gap += 1
            assert rs.first_gap(probe) == gap
            assert rs.count_range(probe, probe + 9) == len(ref & set(range(probe, probe + 9)))
            assert rs.contains_range(probe, probe + 3) == (set(range(probe, probe + 3)) <= ref)
    assert RangeSet.from_flat(rs.to_flat()) == rs


def test_ack_of_a_thousand_offsets_is_one_range() -> None:
    rs = RangeSet()
    rs.add(0, 1000)
    rs.add(2000, 3000)
    rs.add(1000, 2000)
    assert rs.range_count == 1 and len(rs) == 3000
    rs.remove(10, 20)
    assert list(rs) == [(0, 10), (20, 3000)]
    assert rs.runs_within(5, 25) == [(5, 10), (20, 25)]


def test_runs_collapses_unsorted_offsets_with_duplicates() -> None:
    assert runs([5, 3, 4, 4, 9, 10, 1]) == [(1, 2), (3, 6), (9, 11)]
    assert runs([]) == []
