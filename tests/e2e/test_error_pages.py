"""What a person sees when things go wrong: the server goes away (a banner, then the page recovers
by itself), an upload the server refuses (its reason), and a rate limit (when to try again)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from harness import EDITOR, Server, Servers, multipart
from playwright.sync_api import Page, expect
from ui import SLOW, alerts, connection, sign_in

NOT_A_PDF = b"Dear customer, this file only pretends to be a PDF.\n"


@pytest.fixture(scope="module")
def server(servers: Servers) -> Iterator[Server]:
    server = servers.new("errors", data="accounts")
    server.start()
    yield server
    server.stop()


def offline_banner(page: Page):  # type: ignore[no-untyped-def]
    """The page-wide banner. A request that failed meanwhile may add its own alert ("cannot be
    reached. Check your connection…"), so the banner is told apart by its "Reconnecting"."""
    return alerts(page).filter(has_text=re.compile(r"cannot be reached\. Reconnecting", re.I))


def test_the_server_going_away_shows_a_banner_and_the_page_recovers_by_itself(
    page: Page, server: Server
) -> None:
    sign_in(page, server.member("dan"))
    expect(connection(page)).to_have_text("Connected", timeout=SLOW)
    expect(offline_banner(page)).to_have_count(0)

    server.kill()
    try:
        expect(offline_banner(page)).to_be_visible(timeout=SLOW)
        expect(connection(page)).to_have_text(re.compile("Reconnecting…|Offline"))
    finally:
        server.start()  # the module's other tests need it, whatever happened above
    expect(connection(page)).to_have_text("Connected", timeout=SLOW)
    expect(offline_banner(page)).to_be_hidden()
    # the page works again without a reload: the conversation list answers
    page.get_by_label("Message").fill("Is anyone there?")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_text("Is anyone there?")).to_be_visible()


def test_an_invalid_upload_shows_the_servers_reason(page: Page, server: Server) -> None:
    body, content_type = multipart("leaflet.pdf", NOT_A_PDF, "application/pdf")
    refused = server.api(
        "POST",
        "/kb/documents",
        data=body,
        token=server.login(EDITOR),
        headers={"Content-Type": content_type},
    )
    assert refused.status == 422, refused
    assert refused.detail

    sign_in(page, EDITOR)
    page.get_by_role("link", name="Knowledge").click()
    page.get_by_label("Document (PDF)").set_input_files(
        files=[{"name": "leaflet.pdf", "mimeType": "application/pdf", "buffer": NOT_A_PDF}]
    )
    page.get_by_role("button", name="Upload").click()
    expect(alerts(page).filter(has_text=refused.detail)).to_be_visible()


def test_a_rate_limited_request_says_when_to_try_again(page: Page, server: Server) -> None:
    email = server.member("eve")
    for _ in range(3):  # three reset mails an hour per account
        page.goto("/forgot-password")
        page.get_by_label("Email").fill(email)
        page.get_by_role("button", name="Send reset link").click()
        expect(page.get_by_text(re.compile("on its way", re.I))).to_be_visible()

    page.goto("/forgot-password")
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Send reset link").click()
    refusal = alerts(page).filter(has_text=re.compile(r"Try again in \d+ s"))
    expect(refusal).to_be_visible()
    seconds = int(re.search(r"Try again in (\d+) s", refusal.inner_text()).group(1))  # type: ignore[union-attr]
    assert 0 < seconds <= 3600
