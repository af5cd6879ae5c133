"""Admin routes: topics, groups, leases, seek/replay, browse, dead letters and redrive."""

from __future__ import annotations

import time
from typing import Any

from tests.gateway.conftest import Live

POLL_DEADLINE_S = 10.0


async def _dead_letter_one(live: Live, topic: str, group: str) -> dict[str, Any]:
    """Receive without acking until the message is dead-lettered (max_deliveries=2)."""
    deadline = time.monotonic() + POLL_DEADLINE_S
    while time.monotonic() < deadline:
        await live.json("GET", f"/receive/{topic}?group={group}&visibility=0.1&wait=0.3")
        dead = await live.json("GET", f"/topics/{topic}/groups/{group}/dead-letters")
        if dead["dead_letters"]:
            return dict(dead["dead_letters"][0])
    raise AssertionError("the message was not dead-lettered in time")


async def test_topic_lifecycle(live: Live) -> None:
    created = await live.json("POST", "/topics", status=201,
                              json={"name": "orders", "config": {"partitions": 2,
                                                                  "max_deliveries": 3}})
    assert created["name"] == "orders"
    assert created["partitions"] == 2
    assert created["config"]["max_deliveries"] == 3
    doc = await live.json("POST", "/topics", status=409, json={"name": "orders"})
    assert doc["error"]["code"] == "topic_exists"
    names = [t["name"] for t in (await live.json("GET", "/topics"))["topics"]]
    assert "orders" in names
    await live.json("POST", "/send/orders", json={"messages": ["a", "b", "c"]})
    assert (await live.json("GET", "/topics/orders"))["messages"] == 3
    purged = await live.json("POST", "/topics/orders/purge")
    assert purged["messages_in_queue"] == 0
    assert await live.json("DELETE", "/topics/orders") == {"deleted": "orders"}
    doc = await live.json("GET", "/topics/orders", status=404)
    assert doc["error"]["code"] == "topic_not_found"


async def test_create_topic_refuses_unknown_settings(live: Live) -> None:
    doc = await live.json("POST", "/topics", status=400, json={"name": "t", "config": {"x": 1}})
    assert doc["error"]["code"] == "bad_request"
    doc = await live.json("POST", "/topics", status=400,
                          json={"name": "t", "config": {"partitions": 100000}})
    assert doc["error"]["code"] == "invalid_argument"


async def test_groups_show_lag_leases_and_seek_replays(live: Live) -> None:
    await live.json("POST", "/send/g", json={"messages": ["m0", "m1", "m2"]})
    [msg] = (await live.json("GET", "/receive/g?group=w&visibility=60"))["messages"]
    group = await live.json("GET", "/topics/g/groups/w")
    assert (group["lag"], group["in_flight"], group["ready"]) == (3, 1, 2)
    assert group["oldest_unacked_age_s"] is None or group["oldest_unacked_age_s"] >= 0
    leases = (await live.json("GET", "/topics/g/groups/w/leases"))["leases"]
    assert [(x["offset"], x["delivery_count"]) for x in leases] == [(msg["offset"], 1)]
    assert [g["name"] for g in (await live.json("GET", "/groups?topic=g"))["groups"]] == ["w"]
    assert [g["name"] for g in (await live.json("GET", "/topics/g/groups"))["groups"]] == ["w"]

    rest = (await live.json("GET", "/receive/g?group=w&max=10&auto_ack=true"))["messages"]
    await live.json("POST", "/ack", data={"receipt": msg["receipt"]})
    assert [m["message"] for m in rest] == ["m1", "m2"]
    assert (await live.json("GET", "/topics/g/groups/w"))["lag"] == 0
    await live.json("POST", "/topics/g/groups/w/seek", json={"offset": 1})
    replay = (await live.json("GET", "/receive/g?group=w&max=10&auto_ack=true"))["messages"]
    assert [m["message"] for m in replay] == ["m1", "m2"]

    assert await live.json("DELETE", "/topics/g/groups/w") == {"deleted": "w"}
    doc = await live.json("GET", "/topics/g/groups/w", status=404)
    assert doc["error"]["code"] == "group_not_found"


async def test_browse_pages_without_consuming(live: Live) -> None:
    await live.json("POST", "/send/b", json={"messages": [
        {"message": f"note {i}", "key": "even" if i % 2 == 0 else "odd"} for i in range(5)]})
    page = await live.json("GET", "/topics/b/messages?limit=2")
    assert [m["offset"] for m in page["messages"]] == [0, 1]
    nxt = page["next_offset"]
    page2 = await live.json("GET", f"/topics/b/messages?offset={nxt}&limit=10")
    assert [m["message"] for m in page2["messages"]] == ["note 2", "note 3", "note 4"]
    odd = await live.json("GET", "/topics/b/messages?key=odd")
    assert [m["offset"] for m in odd["messages"]] == [1, 3]
    text = await live.json("GET", "/topics/b/messages?text=note%204")
    assert [m["offset"] for m in text["messages"]] == [4]
    # Nothing was consumed: a new group still gets everything.
    got = await live.json("GET", "/receive/b?group=fresh&max=10")
    assert len(got["messages"]) == 5


async def test_max_deliveries_dead_letters_for_that_group_and_redrive_returns_it(
        live: Live) -> None:
    await live.json("POST", "/topics", status=201,
                    json={"name": "dl", "config": {"max_deliveries": 2}})
    await live.json("POST", "/send/dl", json={"message": "poison"})
    dead = await _dead_letter_one(live, "dl", "flaky")
    assert dead["group"] == "flaky"
    assert dead["delivery_count"] == 2
    assert dead["message"] == "poison"
    assert dead["reason"]
    assert dead["history"]
    # The other group still has it, and never sees the dead letter of "flaky".
    other = await live.json("GET", "/receive/dl?group=steady&auto_ack=true")
    assert [m["message"] for m in other["messages"]] == ["poison"]
    assert (await live.json("GET", "/topics/dl/groups/flaky"))["dead_lettered"] == 1

    assert await live.json("POST", "/topics/dl/groups/flaky/redrive",
                           json={"ids": [dead["id"]]}) == {"redriven": 1}
    back = await live.json("GET", "/receive/dl?group=flaky&wait=2")
    assert [m["message"] for m in back["messages"]] == ["poison"]
    assert (await live.json("GET", "/receive/dl?group=steady"))["messages"] == []
    assert (await live.json("GET", "/topics/dl/groups/flaky/dead-letters"))["dead_letters"] == []


async def test_redrive_all_and_by_reason(live: Live) -> None:
    await live.json("POST", "/topics", status=201,
                    json={"name": "dl2", "config": {"max_deliveries": 1}})
    await live.json("POST", "/send/dl2", json={"message": "p"})
    dead = await _dead_letter_one(live, "dl2", "g")
    miss = await live.json("POST", "/topics/dl2/groups/g/redrive",
                           json={"reason_contains": "no such reason"})
    assert miss == {"redriven": 0}
    hit = await live.json("POST", "/topics/dl2/groups/g/redrive",
                          json={"reason_contains": dead["reason"][:5]})
    assert hit == {"redriven": 1}
    await _dead_letter_one(live, "dl2", "g")
    assert await live.json("POST", "/topics/dl2/groups/g/redrive") == {"redriven": 1}
