"""The dashboard in a real browser against a real broker, gateway and dashboard site.

Every wait is bounded (Playwright's `expect` retries until its timeout); nothing sleeps.
Each test also asserts (in the `page` fixture) that no page logged a console error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.dashboard.conftest import ARTIFACTS, DESKTOP, PHONE, ConsoleWatch
from tests.dashboard.harness import Stack

pytestmark = pytest.mark.timeout(180)

# The gateway streams a snapshot every second; a few of them cover any change.
LIVE_TIMEOUT_MS = 8000
SCHEMES: tuple[Literal["light", "dark"], ...] = ("light", "dark")
README_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "img" / "overview.png"
# The README's screenshot is refreshed on request only, so test runs leave the tree clean.
UPDATE_README_IMAGE = "SPOOLMQ_UPDATE_README_IMAGE"


async def call(http: aiohttp.ClientSession, method: str, url: str, status: int = 200,
               **kw: Any) -> Any:
    async with http.request(method, url, **kw) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == status, (resp.status, body)
        return body


async def send(http: aiohttp.ClientSession, stack: Stack, topic: str, count: int,
               producer: str = "producer-1") -> None:
    for i in range(count):
        await call(http, "POST", f"{stack.api}/send/{topic}", json={"message": f"message {i}"},
                   headers={"X-Client-Id": producer})


async def receive(http: aiohttp.ClientSession, stack: Stack, topic: str, consumer: str,
                  **query: str) -> list[dict[str, Any]]:
    body = await call(http, "GET", f"{stack.api}/receive/{topic}", params=query,
                      headers={"X-Client-Id": consumer})
    messages: list[dict[str, Any]] = body["messages"]
    return messages


def stat(page: Page, testid: str) -> Any:
    return expect(page.get_by_test_id(testid))


async def test_overview_follows_sends_receives_and_acks(stack: Stack, page: Page,
                                                        http: aiohttp.ClientSession) -> None:
    await page.goto(stack.url)
    await send(http, stack, "default", 7)
    await stat(page, "messages-in-queue").to_have_text("7", timeout=LIVE_TIMEOUT_MS)
    await stat(page, "active-producers").to_have_text("1", timeout=LIVE_TIMEOUT_MS)
    await stat(page, "active-consumers").to_have_text("0")

    leased = await receive(http, stack, "default", "worker-1")
    assert len(leased) == 1
    await stat(page, "active-consumers").to_have_text("1", timeout=LIVE_TIMEOUT_MS)
    await stat(page, "messages-in-queue").to_have_text("7")

    await call(http, "POST", f"{stack.api}/ack", data={"receipt": leased[0]["receipt"]},
               headers={"X-Client-Id": "worker-1"})
    await stat(page, "messages-in-queue").to_have_text("6", timeout=LIVE_TIMEOUT_MS)
    await stat(page, "dead-lettered").to_have_text("0")
    await expect(page.get_by_test_id("live-indicator")).to_have_text("Live")


async def test_topic_page_browses_without_consuming_and_sends(
        stack: Stack, page: Page, http: aiohttp.ClientSession) -> None:
    await send(http, stack, "orders", 7)
    await page.goto(stack.url)
    # Keyboard only: the nav is made of real links.
    topics_link = page.get_by_role("link", name="Topics", exact=True)
    await topics_link.focus()
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{stack.url}/topics")
    await page.get_by_role("link", name="orders").first.click()
    await expect(page.get_by_role("heading", name="orders", level=1)).to_be_visible()
    await expect(page.get_by_test_id("topic-depth")).to_have_text("7", timeout=LIVE_TIMEOUT_MS)

    browser = page.get_by_test_id("message-browser")
    await browser.get_by_test_id("browse-submit").click()
    await expect(browser.get_by_test_id("browsed-message")).to_have_count(7)
    await browser.get_by_label("From offset").fill("5")
    await browser.get_by_test_id("browse-submit").click()
    await expect(browser.get_by_test_id("browsed-message")).to_have_count(2)
    await browser.get_by_label("From offset").fill("")
    await browser.get_by_label("Text contains").fill("message 3")
    await browser.get_by_test_id("browse-submit").click()
    await expect(browser.get_by_test_id("browsed-message")).to_have_count(1)
    row = browser.get_by_test_id("browsed-message").first
    await row.get_by_role("button").click()
    await expect(browser.locator("pre")).to_have_text("message 3")
    # Peeking consumed nothing.
    await expect(page.get_by_test_id("topic-depth")).to_have_text("7")

    form = page.get_by_test_id("send-form")
    await form.get_by_test_id("send-message").fill("sent from the dashboard")
    await form.get_by_test_id("send-submit").click()
    await expect(form.get_by_test_id("send-result")).to_contain_text("offset 7")
    await expect(page.get_by_test_id("topic-depth")).to_have_text("8", timeout=LIVE_TIMEOUT_MS)


async def test_dead_letter_is_shown_and_redriven(stack: Stack, page: Page,
                                                 http: aiohttp.ClientSession) -> None:
    await call(http, "POST", f"{stack.api}/topics", status=201, json={
        "name": "jobs", "config": {"max_deliveries": 1, "visibility_timeout_s": 1}})
    await send(http, stack, "jobs", 1)
    await page.goto(stack.url)
    leased = await receive(http, stack, "jobs", "flaky-worker")
    assert len(leased) == 1
    # Never acked: the lease expires after 1 s and the only delivery allowed is spent.
    await stat(page, "dead-lettered").to_have_text("1", timeout=LIVE_TIMEOUT_MS)

    await page.get_by_role("link", name="Dead letters").first.click()
    rows = page.get_by_test_id("dead-letter-row")
    await expect(rows).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    await rows.first.get_by_role("button").first.click()
    await expect(page.get_by_text("Delivery history")).to_be_visible()
    await expect(page.locator(".history li").first).to_contain_text("flaky-worker")

    await rows.first.get_by_test_id("redrive-one").click()
    await expect(page.get_by_test_id("redrive-result")).to_contain_text("1 message handed back")
    await expect(rows).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    await page.get_by_role("link", name="Overview", exact=True).click()
    await stat(page, "dead-lettered").to_have_text("0", timeout=LIVE_TIMEOUT_MS)
    again = await receive(http, stack, "jobs", "steady-worker")
    assert [m["message"] for m in again] == ["message 0"]


async def test_server_restart_is_announced_and_recovered(
        stack: Stack, page: Page, console: ConsoleWatch, http: aiohttp.ClientSession) -> None:
    await send(http, stack, "default", 7)
    await page.goto(stack.url)
    await stat(page, "messages-in-queue").to_have_text("7", timeout=LIVE_TIMEOUT_MS)
    banner = page.get_by_test_id("connection-status")
    await expect(banner).to_be_hidden()

    console.server_down = True
    await stack.stop_server()
    await expect(banner).to_contain_text("Server unreachable", timeout=LIVE_TIMEOUT_MS)
    await expect(page.get_by_test_id("live-indicator")).to_have_text("Offline")

    await stack.start_server()
    await expect(banner).to_be_hidden(timeout=LIVE_TIMEOUT_MS)
    console.server_down = False
    await expect(page.get_by_test_id("live-indicator")).to_have_text("Live")
    await stat(page, "messages-in-queue").to_have_text("7", timeout=LIVE_TIMEOUT_MS)
    await send(http, stack, "default", 1)
    await stat(page, "messages-in-queue").to_have_text("8", timeout=LIVE_TIMEOUT_MS)


async def _populate(http: aiohttp.ClientSession, stack: Stack) -> None:
    """Enough traffic for every page to have something to show."""
    await call(http, "POST", f"{stack.api}/topics", status=201, json={
        "name": "payments", "config": {"max_deliveries": 1, "visibility_timeout_s": 1}})
    await send(http, stack, "orders", 12, producer="checkout-service")
    await send(http, stack, "emails", 5, producer="notifier")
    await send(http, stack, "payments", 2, producer="checkout-service")
    for m in await receive(http, stack, "orders", "fulfilment-1", max="4"):
        await call(http, "POST", f"{stack.api}/ack", data={"receipt": m["receipt"]})
    await receive(http, stack, "orders", "fulfilment-2", max="3", visibility="600")
    await receive(http, stack, "orders", "fulfilment-3", max="1", visibility="8")
    await receive(http, stack, "emails", "mailer", group="mailers", max="2", visibility="300")
    await receive(http, stack, "payments", "ledger", max="2")


async def _traffic(http: aiohttp.ClientSession, stack: Stack) -> None:
    """Steady sends, receives and acks, so the charts have something to draw."""
    while True:
        await send(http, stack, "orders", 3, producer="checkout-service")
        for m in await receive(http, stack, "orders", "fulfilment-1", max="2"):
            await call(http, "POST", f"{stack.api}/ack", data={"receipt": m["receipt"]})
        await asyncio.sleep(0.25)  # pacing the traffic, not waiting for anything


async def _navigate(page: Page, path: str) -> None:
    """Client-side navigation (as a click on a link does): the page keeps its chart history."""
    await page.evaluate(
        "path => { history.pushState({}, '', path); dispatchEvent(new PopStateEvent('popstate')) }",
        path)


async def _shoot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def test_every_page_renders_in_light_and_dark_and_on_a_phone(
        stack: Stack, page: Page, http: aiohttp.ClientSession) -> None:
    await _populate(http, stack)
    await page.goto(stack.url)
    await stat(page, "dead-lettered").to_have_text("2", timeout=LIVE_TIMEOUT_MS)
    traffic = asyncio.create_task(_traffic(http, stack))
    try:
        await _shoot_every_page(stack, page)
    finally:
        traffic.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await traffic


async def _shoot_every_page(stack: Stack, page: Page) -> None:
    pages = [
        ("topics", "/topics", page.get_by_test_id("topic-orders")),
        ("topic", "/topics/orders", page.get_by_test_id("message-browser")),
        ("groups", "/groups", page.get_by_test_id("group-row").first),
        ("group", "/groups/orders/default", page.get_by_test_id("lease-row").first),
        ("clients", "/clients", page.get_by_test_id("client-row").first),
        ("dead-letters", "/dead-letters", page.get_by_test_id("dead-letter-row").first),
        ("overview", "/", page.get_by_test_id("messages-in-queue")),
    ]
    inbound = page.get_by_test_id("chart-throughput").locator(".legend li").first
    for scheme in SCHEMES:
        await page.emulate_media(color_scheme=scheme)
        for name, path, ready in pages:
            await _navigate(page, path)
            await expect(ready).to_be_visible(timeout=LIVE_TIMEOUT_MS)
            if name == "topic":
                await page.get_by_test_id("browse-submit").click()
                await expect(page.get_by_test_id("browsed-message").first).to_be_visible()
            if name == "dead-letters":
                await ready.get_by_role("button").first.click()
                await expect(page.get_by_text("Delivery history")).to_be_visible()
            if name == "overview":
                await expect(inbound).not_to_have_text(re.compile(r"In\s*0/s$"),
                                                       timeout=LIVE_TIMEOUT_MS)
            shot = await _shoot(page, f"{name}-1280-{scheme}")
            if name == "overview" and scheme == "light" and os.environ.get(UPDATE_README_IMAGE):
                README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(shot, README_IMAGE)

    await page.set_viewport_size(PHONE)
    for scheme in SCHEMES:
        await page.emulate_media(color_scheme=scheme)
        await expect(page.get_by_test_id("messages-in-queue")).to_be_visible()
        await _shoot(page, f"overview-390-{scheme}")
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the overview scrolls sideways by {overflow}px at 390 px"
    await page.set_viewport_size(DESKTOP)


async def test_theme_toggle_overrides_the_system_preference(stack: Stack, page: Page) -> None:
    await page.emulate_media(color_scheme="light")
    await page.goto(stack.url)
    toggle = page.get_by_test_id("theme-toggle")
    background = "getComputedStyle(document.body).backgroundColor"
    light = await page.evaluate(background)
    await toggle.click()  # system -> light
    await expect(page.locator("html")).to_have_attribute("data-theme", "light")
    await toggle.click()  # light -> dark
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert await page.evaluate(background) != light
    await page.reload()  # the choice is remembered
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await toggle.click()  # dark -> system
    assert await page.locator("html").get_attribute("data-theme") is None
    assert await page.evaluate(background) == light
