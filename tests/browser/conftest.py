"""The operator console in a real browser: the app, fake platforms, two operators and chromium pages.

Playwright's async API runs in the test's own event loop, beside the app that ``tests.apphost.serving``
serves under uvicorn, so one coroutine drives the page, posts a platform's webhook and looks at the store.
Playwright drives the system's chromium (``THREADLINE_CHROMIUM``, else ``/usr/bin/chromium``, which
``scripts/test.sh`` installs from Debian's packages); it never downloads a browser. Where there is no
chromium (or no Playwright) the tests skip with the reason shown; under ``CI=true`` they fail instead.

Nothing here needs the network guard loosened: the Playwright driver talks to Python over pipes, chromium
to the driver over a pipe (``--remote-debugging-pipe``), and the page opens the app on 127.0.0.1 only.
A test that fails leaves a screenshot and the HTML of each of its pages in its ``tmp_path`` (the path is
printed with the failure).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.browser.support import CHROMIUM_ARGS, TIMEOUT_MS, Desk, find_chromium, new_page, running_desk

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

try:  # Playwright's ``expect`` waits as long as a step may take
    from playwright.async_api import expect
except ImportError:  # the ``browser`` fixture says why the tests do not run
    pass
else:
    expect.set_options(timeout=TIMEOUT_MS)


def _unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"the browser tests need chromium and Playwright under CI=true: {reason}")
    pytest.skip(f"browser tests skipped: {reason}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Keep each phase's report on the test item, so that a fixture can tell its test failed."""
    report = yield
    setattr(item, f"_browser_report_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"_browser_report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless chromium (the system's), closed after the test."""
    executable, reason = find_chromium()
    if executable is None:
        _unavailable(reason)
    try:
        from playwright.async_api import async_playwright
    except ImportError as exc:
        _unavailable(f"Playwright is not installed ({exc}); run scripts/setup.sh")
    async with async_playwright() as playwright:
        try:
            launched = await playwright.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_ARGS
            )
        except Exception as exc:
            _unavailable(f"chromium at {executable} did not start: {str(exc).strip().splitlines()[0]}")
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def pages(
    browser: Any, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await pages()`` opens a page in its own context (1280 x 800 unless ``width``/``height`` say)."""
    opened: list[Any] = []

    async def open_page(**options: Any) -> Any:
        page = await new_page(browser, **options)
        opened.append(page)
        return page

    yield open_page
    if _failed(request):
        folder = tmp_path / "browser-failure"
        folder.mkdir(exist_ok=True)
        for number, page in enumerate(opened):
            if page.is_closed():
                continue
            try:
                await page.screenshot(path=str(folder / f"page{number}.png"), full_page=True)
                (folder / f"page{number}.html").write_text(await page.content(), encoding="utf-8")
            except Exception as exc:  # the page may have gone with the failure
                print(f"no screenshot of page {number}: {exc}")
        print(f"browser failure: screenshots and HTML in {folder}")
    for page in opened:
        await page.context.close()


@pytest.fixture
async def page(pages: Callable[..., Awaitable[Any]]) -> Any:
    """A laptop-sized page (1280 x 800)."""
    return await pages()


@pytest.fixture
async def desk(browser: Any, tmp_path: Path) -> AsyncIterator[Desk]:
    """The app with Telegram and SMS at their fakes, the fake LLM, an admin and an agent.

    Asks for ``browser`` first, so that a machine without chromium skips before starting anything.
    """
    async with running_desk(tmp_path / "data") as desk:
        yield desk
