"""Settling receipts: ack, nack and extend, grouped by lease and collapsed into runs.

A receipt is honoured only when it names the current incarnation and its offset is
still pending in the lease it names; otherwise its result is "stale_receipt" and
nothing changes, so an ack after expiry never lands on another consumer's lease.
Pure and synchronous.
"""

from __future__ import annotations

from collections.abc import Sequence

from broker.api import ReceiptResult
from broker.core.group import GroupState
from broker.core.partition import Lease
from broker.core.topic import TopicState
from broker.core.values import receipt_ok


def _stale(receipt: str, why: str) -> ReceiptResult:
    return ReceiptResult(receipt, "stale_receipt", why)


def settle(incarnation: str, topics: dict[str, TopicState], receipts: Sequence[str], op: str,
           now: float, delay_s: float = 0.0, visibility_s: float = 0.0
           ) -> tuple[list[ReceiptResult], int, set[GroupState]]:
    """Ack ("ack"), nack ("nack") or extend ("extend") each receipt. A receipt that is
    malformed, from another incarnation, or whose offset is no longer leased under its
    lease id gets error "stale_receipt" and changes nothing.

    Receipts are grouped by lease and their offsets collapsed into runs, so settling
    a whole receive costs one RangeSet splice plus one result per receipt.

    A range receipt names a run of one lease with "first-last" (inclusive) in place of
    the offset — `inc:lease:partition:100-199:topic:group` — and settles all of it or,
    when any offset of the run is no longer leased under it, none of it (one result)."""
    expired: set[GroupState] = set()
    run = _one_run(receipts)
    if run is not None:  # the usual call: every receipt of one receive, in order
        (inc, lease_s, part_s, tname, gname), lo = run
        hi = lo + len(receipts)
        g, lease = _resolve(incarnation, topics, inc, lease_s, part_s, tname, gname, now,
                            expired)
        if g is not None and lease is not None and lease.pending.contains_range(lo, hi):
            _apply(g, lease, lo, hi, op, now, delay_s, visibility_s)
            deadline = now + visibility_s if op == "extend" else None
            return [receipt_ok(r, deadline) for r in receipts], hi - lo, expired
    results: list[ReceiptResult | None] = [None] * len(receipts)
    settled_ranges = 0
    by_lease: dict[tuple[str, str, str, str, str], list[tuple[str, int]]] = {}
    for i, text in enumerate(receipts):
        try:
            inc, lease_s, part_s, off_s, tname, gname = text.split(":")
        except (ValueError, AttributeError):
            results[i] = _stale(str(text), "not a receipt")
            continue
        if "-" in off_s:
            first, _, last = off_s.partition("-")
            if not (first.isdigit() and last.isdigit()) or int(last) < int(first):
                results[i] = _stale(text, "not a receipt")
                continue
            g, lease = _resolve(incarnation, topics, inc, lease_s, part_s, tname, gname, now,
                                expired)
            lo, hi = int(first), int(last) + 1
            if g is None or lease is None or not lease.pending.contains_range(lo, hi):
                results[i] = _stale(text, "the run is not wholly leased under this receipt "
                                    "(expired, settled, redelivered or another incarnation)")
                continue
            _apply(g, lease, lo, hi, op, now, delay_s, visibility_s)
            settled_ranges += hi - lo
            results[i] = receipt_ok(text, now + visibility_s if op == "extend" else None)
            continue
        key = (inc, lease_s, part_s, tname, gname)
        raw = by_lease.get(key)
        if raw is None:
            raw = by_lease[key] = []
        raw.append((off_s, i))
    settled = settled_ranges
    for (inc, lease_s, part_s, tname, gname), raw in by_lease.items():
        if inc != incarnation:
            for _, i in raw:
                results[i] = _stale(receipts[i], "the receipt is from an earlier broker "
                                    "incarnation")
            continue
        g, lease = _resolve(incarnation, topics, inc, lease_s, part_s, tname, gname, now,
                            expired)
        if g is None or lease is None:
            why = ("the lease expired or was settled" if g is not None
                   else f"no group {gname!r} on topic {tname!r}")
            for _, i in raw:
                results[i] = _stale(receipts[i], why)
            continue
        items: list[tuple[int, int]] = []
        for off_s, i in raw:
            if off_s.isdigit():
                items.append((int(off_s), i))
            else:
                results[i] = _stale(receipts[i], "not a receipt")
        items.sort()
        settled += _settle_lease(g, lease, items, receipts, results, op, now, delay_s,
                                 visibility_s)
    return ([r if r is not None else _stale(receipts[i], "unknown receipt")
             for i, r in enumerate(results)], settled, expired)


def _apply(g: GroupState, lease: Lease, lo: int, hi: int, op: str, now: float,
           delay_s: float, visibility_s: float) -> None:
    """Settle [lo, hi), all pending in `lease`."""
    if op == "ack":
        g.ack_run(lease, lo, hi, now)
    elif op == "nack":
        g.nack_run(lease, lo, hi, now, delay_s)
    else:
        g.extend_offsets(lease, list(range(lo, hi)), now + visibility_s)


def _one_run(receipts: Sequence[str]) -> tuple[tuple[str, str, str, str, str], int] | None:
    """When every receipt names one lease and the offsets are lo, lo+1, ... in order,
    return (the lease's name parts, lo); else None. Checked with whole-list string
    operations, so it costs far less per receipt than splitting each one."""
    if not receipts or not isinstance(receipts[0], str):
        return None
    parts = receipts[0].split(":")
    if len(parts) != 6 or not parts[3].isdigit():
        return None
    inc, lease_s, part_s, off_s, tname, gname = parts
    prefix = f"{inc}:{lease_s}:{part_s}:"
    suffix = f":{tname}:{gname}"
    lp, ls = len(prefix), -len(suffix)
    try:
        mids = [r[lp:ls] for r in receipts if r.startswith(prefix) and r.endswith(suffix)]
    except (AttributeError, TypeError):
        return None
    lo = int(off_s)
    if len(mids) != len(receipts) or mids != list(map(str, range(lo, lo + len(mids)))):
        return None
    return (inc, lease_s, part_s, tname, gname), lo


def _resolve(incarnation: str, topics: dict[str, TopicState], inc: str, lease_s: str,
             part_s: str, tname: str, gname: str, now: float, expired: set[GroupState]
             ) -> tuple[GroupState | None, Lease | None]:
    """The group and the live lease a receipt names (expiring the group's due leases
    first, once per call), or None for either."""
    if inc != incarnation:
        return None, None
    t = topics.get(tname)
    g = None if t is None else t.groups.get(gname)
    if g is None or not (lease_s.isdigit() and part_s.isdigit()):
        return g, None
    if g not in expired:
        g.expire(now)
        g.last_active = now
        expired.add(g)
    lease = g.leases.get(int(lease_s))
    if lease is not None and lease.partition != int(part_s):
        lease = None
    return g, lease


def _settle_lease(g: GroupState, lease: Lease, items: list[tuple[int, int]],
                  receipts: Sequence[str], results: list[ReceiptResult | None], op: str,
                  now: float, delay_s: float, visibility_s: float) -> int:
    """Apply op to the sorted (offset, index) items of one lease. Returns how many."""
    chunks: list[tuple[int, int, int, int]] = []  # (lo, hi, first item, end item)
    n = len(items)
    if n and items[-1][0] - items[0][0] == n - 1 and lease.pending.contains_range(
            items[0][0], items[-1][0] + 1):
        chunks.append((items[0][0], items[-1][0] + 1, 0, n))  # one run: the usual case
    else:
        k = 0
        while k < n:
            j = k + 1
            while j < n and items[j][0] == items[j - 1][0] + 1:
                j += 1
            lo, hi = items[k][0], items[j - 1][0] + 1
            # sorted items: a repeated offset can only overlap the previous chunk
            if lease.pending.contains_range(lo, hi) and (not chunks or chunks[-1][1] <= lo):
                chunks.append((lo, hi, k, j))
            else:
                for m in range(k, j):
                    off, i = items[m]
                    if off in lease.pending and (not chunks or chunks[-1][1] <= off):
                        chunks.append((off, off + 1, m, m + 1))
                    else:
                        results[i] = _stale(receipts[i], "the offset is not leased under "
                                            "this receipt (expired, settled or redelivered)")
            k = j
    deadline = now + visibility_s if op == "extend" else None
    ext: list[int] = []
    total = 0
    for lo, hi, a, b in chunks:
        if op == "ack":
            g.ack_run(lease, lo, hi, now)
        elif op == "nack":
            g.nack_run(lease, lo, hi, now, delay_s)
        else:
            ext.extend(range(lo, hi))
        total += hi - lo
        for m in range(a, b):
            i = items[m][1]
            results[i] = receipt_ok(receipts[i], deadline)
    if ext:
        g.extend_offsets(lease, ext, now + visibility_s)
    return total
