"""Browser fixtures: Debian's chromium driven by Playwright, against a whole local stack.

One browser and one stack (embedded broker, cloud, a real edge agent ``local`` as a child
process) serve the whole session, so the browser tests take seconds, not a stack start
each. Playwright never downloads a browser here: it drives ``/usr/bin/chromium`` (``apt-get
install -y chromium``); without it the tests skip and say so. Every test saves screenshots
of the pages it visits under ``tests/console/screenshots/`` (git-ignored), printed at the end.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from launcher.stack import LocalStack, StackConfig

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).with_name("screenshots")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright

    expect.set_options(timeout=15_000)  # a panel polls every 2-5 s
except ImportError:  # pragma: no cover - the dev extras install it
    sync_playwright = None  # type: ignore[assignment]


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        pytest.skip("playwright is not installed: pip install -e '.[dev]'")
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM}: apt-get install -y chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="package")
def screenshots() -> Iterator[Path]:
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    yield SHOTS
    print(f"\nscreenshots of the console: {SHOTS}")


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[LocalStack]:
    """A stack whose agent restarts a crashing app within a second or two."""
    config = StackConfig(
        data_dir=tmp_path_factory.mktemp("console-stack"), http_port=0, mqtt_port=0,
        mqtts_port=None, topic_root=f"ui{uuid.uuid4().hex[:8]}/tether/v1",
        edge_env={"TETHER_EDGE_RECONNECT_MAX_SECONDS": "1",
                  "TETHER_EDGE_RESTART_BACKOFF_SECONDS": "0.2",
                  "TETHER_EDGE_RESTART_BACKOFF_MAX_SECONDS": "0.5"})
    started = LocalStack(config).start()
    try:
        wait_online(started)
        yield started
    finally:
        started.stop()


def wait_online(stack: LocalStack, timeout: float = 20.0) -> None:
    """Until the agent ``local`` has said it is online (the pages start from there)."""
    headers = {"Authorization": f"Bearer {stack.admin_token()}"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node = httpx.get(f"{stack.api_url}/v1/namespaces/default/nodes/local", headers=headers,
                         timeout=5)
        if node.status_code == 200 and node.json()["online"]:
            return
        time.sleep(0.1)
    pytest.fail(f"the agent did not come online within {timeout} s; see {stack.edge_log}")


@pytest.fixture(scope="package")
def rest(stack: LocalStack) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {stack.admin_token()}"}
    base = f"{stack.api_url}/v1/namespaces/default"
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def page(browser: Browser, stack: LocalStack) -> Iterator[Page]:
    """A fresh tab (its own session storage), not signed in."""
    context = browser.new_context(base_url=stack.api_url, viewport={"width": 1360, "height": 900})
    context.set_default_timeout(15_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, f"the page raised: {errors}"


@pytest.fixture
def signed_in(page: Page, stack: LocalStack) -> Page:
    page.goto("/ui/login")
    page.fill("#token", stack.admin_token())
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/")
    return page


@pytest.fixture
def shoot(screenshots: Path) -> Callable[..., Path]:
    def take(page: Page, name: str, *, full_page: bool = True) -> Path:
        path = screenshots / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take


def native_app(name: str, code: str, **extra: Any) -> dict[str, Any]:
    """An app of one native service running ``python -c code`` on the node ``local``."""
    import sys

    return {"name": name, "selector": "tether.io/node=local",
            "services": [{"name": "main", "command": [sys.executable, "-c", code]}], **extra}
