"""Browser fixtures: Debian's Chromium driven by Playwright (Playwright's own browser download is not used)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from desk.settings import ROOT

ARTIFACTS = ROOT / "test-artifacts"
# Flags for a machine with no network but loopback: no background calls home, no GPU.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Playwright's assertions wait 5 s by default; a two-core CI machine running the stack and several browsers
# can take longer to show something that is on its way. (A wait that never ends still fails.)
expect.set_options(timeout=15_000)


# Module scope: Playwright's sync API runs an event loop on this thread while it is open, and other tests
# call asyncio.run(), which refuses to start inside a running loop.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.fail("Debian's chromium is missing: the test command installs it (make test)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
