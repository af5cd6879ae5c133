"""Fixtures for the dashboard's browser tests: the running stack, Chromium, console watch.

Chromium is Debian's (`/usr/bin/chromium`, installed by `make install`), launched
headless with a fresh profile in the test's tmp_path; nothing is ever downloaded.
A missing browser or a missing build fails the test with the command that fixes it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    ViewportSize,
    async_playwright,
)

from tests.dashboard.harness import DIST_DIR, Stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
# What Chromium logs for requests that fail while the server is down on purpose.
NETWORK_ERROR = re.compile(r"Failed to load resource|net::ERR_|EventSource|502|503|504")


@dataclass
class ConsoleWatch:
    """Console errors and uncaught exceptions of the pages, kept for a final assertion.

    While `server_down` is set, network errors are expected and not kept.
    """

    errors: list[str] = field(default_factory=list)
    server_down: bool = False

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if self.server_down and NETWORK_ERROR.search(message.text):
            return
        self.errors.append(f"console: {message.text} ({message.location.get('url', '')})")

    def on_page_error(self, error: Any) -> None:
        self.errors.append(f"uncaught: {error}")

    def watch(self, page: Page) -> None:
        page.on("console", self.on_console)
        page.on("pageerror", self.on_page_error)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    if not (DIST_DIR / "index.html").is_file():
        pytest.fail(f"the dashboard is not built ({DIST_DIR} has no index.html): run "
                    "`make install` (or `cd dashboard && npm ci && npm run build`)")
    s = Stack(tmp_path)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    if not CHROMIUM.is_file():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: run `make install` "
                    "(it runs `apt-get install -y chromium`)")
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM),
            headless=True, args=CHROMIUM_ARGS, viewport=DESKTOP, color_scheme="light",
            locale="en-US", timezone_id="UTC")
        try:
            yield context
        finally:
            await context.close()


@pytest.fixture
def console() -> ConsoleWatch:
    return ConsoleWatch()


@pytest.fixture
async def page(browser: BrowserContext, console: ConsoleWatch) -> AsyncIterator[Page]:
    p = browser.pages[0] if browser.pages else await browser.new_page()
    console.watch(p)
    yield p
    assert console.errors == [], "the pages logged errors:\n" + "\n".join(console.errors)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
