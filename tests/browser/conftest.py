"""A real Chromium (Debian's package, driven by Playwright) for the browser tests.

The browser is the peer here: GraphiQL and CORS are only proven by the client that users
really run. Playwright never downloads a browser of its own; it drives ``/usr/bin/chromium``
(or ``FLEETGRAPH_CHROMIUM``), with the flags that keep Chromium from reaching out to Google
services on a closed network. A missing browser fails the tests, naming the install step: a
skipped browser test would prove nothing in CI.

Each page records every request it tried that did not go to the server under test, and
aborts it; tests assert that list is empty. On failure the page's screenshot is saved under
``test-artifacts/`` (or ``FLEETGRAPH_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Playwright, Route, async_playwright

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("FLEETGRAPH_TEST_ARTIFACTS") or "test-artifacts")


def chromium_path() -> str:
    configured = os.environ.get("FLEETGRAPH_CHROMIUM")
    found = configured or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found or not Path(found).exists():
        pytest.fail("Chromium is not installed: run `make install-system` (apt-get install "
                    "chromium) or set FLEETGRAPH_CHROMIUM to a Chromium binary",
                    pytrace=False)
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    """Keep each phase's report on the test item, so fixtures know whether the test failed."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as running:
        yield running


@pytest.fixture(scope="session")
async def browser(playwright: Playwright) -> AsyncIterator[Browser]:
    launched = await playwright.chromium.launch(
        executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)
    yield launched
    await launched.close()


@dataclass
class OfflinePage:
    """A page that may only talk to ``allowed`` origins; everything else is aborted and noted."""

    page: Page
    allowed: list[str]
    blocked: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    async def _route(self, route: Route) -> None:
        url = route.request.url
        if any(url.startswith(origin) for origin in self.allowed) or url.startswith("data:"):
            await route.continue_()
        else:
            self.blocked.append(url)
            await route.abort("internetdisconnected")


@pytest.fixture
async def offline_page(browser: Browser, request: pytest.FixtureRequest
                       ) -> AsyncIterator[OfflinePage]:
    """A fresh browser context whose page can reach only the origins a test allows
    (``offline.allowed.append(origin)``), as on a network without internet."""
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    offline = OfflinePage(page=page, allowed=[])
    page.on("console", lambda message: offline.console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: offline.console.append(f"pageerror: {error}"))
    await page.route("**/*", offline._route)
    try:
        yield offline
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
            await asyncio.to_thread(ARTIFACTS.mkdir, parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            await asyncio.to_thread((ARTIFACTS / f"{name}.console.txt").write_text,
                                    "\n".join(offline.console))
        await context.close()


@pytest.fixture
async def tenant(api: Any) -> Any:
    """A fresh organization per test on the session's API server."""
    import uuid

    from tests.api import make_tenant

    return await make_tenant(api.pool, f"br-{uuid.uuid4().hex[:10]}")
