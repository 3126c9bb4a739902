"""A real browser for the page tests: Playwright driving Debian's chromium.

``make test`` installs chromium when it is missing (``make browser``); Playwright never
downloads a browser here. Each test gets a fresh profile, and every page a test looks at
is saved as a screenshot under ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, Response, async_playwright

from tests.browser.scene import Scene, start_scene

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = Path(os.environ.get("EODES_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

Shoot = Callable[[Page, str], Awaitable[Path]]


async def status_of(navigation: Awaitable[Response | None]) -> int:
    """The HTTP status of the page a navigation ended on."""
    response = await navigation
    assert response is not None
    return response.status


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (Debian package chromium)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path, tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """A headless chromium with a profile of its own, closed after the test."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
            accept_downloads=True,
        )
        try:
            yield context
        finally:
            await context.close()


@pytest.fixture
def shoot() -> Shoot:
    """Saves the whole page as test-artifacts/screenshots/NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    async def save(page: Page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    return save


@pytest.fixture
async def scene() -> AsyncIterator[Scene]:
    """The KR node's console and verification pages over a store with a realistic past."""
    started = await start_scene()
    try:
        yield started
    finally:
        await started.server.stop()
