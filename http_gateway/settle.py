"""Settling many receipts through range receipts, with exact per-receipt answers.

A consumer acks what one receive gave it: receipts of one lease with consecutive
offsets. `settle` hands the broker one range receipt per such run (see
`broker.core.receipts`) instead of one receipt per message, so the broker splits,
checks and answers a few receipts rather than a hundred. A range settles all of
its run or none of it: a refused range changed nothing, and its receipts are then
settled one by one to learn which of them failed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from itertools import pairwise

from broker.api import ReceiptResult
from broker.core.receipts import SEP, decode, encode, receipt_prefix, run_receipt

# Settles receipts (broker.ack / nack / extend bound to their other arguments).
SettleCall = Callable[[list[str]], Awaitable[list[ReceiptResult]]]


def _one_run(receipts: list[str]) -> str | None:
    """The range receipt of `receipts` when they are the offsets lo, lo+1, ... of one
    lease, in order (what one receive hands out); else None.

    Checked by comparing the receipts joined with newlines to the text they would
    make, rather than by decoding each receipt: with no newline in the shared head
    and tail, the two are equal only when every receipt is exactly its expected one.
    """
    first = decode(receipts[0])
    if first is None:
        return None
    inc, lease, part, lo, topic, group = first
    head = f"{inc}{SEP}{lease}{SEP}{part}{SEP}"
    tail = f"{SEP}{topic}{SEP}{group}"
    if "\n" in head or "\n" in tail:
        return None
    hi = lo + len(receipts)
    expected = head + (tail + "\n" + head).join(map(str, range(lo, hi))) + tail
    if "\n".join(receipts) != expected:
        return None
    return run_receipt(inc, lease, part, lo, hi - 1, topic, group)


def runs(receipts: list[str]) -> tuple[list[str], list[int]] | None:
    """The receipts to send the broker, runs of consecutive offsets of one lease joined
    into range receipts, and where each starts in `receipts` (the k-th stands for
    receipts[starts[k]:starts[k + 1]], the last one up to the end). None when no two
    receipts join: send `receipts` as they are.

    Joining changes which receipts the broker settles first (a refused range is
    settled again after the others), so it is done only when that cannot change an
    answer: every receipt is one `decode` accepts, spelt as the broker spells it, or
    is not a receipt at all (not six parts); and no offset is named twice.
    """
    if len(receipts) < 2:
        return None
    whole = _one_run(receipts)
    if whole is not None:
        return [whole], [0]
    wire: list[str] = []
    starts: list[int] = []
    spans: list[tuple[str, str, int, int]] = []  # (head, tail, first, last) of each run
    n = len(receipts)
    i = 0
    while i < n:
        text = receipts[i]
        r = decode(text)
        if r is None or text != encode(r):
            if text.count(SEP) == 5:  # a range receipt, or a spelling the broker may accept
                return None
            wire.append(text)
            starts.append(i)
            i += 1
            continue
        head = receipt_prefix(r.incarnation, r.lease_id, r.partition)
        tail = f"{SEP}{r.topic}{SEP}{r.group}"
        last = r.offset
        j = i + 1
        while j < n and receipts[j] == f"{head}{last + 1}{tail}":
            last += 1
            j += 1
        wire.append(text if j == i + 1 else
                    run_receipt(r.incarnation, r.lease_id, r.partition, r.offset, last,
                                r.topic, r.group))
        starts.append(i)
        spans.append((head, tail, r.offset, last))
        i = j
    if len(wire) == n:
        return None
    spans.sort()
    for (h0, t0, _, last0), (h1, t1, first1, _) in pairwise(spans):
        if h0 == h1 and t0 == t1 and first1 <= last0:
            return None  # an offset named twice: the broker orders those answers
    return wire, starts


async def settle(call: SettleCall, receipts: list[str]) -> list[ReceiptResult] | None:
    """Settle `receipts` through `call`: one result per receipt, in order; or None when
    every receipt was settled and no result carries a deadline (the answer can then be
    rendered from the receipts alone)."""
    plan = runs(receipts)
    if plan is None:
        return await call(receipts)
    wire, starts = plan
    got = await call(wire)
    if all(res.error is None and res.deadline is None for res in got):
        return None
    bounds = [*starts[1:], len(receipts)]
    out: list[ReceiptResult | None] = [None] * len(receipts)
    retry: list[int] = []  # indexes of the receipts of refused ranges
    for res, a, b in zip(got, starts, bounds, strict=True):
        if b - a == 1:
            out[a] = res  # the receipt as the client sent it
        elif res.error is None:
            for i in range(a, b):
                out[i] = ReceiptResult(receipts[i], None, None, res.deadline)
        else:
            retry.extend(range(a, b))
    if retry:
        again = await call([receipts[i] for i in retry])
        for i, res in zip(retry, again, strict=True):
            out[i] = res
    return [r for r in out if r is not None]
