"""Leases, acks, nacks, extends, redelivery and stale receipts in the core (manual clock)."""

from __future__ import annotations

from broker.api import TopicConfig
from broker.core.receipts import range_receipt
from tests.broker.brokerharness import CoreHarness, offsets


def test_first_deliveries_follow_offset_order_and_acks_advance_the_floor() -> None:
    h = CoreHarness()
    h.send(*[f"m{i}" for i in range(10)])
    first = h.recv(4)
    assert offsets(first) == [0, 1, 2, 3]
    assert all(d.delivery_count == 1 for d in first)
    assert offsets(h.recv(100)) == [4, 5, 6, 7, 8, 9]
    assert all(r.error is None for r in h.ack(*first[1:]))
    assert h.group().parts[0].floor == 0  # offset 0 still out
    h.ack(first[0])
    assert h.group().parts[0].floor == 4
    assert h.group().in_flight == 6


def test_a_receive_is_one_lease_per_contiguous_run() -> None:
    h = CoreHarness()
    h.send(*["x"] * 1000)
    got = h.recv(1000)
    assert len(h.group().leases) == 1
    assert len({d.receipt for d in got}) == 1000
    results = h.ack(*got)
    assert all(r.error is None for r in results)
    assert h.group().parts[0].floor == 1000 and not h.group().leases


def test_expired_lease_is_redelivered_with_a_higher_count() -> None:
    h = CoreHarness()
    h.send("a", "b")
    got = h.recv(2, visibility_s=10)
    h.clock.advance(9.9)
    assert h.recv(2, consumer="c2") == []
    h.clock.advance(0.2)
    again = h.recv(2, consumer="c2")
    assert offsets(again) == [0, 1]
    assert [d.delivery_count for d in again] == [2, 2]
    late = h.ack(*got)
    assert [r.error for r in late] == ["stale_receipt", "stale_receipt"]
    assert h.group().in_flight == 2  # the late ack did not land on c2's lease
    assert all(r.error is None for r in h.ack(*again, consumer="c2"))


def test_double_ack_is_stale_the_second_time() -> None:
    h = CoreHarness()
    h.send("a")
    (d,) = h.recv()
    assert h.ack(d)[0].error is None
    second = h.ack(d)[0]
    assert second.error == "stale_receipt" and second.message


def test_duplicate_receipt_in_one_ack_call_settles_once() -> None:
    h = CoreHarness()
    h.send("a", "b")
    a, b = h.recv(2)
    results = h.ack(a, b, a)
    assert [r.error for r in results] == [None, None, "stale_receipt"]


def test_receipt_of_an_earlier_incarnation_or_garbage_is_stale() -> None:
    h = CoreHarness()
    h.send("a")
    (d,) = h.recv()
    forged = "other" + d.receipt[d.receipt.index(":"):]
    results = h.ack(forged, "nonsense", "1:2:3:4:t:g:extra")
    assert [r.error for r in results] == ["stale_receipt"] * 3
    assert "incarnation" in (results[0].message or "")
    assert h.group().in_flight == 1


def test_nack_gives_back_at_once_or_after_a_delay() -> None:
    h = CoreHarness()
    h.send("a", "b")
    a, b = h.recv(2)
    h.nack(a)
    h.nack(b, delay_s=5)
    assert offsets(h.recv(5)) == [0]
    h.clock.advance(5)
    redelivered = h.recv(5)
    assert offsets(redelivered) == [1] and redelivered[0].delivery_count == 2


def test_backoff_schedule_delays_redelivery_by_count() -> None:
    h = CoreHarness(topic_config=TopicConfig(backoff_s=(1.0, 4.0)))
    h.send("a")
    h.recv(visibility_s=1)
    h.clock.advance(1)
    assert h.recv() == []  # first failure: back off 1 s
    h.clock.advance(1)
    second = h.recv(visibility_s=1)
    assert second[0].delivery_count == 2
    h.clock.advance(1 + 3.9)
    assert h.recv() == []  # second failure: back off 4 s
    h.clock.advance(0.1)
    assert h.recv()[0].delivery_count == 3


def test_extend_keeps_the_lease_and_reports_the_deadline() -> None:
    h = CoreHarness()
    h.send("a", "b")
    a, b = h.recv(2, visibility_s=10)
    h.clock.advance(8)
    res = h.extend(a, visibility_s=30)
    assert res[0].error is None and res[0].deadline == h.clock.now() + 30
    h.clock.advance(5)  # b's original deadline passed, a's did not
    again = h.recv(5, consumer="c2")
    assert offsets(again) == [1]
    assert h.ack(b)[0].error == "stale_receipt"
    assert h.ack(a)[0].error is None


def test_extend_of_every_receipt_moves_the_whole_lease() -> None:
    h = CoreHarness()
    h.send("a", "b")
    got = h.recv(2, visibility_s=10)
    h.extend(*got, visibility_s=100)
    h.clock.advance(50)
    assert h.recv(5, consumer="c2") == []
    assert all(r.error is None for r in h.ack(*got))


def test_extend_to_zero_releases_at_once() -> None:
    h = CoreHarness()
    h.send("a")
    (a,) = h.recv()
    h.extend(a, visibility_s=0)
    assert offsets(h.recv(consumer="c2")) == [0]


def test_in_flight_cap_limits_a_receive_to_what_fits() -> None:
    h = CoreHarness(max_inflight_per_group=5)
    h.send(*["x"] * 20)
    assert len(h.recv(3)) == 3
    assert len(h.recv(10)) == 2
    assert h.recv(10) == []
    assert len(h.recv(10, group="other")) == 5  # the cap is per group
    first = h.group().leases
    lease = next(iter(first.values()))
    assert lease.pending
    h.ack(*[f"inc1:{lease.id}:0:{o}:t:g" for o in lease.pending.offsets()])
    assert len(h.recv(10)) == 3


def test_auto_ack_leaves_nothing_in_flight() -> None:
    h = CoreHarness()
    h.send("a", "b")
    got = h.recv(5, auto_ack=True)
    assert offsets(got) == [0, 1]
    assert h.group().in_flight == 0 and h.group().parts[0].floor == 2


def test_fan_out_across_groups_and_competition_within_one() -> None:
    h = CoreHarness()
    h.send(*[f"m{i}" for i in range(6)])
    c1 = h.recv(3, consumer="c1")
    c2 = h.recv(3, consumer="c2")
    assert set(offsets(c1)).isdisjoint(offsets(c2))
    assert sorted(offsets(c1) + offsets(c2)) == list(range(6))
    other = h.recv(10, group="audit")
    assert offsets(other) == list(range(6))  # every group sees every message


def test_keys_pick_a_stable_partition_and_keyless_sends_rotate() -> None:
    h = CoreHarness(partitions=4)
    ps = {o.partition for _ in range(5) for o in h.send("v", key=b"user-7")}
    assert len(ps) == 1
    rotating = {h.send("v")[0].partition for _ in range(8)}
    assert rotating == {0, 1, 2, 3}
    got = h.recv(100)
    assert len(got) == 13
    for p in range(4):
        mine = [d.offset for d in got if d.partition == p]
        assert mine == sorted(mine)


def test_core_state_is_bounded_by_leases_not_by_backlog() -> None:
    h = CoreHarness()
    for _ in range(20):
        h.send(*["x"] * 1000)
    got = h.recv(10)
    h.ack(*got[2:7])
    g = h.group()
    ps = g.parts[0]
    assert len(g.leases) == 1 and g.in_flight == 5 and ps.floor == 0
    assert list(ps.acked) == [(2, 7)]
    assert ps.acked.range_count == 1 and not ps.ready and not ps.counts and not g.history
    assert ps.cursor == 10  # the other 19,990 messages stay in the log only


def test_a_range_receipt_settles_a_whole_run_or_nothing() -> None:
    h = CoreHarness()
    h.send(*["x"] * 10)
    got = h.recv(10)
    head, _, tail = got[0].receipt.partition(":0:0:")  # inc:lease + partition 0, offset 0
    run = range_receipt(got[2].receipt, 5)
    assert run == f"{head}:0:2-5:{tail}"
    (res,) = h.ack(run)
    assert res.error is None and res.receipt == run
    assert list(h.group().parts[0].acked) == [(2, 6)] and h.group().in_flight == 6
    again = h.ack(run, got[3], f"{head}:0:6-12:{tail}", f"{head}:0:9-7:{tail}")
    assert [r.error for r in again] == ["stale_receipt"] * 4  # settled, beyond the lease, bad
    assert h.group().in_flight == 6
    (nacked,) = h.nack(f"{head}:0:6-9:{tail}")
    assert nacked.error is None
    assert [d.offset for d in h.recv(10, consumer="c2")] == [6, 7, 8, 9]
