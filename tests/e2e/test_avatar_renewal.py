"""A LiveAvatar session renewed before its duration cap, seen from the page in Chromium: the
server starts the replacement, stops the old session and sends the page the new room's
credentials (``avatar.credentials {renewed}``); the page leaves the old room and joins the new
one, and the next answer is spoken there.

The server checks its sessions every 0.2 s here, and the fake LiveAvatar gives the first session
a 15-second cap, so the renewal comes about 10 s after the start (a third of the cap before it):
time enough for the test to make the avatar speak first, even on a slow machine.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from harness import Server, Servers, StaticFiles
from playwright.sync_api import Page, expect
from room import Agent, conversation_events, start_avatar
from ui import SLOW, ask, transcript

from avatarstack.testkit.liveavatar import FakeLiveAvatar

QUESTION = "How often does the espresso machine need descaling?"
FIRST_CAP = 15  # seconds: the first session's cap, renewed 5 s before it (a third)
RENEWAL_WAIT = 40_000  # ms: start, cap less margin, and a slow machine


@pytest.fixture(scope="module")
def server(
    servers: Servers, liveavatar: FakeLiveAvatar, livekit_double: StaticFiles
) -> Iterator[Server]:
    server = servers.liveavatar("renewal", liveavatar, livekit_double.url("livekit_double.mjs"))
    server.env.update(AVATARSTACK_AVATAR__MAINTENANCE_SECONDS="0.2")
    server.start()
    yield server
    server.stop()


def test_a_renewal_moves_the_page_to_the_new_room_even_mid_utterance_and_the_avatar_speaks_there(
    page: Page, server: Server, agent: Agent, liveavatar: FakeLiveAvatar
) -> None:
    usual_cap = liveavatar.tier_max_session_duration
    liveavatar.tier_max_session_duration = FIRST_CAP
    try:
        email, first = start_avatar(page, server, agent)
    finally:
        liveavatar.tier_max_session_duration = usual_cap  # the replacement lives long: one renewal
    (joined,) = agent.connects()

    # LiveAvatar reports an utterance of its own that has not ended when the renewal comes (our
    # estimate of its length knows nothing of it): the replaced session ends it
    task = str(uuid.uuid4())
    agent.event("avatar.speak_started", first, task)
    expect(page.get_by_text("Speaking", exact=True)).to_be_visible()

    page.wait_for_function(
        "() => window.__livekitDouble.connects.length >= 2", timeout=RENEWAL_WAIT
    )
    renewed = agent.connects()[1]
    second = agent.session_id(renewed["token"])
    assert second != first
    assert renewed["token"] != joined["token"]
    assert liveavatar.session(second).status == "active"
    assert liveavatar.saw_stop(first), "the server did not stop the replaced session"
    assert page.evaluate("() => window.__livekitDouble.disconnects") >= 1, "old room not left"
    expect(page.get_by_text("Idle", exact=True)).to_be_visible()
    kinds = [
        e["type"]
        for e in conversation_events(server, email)
        if e["type"].startswith("avatar.") and e["data"].get("task_id") == task
    ]
    assert kinds == ["avatar.speaking", "avatar.idle"]

    # the next answer is spoken in the new room, by the new session
    ask(page, QUESTION)
    expect(transcript(page).get_by_label("Answer")).to_contain_text(
        "every three months", timeout=SLOW
    )
    spoken = agent.wait_for("avatar.speak_text")
    assert {c["session_id"] for c in spoken} == {second}
    agent.relay()  # the new session starts the first sentence
    expect(page.get_by_text("Speaking", exact=True)).to_be_visible()
    expect(page.get_by_label("Captions")).to_contain_text(spoken[0]["text"].strip())
    assert [c.event_type for c in liveavatar.session(first).commands] == []
