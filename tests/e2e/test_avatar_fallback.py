"""The avatar panel when the LiveKit browser client cannot be loaded (a CDN down, a wrong
``AVATARSTACK_CONSOLE__LIVEKIT_CLIENT_URL``): the panel says video is unavailable and falls back
to its text-only state, and the chat keeps answering from the knowledge base."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import Server, Servers, StaticFiles
from playwright.sync_api import Page, expect
from ui import SLOW, ask, sign_in, transcript

from avatarstack.testkit.liveavatar import FakeLiveAvatar

QUESTION = "How often does the espresso machine need descaling?"


@pytest.fixture(scope="module")
def server(
    servers: Servers, liveavatar: FakeLiveAvatar, livekit_double: StaticFiles
) -> Iterator[Server]:
    # the module's origin answers, but not this file: 404, so the import fails
    server = servers.liveavatar(
        "no-livekit", liveavatar, livekit_double.url("missing-livekit-client.mjs")
    )
    server.start()
    yield server
    server.stop()


def test_without_the_livekit_client_the_panel_is_text_only_and_the_chat_still_answers(
    page: Page, server: Server, livekit_double: StaticFiles
) -> None:
    sign_in(page, server.member("nolk"))
    page.get_by_role("button", name="Start avatar").click()
    expect(page.get_by_text("the LiveKit client could not be loaded")).to_be_visible(timeout=SLOW)
    assert "missing-livekit-client.mjs" in livekit_double.requests
    assert page.locator("video").count() == 0 or not page.evaluate(
        "() => [...document.querySelectorAll('video')].some((v) => v.srcObject)"
    )

    ask(page, QUESTION)
    expect(transcript(page).get_by_label("Answer")).to_contain_text(
        "every three months", timeout=SLOW
    )
    # the page is still connected: the realtime state did not fall over with the module
    expect(page.get_by_role("button", name="Stop avatar")).to_be_visible()
