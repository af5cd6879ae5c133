"""Rates over a sliding window of whole seconds: messages in, out, acks, redeliveries.

A meter keeps one counter per second for the last `window_s` seconds (bounded:
a ring of that many buckets), so reading a rate never walks events.
"""

from __future__ import annotations

RATE_WINDOW_S = 5  # long enough to smooth bursts, short enough to feel live on the dashboard


class RateMeter:
    __slots__ = ("_counts", "_secs", "window")

    def __init__(self, window_s: int = RATE_WINDOW_S) -> None:
        self.window = window_s
        self._secs = [-1] * window_s
        self._counts = [0] * window_s

    def add(self, n: int, now: float) -> None:
        sec = int(now)
        i = sec % self.window
        if self._secs[i] != sec:
            self._secs[i] = sec
            self._counts[i] = 0
        self._counts[i] += n

    def rate(self, now: float) -> float:
        """Events per second over the last window (the current second included)."""
        sec = int(now)
        total = 0
        for s, c in zip(self._secs, self._counts, strict=True):
            if sec - self.window < s <= sec:
                total += c
        return total / self.window
