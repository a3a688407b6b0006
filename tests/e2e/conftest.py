"""Fixtures of the browser suite: headless Debian Chromium driven by Playwright (sync API), real
``avatarstack serve`` subprocesses, a real SMTP server, and fake vendors on 127.0.0.1.

* ``browser`` — one Chromium for the session (``/usr/bin/chromium`` or
  ``$AVATARSTACK_E2E_CHROMIUM``; never downloaded). Missing: the tests skip, or fail when
  ``AVATARSTACK_TEST_BROWSER_REQUIRED=1`` (CI sets it).
* ``context``/``page`` — a fresh browser context per test, on the module's ``server`` fixture.
  When a test fails, every page of its context leaves a screenshot and its console log (plus the
  server's log) under ``tests/e2e/artifacts/<test>/`` (or ``$AVATARSTACK_E2E_ARTIFACTS``).
* ``servers`` — starts ``avatarstack serve`` subprocesses (see :class:`harness.Server`); each test
  module defines its own ``server`` fixture with the settings it needs.
* ``mailbox`` — what the session's aiosmtpd server received; ``aio`` — the loop the fakes run on.
* ``liveavatar`` — a fake LiveAvatar per module; ``agent`` — the LiveKit room between the page
  and it (:class:`room.Agent`).

Playwright's sync API leaves the main thread's event loop marked as running, so this suite runs
after every other test of the session (``pytest_collection_modifyitems`` below).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import (
    CHROMIUM_ARGS,
    DESKTOP,
    REQUIRED_ENV,
    BackgroundLoop,
    ConsoleLog,
    Mailbox,
    Server,
    Servers,
    StaticFiles,
    artifacts_dir,
    browser_required,
    chromium_path,
    start_smtp,
)
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    expect,
    sync_playwright,
)
from room import Agent

from avatarstack.testkit.liveavatar import FakeLiveAvatar

HERE = Path(__file__).resolve().parent
#: what a person waits for a page to react (assertions poll until then)
expect.set_options(timeout=10_000)

# =========================================================================== hooks


def _is_e2e(item: pytest.Item) -> bool:
    return HERE in Path(str(item.path)).resolve().parents


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: once Playwright's sync API ran, asyncio tests cannot."""
    items.sort(key=_is_e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"e2e_report_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"e2e_report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


# =========================================================================== session pieces


@pytest.fixture(scope="session")
def aio() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def mailbox_server(aio: BackgroundLoop) -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    server, port = aio.run(start_smtp(mailbox))
    yield mailbox, port

    async def close() -> None:
        server.close()
        await server.wait_closed()

    aio.run(close())


@pytest.fixture(scope="session")
def mailbox(mailbox_server: tuple[Mailbox, int]) -> Mailbox:
    return mailbox_server[0]


@pytest.fixture(scope="session")
def servers(
    tmp_path_factory: pytest.TempPathFactory, mailbox_server: tuple[Mailbox, int]
) -> Iterator[Servers]:
    started = Servers(tmp_path_factory.mktemp("e2e-servers"), mailbox_server)
    yield started
    started.stop_all()


@pytest.fixture(scope="session")
def livekit_double(aio: BackgroundLoop) -> Iterator[StaticFiles]:
    """Serves ``livekit_double.mjs`` from another origin (CORS), like a CDN would."""
    files = StaticFiles("livekit_double.mjs")
    aio.run(files.start())
    yield files
    aio.run(files.stop())


# =========================================================================== the browser


@pytest.fixture(scope="module")
def liveavatar(aio: BackgroundLoop) -> Iterator[FakeLiveAvatar]:
    """The project's fake LiveAvatar, one per test module that points a server at it."""
    fake = FakeLiveAvatar(max_concurrent=50)
    aio.run(fake.start())
    yield fake
    aio.run(fake.stop())


@pytest.fixture
def agent(aio: BackgroundLoop, liveavatar: FakeLiveAvatar, page: Page) -> Iterator[Agent]:
    """The LiveKit room between this test's page and the module's fake LiveAvatar."""
    room = Agent(aio, liveavatar, page)
    yield room
    room.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    if not os.access(executable, os.X_OK):
        reason = f"no Chromium at {executable} (apt-get install chromium)"
        if browser_required():
            pytest.fail(f"{reason}; {REQUIRED_ENV}=1 makes this a failure", pytrace=False)
        pytest.skip(f"{reason}; set {REQUIRED_ENV}=1 to fail instead")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def console_log() -> ConsoleLog:
    return ConsoleLog()


@pytest.fixture
def viewport() -> dict[str, int]:
    """Override (or parametrize) to test another screen size."""
    return DESKTOP


@pytest.fixture
def context(
    request: pytest.FixtureRequest,
    browser: Browser,
    server: Server,
    console_log: ConsoleLog,
    viewport: dict[str, int],
) -> Iterator[BrowserContext]:
    """A fresh browser profile on the module's server; artifacts when the test fails."""
    ctx = browser.new_context(base_url=server.url, viewport=viewport)  # type: ignore[arg-type]
    ctx.set_default_timeout(10_000)
    ctx.on("page", console_log.watch)
    try:
        yield ctx
    finally:
        if _failed(request):
            _save_artifacts(request, ctx, console_log, server)
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def artifact_folder(nodeid: str) -> Path:
    return artifacts_dir() / re.sub(r"[^\w.-]+", "_", nodeid)[-150:]


def _save_artifacts(
    request: pytest.FixtureRequest, ctx: BrowserContext, log: ConsoleLog, server: Server
) -> None:
    folder = artifact_folder(request.node.nodeid)
    shutil.rmtree(folder, ignore_errors=True)  # an earlier run's pictures would mislead
    folder.mkdir(parents=True)
    for number, tab in enumerate(ctx.pages, start=1):
        try:
            tab.screenshot(path=str(folder / f"page-{number}.png"), full_page=True, timeout=5000)
        except Exception as exc:  # a crashed page still gets its log
            (folder / f"page-{number}.screenshot-failed.txt").write_text(repr(exc))
        (folder / f"page-{number}.console.log").write_text(
            f"url: {tab.url}\n" + "\n".join(log.of(tab)) + "\n"
        )
    (folder / "server.log").write_text(server.log_tail(400) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """After failed browser tests, list the artifacts and print the console logs, so CI's log
    (the test command's output) has them."""
    failed = [
        r.nodeid
        for r in terminalreporter.stats.get("failed", []) + terminalreporter.stats.get("error", [])
        if "tests/e2e/" in r.nodeid
    ]
    folders = [f for f in dict.fromkeys(map(artifact_folder, failed)) if f.is_dir()]
    if not folders:
        return
    write = terminalreporter.write_line
    terminalreporter.section("browser artifacts")
    write(f"screenshots and logs of the failed browser tests ({artifacts_dir()}):")
    for folder in folders:
        for path in sorted(folder.iterdir()):
            write(f"  {path.relative_to(artifacts_dir())} ({path.stat().st_size} bytes)")
    for folder in folders:
        for log in sorted(folder.glob("*.console.log")):
            terminalreporter.section(f"console: {log.relative_to(artifacts_dir())}", sep="-")
            for line in log.read_text(errors="replace").splitlines()[-60:]:
                write(line)
        server_log = folder / "server.log"
        if server_log.is_file():
            terminalreporter.section(f"server: {server_log.relative_to(artifacts_dir())}", sep="-")
            for line in server_log.read_text(errors="replace").splitlines()[-40:]:
                write(line)
