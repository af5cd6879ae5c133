"""Topic and group names per DESIGN.md: [A-Za-z0-9._-]{1,249}, not '.' or '..'."""

from __future__ import annotations

import pytest

from broker.clock import ManualClock
from broker.errors import BrokerError
from broker.names import check_group, check_topic, is_valid_name


@pytest.mark.parametrize("name", ["a", "orders", "A.b-c_9", "x" * 249, "...", ".hidden"])
def test_valid_names_pass(name: str) -> None:
    assert check_topic(name) == name
    assert check_group(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "x" * 250, "a/b", "a b", "ü", "a:b", "../x",
                                  None, 7])
def test_invalid_names_raise_with_their_code(name: object) -> None:
    assert not is_valid_name(name)
    with pytest.raises(BrokerError) as topic_err:
        check_topic(name)
    assert topic_err.value.code == "invalid_topic" and topic_err.value.status == 400
    with pytest.raises(BrokerError) as group_err:
        check_group(name)
    assert group_err.value.code == "invalid_group"


def test_manual_clock_moves_only_forward_when_told() -> None:
    clock = ManualClock(100.0)
    assert clock.now() == 100.0 and clock.monotonic() == 0.0
    clock.advance(2.5)
    assert clock.now() == 102.5 and clock.monotonic() == 2.5
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_receipts_round_trip_and_reject_garbage() -> None:
    from broker.core.receipts import Receipt, decode, encode

    r = Receipt("a1b2", 7, 3, 12345, "orders.v2", "billing-1")
    assert decode(encode(r)) == r
    for bad in ["", "a:b", "a1b2:x:3:4:t:g", "a1b2:1:3:4::g", None, "a:1:2:3:t:g:h"]:
        assert decode(bad) is None
