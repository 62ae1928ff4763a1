"""Browser fixtures for the end-to-end tests: Debian's Chromium driven by Playwright (python).

Playwright's own browser download cannot work here, so the tests use /usr/bin/chromium
(``make browser`` installs it) and are skipped with a clear reason when it is missing.
Screenshots of every step go to ``test-artifacts/e2e/`` (gitignored) for a human to look at.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-quic", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

skip_without_browser = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="browser tests need Debian's chromium at /usr/bin/chromium (run `make browser`)")


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright python package")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # around it are still plain synchronous code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Browsing:
    """Opens pages on the live server; records page errors; saves named screenshots."""

    def __init__(self, browser, base_url: str):
        self.browser, self.base_url = browser, base_url
        self.contexts = []
        self.errors: list[str] = []

    def open(self, path: str = "/", viewport=None, **context_options):
        context = self.browser.new_context(viewport=viewport or DESKTOP, base_url=self.base_url, **context_options)
        context.set_default_timeout(30_000)
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.goto(path)
        return page

    @staticmethod
    def shot(page, name: str, full_page: bool = True) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        if full_page:  # lazy images below the fold would be blank in a full-page picture
            page.evaluate("""() => Promise.all([...document.images].map(img => {
                img.loading = "eager"; return img.decode().catch(() => null); }))""")
        page.screenshot(path=str(path), full_page=full_page)
        return path

    def close(self):
        # Let requests in flight finish first: the live server must not touch the database after the test.
        for context in self.contexts:
            for page in context.pages:
                page.wait_for_load_state("networkidle")
            context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def web(request, browser, live_server, transactional_db):
    """Depends on the database so that pages still loading are closed before it is flushed."""
    browsing = Browsing(browser, live_server.url)
    yield browsing
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:  # what the page looked like when the test failed
        for n, context in enumerate(browsing.contexts):
            for page in context.pages:
                browsing.shot(page, f"FAILED-{request.node.name}-{n}", full_page=False)
    browsing.close()
    assert not browsing.errors, f"JavaScript errors on the page: {browsing.errors}"


