"""The wire forms of broker values: message columns and admin snapshots round-trip."""

from __future__ import annotations

import msgpack
import pytest

from broker.api import (
    ClientInfo,
    Delivery,
    DeliveryBatch,
    GroupInfo,
    ReceiptResult,
    Snapshot,
    TopicConfig,
    TopicInfo,
)
from broker.protocol import OPS
from broker.protocol.codec import (
    batches_to_columns,
    batches_to_runs,
    columns_rows,
    deliveries_to_columns,
    receipt_failures_from_wire,
    receipt_results_from_wire,
    receipt_results_to_wire,
    runs_from_wire,
    snapshot_from_wire,
    to_wire,
)
from broker.protocol.frames import pack


def _delivery(offset: int, key: bytes | None = None, headers: dict[str, object] | None = None
              ) -> Delivery:
    return Delivery("t", 0, offset, b"v%d" % offset, key, headers, 1_700_000_000_000 + offset,
                    1, f"r{offset}", 1_700_000_030.5)


def test_columns_omit_absent_keys_and_headers() -> None:
    cols = deliveries_to_columns("t", [_delivery(0), _delivery(1)])
    assert cols["key"] is None and cols["headers"] is None
    assert cols["offset"] == [0, 1] and cols["value"] == [b"v0", b"v1"]
    rows = columns_rows(msgpack.unpackb(msgpack.packb(cols), raw=False))
    assert rows[1] == ("t", 0, 1, b"v1", None, None, 1_700_000_000_001, 1, "r1", 1_700_000_030.5)


def test_columns_keep_per_message_keys_and_headers() -> None:
    cols = deliveries_to_columns("t", [_delivery(0, b"k"), _delivery(1, None, {"a": 1})])
    rows = columns_rows(cols)
    assert [r[4] for r in rows] == [b"k", None]
    assert [r[5] for r in rows] == [None, {"a": 1}]


@pytest.mark.parametrize("bad", [
    {"topic": 1},
    {"topic": "t", "offset": [1]},
    {**deliveries_to_columns("t", [_delivery(0)]), "receipt": ["a", "b"]},
    {**deliveries_to_columns("t", [_delivery(0)]), "key": [b"k", b"k"]},
])
def test_inconsistent_columns_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        columns_rows(bad)


def test_receipt_results_round_trip() -> None:
    results = [ReceiptResult("a"), ReceiptResult("b", "stale_receipt", "expired")]
    wire = receipt_results_to_wire(results)
    assert receipt_failures_from_wire(["a", "b"], wire) == [results[1]]
    assert receipt_failures_from_wire(["a"], receipt_results_to_wire([results[0]])) == []
    ext = receipt_results_to_wire([ReceiptResult("a", deadline=5.0)], with_deadlines=True)
    assert receipt_results_from_wire(["a"], ext) == [ReceiptResult("a", None, None, 5.0)]


def test_snapshot_round_trips_through_msgpack() -> None:
    group = GroupInfo("t", "g", 1, 2, 0, 3, 1.5, {0: 7, 1: 9}, 1, 100.0)
    topic = TopicInfo("t", TopicConfig(partitions=2, backoff_s=(1.0, 2.0)), 2, [0, 0], [5, 6],
                      11, 3, 1000, 2, 0, 1_700_000_000_000, [group])
    client = ClientInfo("c", "native", "127.0.0.1", ("producer",), 1.0, 2.0, True, 5, 0, 0)
    snap = Snapshot(3.0, 3, 1, 2, 0, 1, 0, 0.5, 0.0, 0.0, 0.0, 1.5, [topic], [client])
    wire = msgpack.unpackb(msgpack.packb(to_wire(snap)), raw=False)
    assert wire["topics"][0]["groups"][0]["ack_floor"] == {"0": 7, "1": 9}
    assert snapshot_from_wire(wire) == snap


def test_every_op_has_a_right_and_a_retry_rule() -> None:
    assert OPS["send"].right == "produce" and not OPS["send"].idempotent
    assert OPS["stats"].idempotent and OPS["receive"].right == "consume"
    assert all(spec.right in ("", "produce", "consume", "admin") for spec in OPS.values())


def _batch(offset: int, n: int, lease: int = 7) -> DeliveryBatch:
    return DeliveryBatch("t", "g", 0, offset, [b"v%d" % i for i in range(n)], None, None,
                         1_700_000_000_000, 1, lease, 1_700_000_030.5, "inc")


def test_runs_round_trip_through_msgpack_without_receipts() -> None:
    wire = batches_to_runs("t", "g", "inc", [_batch(10, 3), _batch(13, 2, lease=8)])
    topic, group, inc, runs = runs_from_wire(msgpack.unpackb(msgpack.packb(wire), raw=False))
    assert (topic, group, inc) == ("t", "g", "inc")
    assert [(r[0], r[1], r[2], len(r[4]), r[7], r[8]) for r in runs] == [
        (0, 10, 7, 3, 1_700_000_000_000, 1), (0, 13, 8, 2, 1_700_000_000_000, 1)]
    assert "receipt" not in msgpack.packb(wire).decode("latin-1")


@pytest.mark.parametrize("bad", [
    None,
    {"topic": "t", "group": "g", "incarnation": "i"},
    {"topic": "t", "group": "g", "incarnation": "i", "runs": [[0, 1, 2]]},
    {"topic": "t", "group": "g", "incarnation": "i",
     "runs": [[0, 0, 1, 1.0, [b"a"], [b"k", b"k"], None, 1, 1]]},
    {"topic": "t", "group": "g", "incarnation": "i",
     "runs": [[0, 0, 1, 1.0, [b"a"], None, None, [1, 2], 1]]},
])
def test_malformed_runs_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        runs_from_wire(bad)


def test_batches_to_columns_matches_deliveries_to_columns() -> None:
    batch = _batch(5, 2)
    cols = batches_to_columns("t", [batch])
    assert cols["offset"] == [5, 6] and cols["receipt"] == ["inc:7:0:5:t:g", "inc:7:0:6:t:g"]
    assert cols["key"] is None and cols["timestamp_ms"] == [1_700_000_000_000] * 2
    assert [row[8] for row in columns_rows(cols)] == cols["receipt"]


def test_pack_writes_the_length_header_and_one_msgpack_map() -> None:
    obj = {"t": "req", "id": 1, "op": "send", "args": {"values": [b"x" * 1000] * 300}}
    frame = pack(obj)
    assert frame[:4] == (len(frame) - 4).to_bytes(4, "big")
    assert msgpack.unpackb(frame[4:], raw=False) == obj
    assert pack({"t": "close", "message": ""})[4:] == msgpack.packb({"t": "close",
                                                                     "message": ""})
