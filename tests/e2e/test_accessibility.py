"""Every console page, on a desktop and on a 390 by 844 phone: no serious or critical axe-core
violation, no horizontal scrolling on the phone, no Content-Security-Policy violation and no
uncaught script error; and a keyboard-only sign-in with the focus visible at every step."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from a11y import axe_violations, describe, horizontal_overflow
from harness import ADMIN, DESKTOP, PASSWORD, PHONE, ConsoleLog, Server, Servers
from playwright.sync_api import Page, expect
from ui import settled, sign_in

SIGNED_OUT = ("/login", "/register", "/forgot-password", "/reset-password#token=not-a-real-token")
SIGNED_IN = ("/chat", "/knowledge", "/profile", "/admin")
VIEWPORTS = [pytest.param(DESKTOP, id="desktop"), pytest.param(PHONE, id="phone-390")]


@pytest.fixture(scope="module")
def server(servers: Servers) -> Iterator[Server]:
    server = servers.new("a11y", data="manual")
    server.start()
    yield server
    server.stop()


def check_pages(
    page: Page, paths: tuple[str, ...], viewport: dict[str, int], log: ConsoleLog
) -> None:
    problems: list[str] = []
    for path in paths:
        page.goto(path)
        settled(page)
        violations = axe_violations(page)
        if violations:
            problems.append(f"{path}:\n{describe(violations)}")
        if viewport is PHONE and (overflow := horizontal_overflow(page)) > 0:
            problems.append(f"{path}: {overflow} px wider than the 390 px screen")
    errors = [line for line in log.of(page) if line.startswith("[pageerror]")]
    problems += [f"CSP: {line}" for line in log.csp_violations()]
    problems += [f"script error: {line}" for line in errors]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_the_signed_out_pages_are_accessible(
    page: Page, viewport: dict[str, int], console_log: ConsoleLog
) -> None:
    check_pages(page, SIGNED_OUT, viewport, console_log)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_the_signed_in_pages_are_accessible(
    page: Page, viewport: dict[str, int], console_log: ConsoleLog
) -> None:
    sign_in(page, ADMIN)
    check_pages(page, SIGNED_IN, viewport, console_log)


def test_a_person_signs_in_with_the_keyboard_alone_and_sees_where_the_focus_is(
    page: Page,
) -> None:
    page.goto("/login")
    settled(page)
    email = page.get_by_label("Email")
    for _ in range(15):  # Tab through whatever comes first, each stop visibly marked
        page.keyboard.press("Tab")
        assert focus_is_visible(page), f"no visible focus on {focused(page)}"
        if email.evaluate("(el) => el === document.activeElement"):
            break
    expect(email).to_be_focused()
    page.keyboard.type(ADMIN)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password", exact=True)).to_be_focused()
    assert focus_is_visible(page), f"no visible focus on {focused(page)}"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/chat(/|$)"))


def focused(page: Page) -> str:
    return str(page.evaluate("() => document.activeElement.outerHTML.slice(0, 120)"))


def focus_is_visible(page: Page) -> bool:
    """The focused element has an outline or a focus ring (box shadow) drawn around it."""
    return bool(
        page.evaluate(
            """() => {
                const style = getComputedStyle(document.activeElement);
                const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
                return outline || (style.boxShadow && style.boxShadow !== "none");
            }"""
        )
    )
