"""The conversation page in Chromium: a question gets a cited answer that streams in, and a server
killed with SIGKILL mid-answer and restarted leaves the page with the whole answer, once.

The text avatar speaks the answers here too (speaking, idle, captions).

The answer engine is ``openai`` pointed at the project's fake chat-completions server, so the
test decides how the answer streams (a pause between parts, a stall to kill the server in).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import (
    MANUAL_TITLE,
    SCREENSHOTS_ENV,
    BackgroundLoop,
    Server,
    Servers,
    wait_until,
)
from playwright.sync_api import Page, expect
from ui import SLOW, ask, connection, record_texts, sign_in, texts_seen, transcript

from avatarstack.testkit.openai import FakeChatCompletions

QUESTION = "How often does the espresso machine need descaling?"
PARTS = ["The espresso machine ", "needs descaling ", "every three months [1]."]
ANSWER = "The espresso machine needs descaling every three months."
#: how a citation of the manual's first page reads on the page
CITES_PAGE_ONE = re.compile(rf"{MANUAL_TITLE}.*(p\.|page)\s*1\b", re.I | re.S)


@pytest.fixture(scope="module")
def chat(aio: BackgroundLoop) -> Iterator[FakeChatCompletions]:
    fake = FakeChatCompletions(reply=PARTS)
    aio.run(fake.start())
    yield fake
    aio.run(fake.stop())


@pytest.fixture
def model(chat: FakeChatCompletions) -> Iterator[FakeChatCompletions]:
    """The fake model, with a pause between parts so the streaming is visible."""
    chat.heal()
    chat.delta_delay = 0.4
    yield chat
    chat.heal()


@pytest.fixture(scope="module")
def server(servers: Servers, chat: FakeChatCompletions) -> Iterator[Server]:
    server = servers.new(
        "chat",
        data="manual",
        AVATARSTACK_ANSWER__ENGINE="openai",
        AVATARSTACK_ANSWER__OPENAI__BASE_URL=chat.api_base_url,
        AVATARSTACK_ANSWER__OPENAI__API_KEY=chat.api_key,
        AVATARSTACK_ANSWER__OPENAI__MODEL=chat.model,
        # a killed instance's answer is taken over one second after its last heartbeat
        AVATARSTACK_REALTIME__ANSWER_LEASE_SECONDS="1",
    )
    server.start()
    yield server
    server.stop()


def the_answer(page: Page) -> None:
    """The whole answer is on the page, once, with its citation of page 1 of the manual."""
    log = transcript(page)
    expect(log.get_by_text(ANSWER, exact=False)).to_have_count(1, timeout=SLOW)
    text = log.inner_text()
    assert text.count("needs descaling") == 1, text
    assert text.count("every three months") == 1, text
    assert CITES_PAGE_ONE.search(text), text


def answered(server: Server, token: str) -> list[dict[str, Any]]:
    """The events of the user's one conversation once its answer completed (else [])."""
    (conversation,) = server.api("GET", "/conversations", token=token).body["conversations"]
    events = server.events(token, conversation["conversation_id"])
    return events if any(e["type"] == "answer.completed" for e in events) else []


def test_a_question_gets_a_cited_answer_that_streams_in(
    page: Page, server: Server, model: FakeChatCompletions
) -> None:
    sign_in(page, server.member("ann"))
    record_texts(page)
    ask(page, QUESTION)
    expect(transcript(page).get_by_text(QUESTION)).to_be_visible()
    the_answer(page)
    seen = texts_seen(page)
    assert any("The espresso machine" in t and "three months" not in t for t in seen), (
        "the answer appeared all at once, not streamed"
    )


def test_a_server_killed_mid_answer_and_restarted_leaves_the_whole_answer_once(
    page: Page, server: Server, model: FakeChatCompletions
) -> None:
    email = server.member("kim")
    sign_in(page, email)
    model.stall_after = 2  # two parts, then the model hangs: the instance is mid-answer
    ask(page, QUESTION)
    expect(transcript(page).get_by_text("needs descaling")).to_be_visible(timeout=SLOW)

    server.kill()
    expect(connection(page)).not_to_have_text("Connected")
    model.stall_after = None
    server.start()

    expect(connection(page)).to_have_text("Connected", timeout=SLOW)
    the_answer(page)
    token = server.login(email)
    events = wait_until(lambda: answered(server, token), what="answer.completed")
    kinds = [e["type"] for e in events]
    assert kinds.count("message.created") == 1
    assert kinds.count("answer.completed") == 1
    deltas = "".join(e["data"]["text"] for e in events if e["type"] == "answer.delta")
    (completed,) = [e for e in events if e["type"] == "answer.completed"]
    assert deltas == completed["data"]["text"] == ANSWER
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_the_text_avatar_shows_speaking_then_idle_with_captions(
    page: Page, server: Server, model: FakeChatCompletions
) -> None:
    sign_in(page, server.member("tia"))
    page.get_by_role("button", name="Start avatar").click()
    state = page.get_by_text(re.compile(r"^(Speaking|Idle)$"))
    expect(state).to_have_text("Idle", timeout=SLOW)
    ask(page, QUESTION)
    expect(state).to_have_text("Speaking", timeout=SLOW)
    expect(page.get_by_label("Captions")).to_contain_text("every three months")
    expect(state).to_have_text("Idle", timeout=SLOW)
    expect(page.get_by_role("button", name="Stop avatar")).to_be_visible()


def test_the_readme_screenshot_shows_a_cited_answer(
    page: Page, server: Server, model: FakeChatCompletions, tmp_path: Path
) -> None:
    """docs/images/console-chat.png (the avatar speaking a cited answer, with captions):
    ``AVATARSTACK_E2E_SCREENSHOTS=docs/images`` refreshes it; otherwise the picture goes to a
    temporary folder."""
    model.delta_delay = 0
    sign_in(page, server.member(email_="ada@example.com"))
    page.get_by_role("button", name="Start avatar").click()
    ask(page, QUESTION)
    the_answer(page)
    expect(page.get_by_label("Captions")).to_contain_text("every three months")
    page.evaluate("() => document.activeElement?.blur()")
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "console-chat.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
