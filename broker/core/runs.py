"""Building the columns of one lease's delivery: a `DeliveryBatch` grows from log batches.

A first delivery of plain records adds a whole log batch's columns with list slices
and extends (no per-message Python work); redeliveries and records with headers add
one message at a time. Timestamps stay one int while every message shares one, and
delivery counts stay 1 until a redelivery joins the run. Pure and synchronous.
"""

from __future__ import annotations

from broker.api import DeliveryBatch, Headers


class RunBuilder:
    """The growing columns of one lease whose first offset is `first`."""

    __slots__ = ("counts", "first", "headers", "keys", "lease_id", "n", "owned", "times",
                 "values")

    def __init__(self, lease_id: int, first: int) -> None:
        self.lease_id = lease_id
        self.first = first
        self.n = 0
        self.values: list[bytes] = []
        self.owned = True  # False while `values` is a log batch's own list, not yet copied
        self.keys: list[bytes | None] | None = None
        self.headers: list[Headers | None] | None = None
        self.counts: list[int] | None = None
        self.times: list[list[int]] = []  # [count, timestamp_ms] segments, in order

    def _time(self, ts: int, k: int) -> None:
        times = self.times
        if times and times[-1][1] == ts:
            times[-1][0] += k
        else:
            times.append([k, ts])

    def add_plain(self, values: list[bytes], keys: list[bytes | None] | None, ts: int,
                  k: int) -> None:
        """Add the first k records of a log batch: first deliveries without headers."""
        part = values if k == len(values) else values[:k]
        if self.n == 0:
            self.values = part
            self.owned = part is not values
        else:
            if not self.owned:
                self.values = list(self.values)
                self.owned = True
            self.values.extend(part)
        if keys is not None:
            if self.keys is None:
                self.keys = [None] * self.n
            self.keys.extend(keys[:k])
        elif self.keys is not None:
            self.keys.extend([None] * k)
        if self.headers is not None:
            self.headers.extend([None] * k)
        if self.counts is not None:
            self.counts.extend([1] * k)
        self._time(ts, k)
        self.n += k

    def add_one(self, value: bytes, key: bytes | None, headers: Headers | None, ts: int,
                count: int) -> None:
        if not self.owned:
            self.values = list(self.values)
            self.owned = True
        self.values.append(value)
        if key is not None and self.keys is None:
            self.keys = [None] * self.n
        if self.keys is not None:
            self.keys.append(key)
        if headers is not None and self.headers is None:
            self.headers = [None] * self.n
        if self.headers is not None:
            self.headers.append(headers)
        if count != 1 and self.counts is None:
            self.counts = [1] * self.n
        if self.counts is not None:
            self.counts.append(count)
        self._time(ts, 1)
        self.n += 1

    def build(self, topic: str, group: str, partition: int, deadline: float,
              incarnation: str) -> DeliveryBatch:
        times = self.times
        timestamps: list[int] | int
        if len(times) == 1:
            timestamps = times[0][1]
        else:
            timestamps = []
            for k, ts in times:
                timestamps.extend([ts] * k)
        counts: list[int] | int = 1
        if self.counts is not None:
            counts = self.counts
            if counts.count(counts[0]) == len(counts):
                counts = counts[0]
        return DeliveryBatch(topic, group, partition, self.first, self.values, self.keys,
                             self.headers, timestamps, counts, self.lease_id, deadline,
                             incarnation)


def slice_batch(b: DeliveryBatch, start: int, stop: int) -> DeliveryBatch:
    """Messages [start, stop) of a delivered batch, still under its lease."""
    return DeliveryBatch(
        b.topic, b.group, b.partition, b.offset + start, b.values[start:stop],
        None if b.keys is None else b.keys[start:stop],
        None if b.headers is None else b.headers[start:stop],
        b.timestamps[start:stop] if isinstance(b.timestamps, list) else b.timestamps,
        b.delivery_counts[start:stop] if isinstance(b.delivery_counts, list)
        else b.delivery_counts,
        b.lease_id, b.deadline, b.incarnation)
