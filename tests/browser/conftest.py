"""The page in a real browser: Debian's chromium (`make chromium`), headless, driven by
Playwright for Python, against a real `qforge server` on loopback (the server tier's
Server helper). Playwright never downloads a browser: the executable is Debian's.

Every test leaves a screenshot under the artifacts folder (QFORGE_BROWSER_ARTIFACTS,
default /tmp/qforge-browser-artifacts); a failing one also leaves the page's HTML, its
console log and the server's log there.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.integration.server.conftest import Server, running_server

CHROMIUM = os.environ.get("QFORGE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("QFORGE_BROWSER_ARTIFACTS", "/tmp/qforge-browser-artifacts"))
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
WAIT_MS = 60_000  # the longest any single wait in the page may take
expect.set_options(timeout=WAIT_MS)  # expect(...) retries until then, then fails


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}: `make chromium` installs Debian's")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                               args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running_server(tmp_path) as srv:
        yield srv


@dataclass
class Tab:
    """A browser tab on the server, with what it logged and every URL it asked for."""

    page: Page
    server: Server
    console: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def open(self, path: str) -> None:
        self.page.goto(self.server.url + path)

    def sign_in(self, token: str) -> None:
        self.open("/signin")
        self.page.fill("#token", token)
        self.page.click("form.signin button[type=submit]")
        self.page.wait_for_url(self.server.url + "/", timeout=WAIT_MS)

    def axe(self) -> list[dict[str, Any]]:
        """axe-core's violations of the page as it is, serious and critical only."""
        self.page.evaluate(AXE.read_text(encoding="utf-8") + "\n;true")
        result: dict[str, Any] = self.page.evaluate(
            "async () => await axe.run(document, {resultTypes: ['violations']})")
        return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
                 "nodes": [n["html"][:200] for n in v["nodes"][:3]]}
                for v in result["violations"] if v["impact"] in ("serious", "critical")]


def _name(item: pytest.Item) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", item.name)[:120]


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1366, "height": 800})
    ctx.set_default_timeout(WAIT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def tab(request: pytest.FixtureRequest, context: BrowserContext,
        server: Server) -> Iterator[Tab]:
    page = context.new_page()
    t = Tab(page, server)
    page.on("console", lambda m: t.console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: t.console.append(f"pageerror: {e}"))
    page.on("request", lambda r: t.urls.append(r.url))
    yield t
    keep(request.node, t)


def keep(item: pytest.Item, tab: Tab, suffix: str = "") -> None:
    """The screenshot always; the HTML, console and server log of a failed test."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = ARTIFACTS / f"{_name(item)}{suffix}"
    try:
        tab.page.screenshot(path=f"{base}.png", full_page=True)
    except Exception as exc:
        tab.console.append(f"(no screenshot: {exc})")
    failed = any(getattr(getattr(item, f"rep_{w}", None), "failed", False)
                 for w in ("setup", "call"))
    if not failed:  # what an earlier failure of the test left
        for ext in (".html", ".console.log", ".server.log"):
            Path(f"{base}{ext}").unlink(missing_ok=True)
        return
    if failed:
        try:
            Path(f"{base}.html").write_text(tab.page.content(), encoding="utf-8")
        except Exception as exc:
            tab.console.append(f"(no HTML: {exc})")
        Path(f"{base}.console.log").write_text("\n".join(tab.console) + "\n",
                                               encoding="utf-8")
        shutil.copy(tab.server.log, f"{base}.server.log") if tab.server.log else None
