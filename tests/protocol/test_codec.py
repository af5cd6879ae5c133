"""The wire forms of broker values: message columns and admin snapshots round-trip."""

from __future__ import annotations

import msgpack
import pytest

from broker.api import (
    ClientInfo,
    Delivery,
    GroupInfo,
    ReceiptResult,
    Snapshot,
    TopicConfig,
    TopicInfo,
)
from broker.protocol import OPS
from broker.protocol.codec import (
    columns_rows,
    deliveries_to_columns,
    receipt_failures_from_wire,
    receipt_results_from_wire,
    receipt_results_to_wire,
    snapshot_from_wire,
    to_wire,
)


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
