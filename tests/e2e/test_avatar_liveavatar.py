"""The avatar panel with ``liveavatar`` (FULL mode) in Chromium: the server talks to the project's
fake LiveAvatar, and the page's LiveKit client is the recording test double
(``livekit_double.mjs``, named through ``AVATARSTACK_CONSOLE__LIVEKIT_CLIENT_URL``). Without
the owner's browser in the room, speaking is refused with a problem that says so.

The room between the page and LiveAvatar is played by :class:`room.Agent` (the ``agent``
fixture).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from harness import Response, Server, Servers, StaticFiles, wait_until
from playwright.sync_api import Page, expect
from room import Agent, conversation_events, start_avatar
from ui import SLOW, ask, sign_in, transcript

from avatarstack.testkit.liveavatar import WAYNE_AVATAR_ID, FakeLiveAvatar

QUESTION = "How often does the espresso machine need descaling?"
SENTENCE = re.compile(r"[^.!?]+[.!?]")


@pytest.fixture(scope="module")
def server(
    servers: Servers, liveavatar: FakeLiveAvatar, livekit_double: StaticFiles
) -> Iterator[Server]:
    server = servers.liveavatar("liveavatar", liveavatar, livekit_double.url("livekit_double.mjs"))
    server.start()
    yield server
    server.stop()


def test_the_page_joins_the_room_with_the_credentials_the_fake_issued(
    page: Page, server: Server, agent: Agent, liveavatar: FakeLiveAvatar
) -> None:
    _, session_id = start_avatar(page, server, agent)
    session = liveavatar.session(session_id)
    assert session.status == "active"
    assert [(c["url"], c["token"]) for c in agent.connects()] == [
        (session.livekit_url, session.livekit_client_token)
    ]
    # the avatar's video track is attached to a video element on the page
    page.wait_for_function("() => [...document.querySelectorAll('video')].some((v) => v.srcObject)")
    # LiveKit's connection quality is shown, and follows the room
    expect(page.get_by_text("Video connection: Excellent")).to_be_visible()
    page.evaluate("() => window.__livekitDouble.quality('poor')")
    expect(page.get_by_text("Video connection: Poor")).to_be_visible()

    page.get_by_role("button", name="Stop avatar").click()
    page.wait_for_function("() => window.__livekitDouble.disconnects >= 1")
    expect(page.get_by_role("button", name="Start avatar")).to_be_visible()
    assert liveavatar.saw_stop(session_id)


def test_the_avatar_its_voice_and_language_are_chosen_from_the_provider_s_lists(
    page: Page, server: Server, agent: Agent, liveavatar: FakeLiveAvatar
) -> None:
    sign_in(page, server.member("lia"))
    avatar = page.get_by_role("combobox", name="Avatar")
    language = page.get_by_role("combobox", name="Language")
    voice = page.get_by_role("combobox", name="Voice")
    # the avatars LiveAvatar lists as usable; one still training and one failed are not offered
    expect(avatar.get_by_role("option", name="Wayne")).to_have_count(1)
    expect(avatar.get_by_role("option", name=re.compile("Draft|Broken"))).to_have_count(0)
    expect(language.get_by_role("option")).to_have_text(
        ["Default language", re.compile(r"\(de\)$"), re.compile(r"\(en\)$")]
    )
    expect(voice.get_by_role("option", name="Oliver (male)")).to_have_count(1)

    avatar.select_option(label="Wayne")
    language.select_option("de")  # narrows the voices to the German ones
    expect(voice.get_by_role("option")).to_have_text(["Default voice", "Lena (female)"])
    voice.select_option(label="Lena (female)")
    page.get_by_role("button", name="Start avatar").click()
    page.wait_for_function("() => (window.__livekitDouble?.connects ?? []).length >= 1")
    (connect,) = agent.connects()

    session = liveavatar.session(agent.session_id(connect["token"]))
    lena = next(v.id for v in liveavatar.voices if v.name == "Lena")
    assert session.avatar_id == WAYNE_AVATAR_ID
    persona = session.config["avatar_persona"]
    assert (persona["voice_id"], persona["language"]) == (lena, "de"), session.config


def test_an_answer_is_spoken_sentence_by_sentence_and_speaking_reaches_the_conversation(
    page: Page, server: Server, agent: Agent, liveavatar: FakeLiveAvatar
) -> None:
    email, session_id = start_avatar(page, server, agent)
    ask(page, QUESTION)
    expect(transcript(page).get_by_label("Answer")).to_contain_text(
        "every three months", timeout=SLOW
    )
    (completed,) = [
        e for e in conversation_events(server, email) if e["type"] == "answer.completed"
    ]
    sentences = [s.strip() for s in SENTENCE.findall(completed["data"]["text"])]
    assert sentences

    spoken = agent.wait_for("avatar.speak_text", len(sentences))
    assert [c["text"].strip() for c in spoken] == sentences
    assert all(c["session_id"] == session_id for c in spoken)
    assert {(p["topic"], p["reliable"]) for p in agent.published()} == {("agent-control", True)}

    liveavatar.seconds_per_word = 0.4
    agent.relay()  # LiveAvatar starts the first sentence: speak_started + transcription
    expect(page.get_by_text("Speaking", exact=True)).to_be_visible()
    expect(page.get_by_label("Captions")).to_contain_text(sentences[0])
    agent.advance(120)  # every sentence ends
    expect(page.get_by_text("Idle", exact=True)).to_be_visible()

    # a speak_started/ended pair of LiveAvatar's own (no estimate of ours could make it)
    task = str(uuid.uuid4())
    agent.event("avatar.speak_started", session_id, task)
    expect(page.get_by_text("Speaking", exact=True)).to_be_visible()
    agent.event("avatar.speak_ended", session_id, task)
    expect(page.get_by_text("Idle", exact=True)).to_be_visible()
    reported = [
        e["type"] for e in conversation_events(server, email) if e["data"].get("task_id") == task
    ]
    assert reported == ["avatar.speaking", "avatar.idle"]


def test_interrupt_reaches_the_room(
    page: Page, server: Server, agent: Agent, liveavatar: FakeLiveAvatar
) -> None:
    _, session_id = start_avatar(page, server, agent)
    liveavatar.seconds_per_word = 5  # the avatar is still speaking when the user interrupts
    ask(page, QUESTION)
    agent.wait_for("avatar.speak_text")
    agent.relay()
    expect(page.get_by_text("Speaking", exact=True)).to_be_visible()

    page.get_by_role("button", name="Interrupt").click()
    (interrupt,) = agent.wait_for("avatar.interrupt")
    assert interrupt["session_id"] == session_id
    agent.relay()  # LiveAvatar cuts the utterance: speak_ended
    expect(page.get_by_text("Idle", exact=True)).to_be_visible()
    kinds = [c.event_type for c in liveavatar.session(session_id).commands]
    assert "avatar.interrupt" in kinds


def test_a_user_transcription_becomes_one_message_with_a_cited_answer(
    page: Page, server: Server, agent: Agent, liveavatar: FakeLiveAvatar
) -> None:
    email, session_id = start_avatar(page, server, agent)
    microphone = page.get_by_role("button", name="Microphone")
    microphone.click()
    expect(microphone).to_have_attribute("aria-pressed", "true")
    assert page.evaluate("() => window.__livekitDouble.microphone") == [True]

    agent.aio.run(liveavatar.commands.inject_user_speech(session_id, QUESTION))
    events = agent.deliver(twice=True)  # the same transcription forwarded twice
    (transcription,) = [e for e in events if e["event_type"] == "user.transcription"]

    log = transcript(page)
    expect(log.get_by_text(QUESTION)).to_have_count(1, timeout=SLOW)
    expect(log.get_by_label("Answer")).to_contain_text("every three months", timeout=SLOW)
    conversation = conversation_events(server, email)
    messages = [e for e in conversation if e["type"] == "message.created"]
    assert [(m["data"]["text"], m["data"]["client_id"]) for m in messages] == [
        (QUESTION, f"voice:{transcription['event_id']}")
    ]
    answers = [e for e in conversation if e["type"] == "answer.completed"]
    assert len(answers) == 1
    assert answers[0]["data"]["citations"], answers[0]


def test_speak_needs_the_owners_browser_in_the_room(
    page: Page, server: Server, agent: Agent
) -> None:
    email, _ = start_avatar(page, server, agent)
    token = server.login(email)
    (session,) = server.api("GET", "/avatar/sessions", token=token).body["sessions"]
    speak = f"/avatar/sessions/{session['session_id']}/speak"

    spoken = server.api("POST", speak, {"text": "Hello from the API."}, token=token)
    assert spoken.status == 202, spoken
    (command,) = agent.wait_for("avatar.speak_text")
    assert command["text"] == "Hello from the API."

    page.close()  # the tab goes away, and its socket with it: nobody relays commands now

    def refused() -> Response | None:
        answer = server.api("POST", speak, {"text": "Anyone there?"}, token=token)
        return answer if answer.status == 409 else None

    problem = wait_until(refused, timeout=15, what="a 409 once the browser left")
    assert problem.headers["Content-Type"].startswith("application/problem+json")
    assert "browser" in problem.detail, problem.body
