"""LiveAvatar FULL mode through the owner's browser: a test WebSocket client plays the page
that joined the avatar's LiveKit room. It attaches, receives each command as ``avatar.command``
and publishes it on the room's data channel (the fake LiveAvatar's stand-in), and forwards the
room's ``agent-response`` events back as ``avatar.event``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kb_helpers import MANUAL_V1, build, fast_hasher, ingest, login
from ws_helpers import Tab, connect

from avatarstack.bootstrap.app import CONTAINER
from avatarstack.testkit.liveavatar import FakeLiveAvatar

QUESTION = "how often does the machine need descaling"
VOICE_QUESTION = "where are warranty claims handled"


@pytest.fixture
async def fake() -> AsyncIterator[FakeLiveAvatar]:
    async with FakeLiveAvatar() as server:
        server.seconds_per_word = 0  # speak_started/ended at once
        yield server


def liveavatar_settings(fake: FakeLiveAvatar) -> dict[str, Any]:
    return {
        "liveavatar": {"api_key": fake.api_key, "base_url": fake.base_url},
        "provider": "liveavatar",
    }


@pytest.fixture
async def client(avatarstack_client: Any, fake: FakeLiveAvatar) -> Any:
    client = await avatarstack_client(
        providers_={"password_hasher": fast_hasher()}, avatar=liveavatar_settings(fake)
    )
    editor = await login(client, "ed@example.com", "editor")
    await ingest(client, editor, MANUAL_V1)
    await build(client, editor)
    return client


class Page:
    """The console page: reads every frame, relays avatar commands into the room and the
    room's events back to the server."""

    def __init__(self, tab: Tab, fake: FakeLiveAvatar) -> None:
        self.tab = tab
        self.fake = fake
        self.session_id: str | None = None
        self.provider_session_id: str | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.fake.commands.listen(self._forward)
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        self.fake.commands.unlisten(self._forward)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    async def _read(self) -> None:
        while True:
            frame = await self.tab.next(timeout=60)
            if frame["type"] == "avatar.command" and self.provider_session_id is not None:
                assert frame["data"]["topic"] == "agent-control"
                await self.fake.commands.send(self.provider_session_id, frame["data"]["command"])

    async def _forward(self, provider_session_id: str, event: dict[str, Any]) -> None:
        if provider_session_id == self.provider_session_id and self.session_id is not None:
            await self.tab.send("avatar.event", {"session_id": self.session_id, "event": event})

    async def attach(self) -> None:
        await self.tab.send("avatar.attach", {"session_id": self.session_id}, id="attach")
        await self.eventually(lambda: self.frames("avatar.attached", session_id=self.session_id))

    def frames(self, type_: str, **match: Any) -> list[dict[str, Any]]:
        return [
            f
            for f in self.tab.frames
            if f["type"] == type_ and all(f["data"].get(k) == v for k, v in match.items())
        ]

    async def eventually(self, check: Callable[[], Any], within: float = 15.0) -> Any:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            result = check()
            if result:
                return result
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("the page never saw what it waited for")
            await asyncio.sleep(0.02)


async def member_token(client: Any, email: str = "mo@example.com") -> str:
    return str((await login(client, email))["Authorization"].split(" ", 1)[1])


async def provider_id(client: Any, session_id: str) -> str:
    async with client.server.app[CONTAINER].storage().unit_of_work() as uow:
        row = await uow.avatar_sessions.get(session_id)
    assert row is not None
    assert row.provider_session_id
    return str(row.provider_session_id)


@contextlib.asynccontextmanager
async def page_with_avatar(client: Any, fake: FakeLiveAvatar, token: str) -> AsyncIterator[Page]:
    """A page with an open conversation and a started avatar (not attached yet)."""
    tab = await connect(client, token)
    await tab.open()
    await tab.send("avatar.start", {"avatar_id": sorted(fake.active_avatar_ids)[0]}, id="s1")
    credentials = await tab.until("avatar.credentials")
    assert credentials["data"]["livekit"]["access_token"]
    page = Page(tab, fake)
    page.session_id = credentials["data"]["session_id"]
    page.provider_session_id = await provider_id(client, page.session_id)
    await page.start()
    try:
        yield page
    finally:
        await page.stop()
        await tab.ws.close()


async def test_an_attached_page_carries_every_answer_sentence_and_reports_speech(
    client: Any, fake: FakeLiveAvatar
) -> None:
    token = await member_token(client)
    async with page_with_avatar(client, fake, token) as page:
        await page.attach()

        await page.tab.send("user.message", {"client_id": "q1", "text": QUESTION})
        completed = await page.eventually(lambda: page.frames("answer.completed"))
        answer = completed[0]["data"]
        assert answer["citations"]
        assert "avatar_error" not in answer

        spoken = [
            c.payload
            for c in fake.commands.received
            if c.payload.get("event_type") == "avatar.speak_text"
        ]
        assert spoken, "the answer's sentences reached the room"
        assert " ".join(c["text"] for c in spoken).split() == answer["text"].split()
        # the room reported speech: the conversation follows it, with captions
        speaking = await page.eventually(lambda: page.frames("avatar.speaking"))
        assert speaking[0]["data"]["session_id"] == page.session_id
        assert speaking[0]["data"]["text"] == spoken[0]["text"]
        assert "seq" in speaking[0]
        await page.eventually(lambda: page.frames("avatar.idle"))


async def test_interrupt_reaches_the_room_as_an_avatar_interrupt(
    client: Any, fake: FakeLiveAvatar
) -> None:
    token = await member_token(client)
    async with page_with_avatar(client, fake, token) as page:
        await page.attach()
        await page.tab.send("avatar.interrupt")
        command = await page.eventually(
            lambda: [
                f
                for f in page.frames("avatar.command", session_id=page.session_id)
                if f["data"]["command"]["event_type"] == "avatar.interrupt"
            ]
        )
        assert command[0]["data"]["command"]["session_id"] == page.provider_session_id
        assert "seq" not in command[0]


async def test_a_transcription_forwarded_twice_gives_one_message_and_one_cited_answer(
    client: Any, fake: FakeLiveAvatar
) -> None:
    token = await member_token(client)
    async with page_with_avatar(client, fake, token) as page:
        await page.attach()
        said = {"event_id": "evt-1", "event_type": "user.transcription", "text": VOICE_QUESTION}
        for _ in range(2):  # e.g. two tabs in the room forward the same event
            await page.tab.send("avatar.event", {"session_id": page.session_id, "event": said})
        await page.eventually(lambda: page.frames("answer.completed"))
        await asyncio.sleep(0.3)  # a second answer would have started by now
        messages = page.frames("message.created", role="user")
        assert [m["data"]["client_id"] for m in messages] == ["voice:evt-1"]
        assert messages[0]["data"]["text"] == VOICE_QUESTION
        answers = page.frames("answer.completed")
        assert len(answers) == 1
        assert answers[0]["data"]["citations"]
        assert "Oslo" in answers[0]["data"]["text"]


async def test_session_stopped_in_the_room_ends_the_avatar_in_the_conversation(
    client: Any, fake: FakeLiveAvatar
) -> None:
    token = await member_token(client)
    async with page_with_avatar(client, fake, token) as page:
        await page.attach()
        stopped = {"event_id": "e9", "event_type": "session.stopped", "end_reason": "USER_CLOSED"}
        await page.tab.send("avatar.event", {"session_id": page.session_id, "event": stopped})
        await page.eventually(lambda: page.frames("avatar.session", status="stopped"))


async def test_without_an_attached_page_speak_is_a_409_and_answers_stay_text(
    client: Any, fake: FakeLiveAvatar
) -> None:
    auth = await login(client, "mo@example.com")
    token = auth["Authorization"].split(" ", 1)[1]
    async with page_with_avatar(client, fake, token) as page:
        spoken = await client.post(
            f"/api/v1/avatar/sessions/{page.session_id}/speak",
            json={"text": "Hello there."},
            headers=auth,
        )
        assert spoken.status == 409
        problem = await spoken.json()
        assert "no browser of the session's owner is connected" in problem["detail"]

        await page.tab.send("user.message", {"client_id": "q1", "text": QUESTION})
        completed = await page.eventually(lambda: page.frames("answer.completed"))
        assert completed[0]["data"]["citations"]
        assert completed[0]["data"]["avatar_error"] == "avatar-not-attached"
        assert not fake.commands.received

        # attaching, then detaching, brings back the 409
        await page.attach()
        ok = await client.post(
            f"/api/v1/avatar/sessions/{page.session_id}/speak",
            json={"text": "Hello there."},
            headers=auth,
        )
        assert ok.status == 202
        await page.tab.send("avatar.detach", {"session_id": page.session_id})
        await page.eventually(lambda: page.frames("avatar.detached"))
        again = await client.post(
            f"/api/v1/avatar/sessions/{page.session_id}/speak",
            json={"text": "Hello again."},
            headers=auth,
        )
        assert again.status == 409


async def test_a_page_cannot_attach_to_another_users_session(
    client: Any, fake: FakeLiveAvatar
) -> None:
    owner = await member_token(client)
    other = await member_token(client, "eve@example.com")
    async with page_with_avatar(client, fake, owner) as page:
        intruder = await connect(client, other)
        await intruder.send("avatar.attach", {"session_id": page.session_id}, id="x")
        error = await intruder.until("error")
        assert error["data"]["code"] == "not-found"
        await intruder.ws.close()


# ------------------------------------------------------------------- two instances


@pytest.mark.postgres
async def test_a_command_issued_on_one_instance_reaches_the_page_on_another(
    avatarstack_client: Any, postgres_database: Any, fake: FakeLiveAvatar
) -> None:
    await postgres_database.truncate()
    shared = {
        "database_url": postgres_database.url,
        "secret_key": "s" * 48,
        "public_url": "http://avatarstack.test",
        "providers_": {"password_hasher": fast_hasher()},
        "avatar": liveavatar_settings(fake),
    }
    one = await avatarstack_client(**shared)
    two = await avatarstack_client(**shared)
    auth = await login(one, "mo@example.com")
    token = auth["Authorization"].split(" ", 1)[1]
    started = await one.post(
        "/api/v1/avatar/sessions",
        json={"avatar_id": sorted(fake.active_avatar_ids)[0]},
        headers=auth,
    )
    assert started.status == 201, await started.text()
    session_id = (await started.json())["session_id"]

    tab = await connect(two, token)  # the page's socket is on instance two
    page = Page(tab, fake)
    page.session_id = session_id
    page.provider_session_id = await provider_id(two, session_id)
    await page.start()
    try:
        await page.attach()
        spoken = await one.post(
            f"/api/v1/avatar/sessions/{session_id}/speak",
            json={"text": "Spoken across instances."},
            headers=auth,
        )
        assert spoken.status == 202, await spoken.text()
        command = await page.eventually(
            lambda: page.frames("avatar.command", session_id=session_id)
        )
        assert command[0]["data"]["command"]["text"] == "Spoken across instances."
        await page.eventually(
            lambda: [
                c
                for c in fake.commands.received
                if c.payload.get("text") == "Spoken across instances."
            ]
        )
    finally:
        await page.stop()
        await tab.ws.close()


async def test_with_liveavatar_answering_voice_transcriptions_are_left_to_it(
    avatarstack_client: Any, fake: FakeLiveAvatar
) -> None:
    settings = liveavatar_settings(fake)
    settings["liveavatar"]["voice_answers"] = "liveavatar"
    client = await avatarstack_client(
        providers_={"password_hasher": fast_hasher()}, avatar=settings
    )
    token = await member_token(client)
    async with page_with_avatar(client, fake, token) as page:
        said = {"event_id": "evt-2", "event_type": "user.transcription", "text": VOICE_QUESTION}
        await page.tab.send("avatar.event", {"session_id": page.session_id, "event": said})
        await page.tab.send("ping", id="p1")
        await page.eventually(lambda: page.frames("pong"))
        await asyncio.sleep(0.3)
        assert page.frames("message.created") == []


async def test_after_a_renewal_the_attached_page_carries_the_new_rooms_commands(
    avatarstack_client: Any, fake: FakeLiveAvatar
) -> None:
    fake.tier_max_session_duration = 9  # renewed 3 s before the cap (a third of it)
    settings = liveavatar_settings(fake)
    settings.update(maintenance_seconds=0.2)
    client = await avatarstack_client(
        providers_={"password_hasher": fast_hasher()}, avatar=settings
    )
    auth = await login(client, "mo@example.com")
    token = auth["Authorization"].split(" ", 1)[1]
    async with page_with_avatar(client, fake, token) as page:
        await page.attach()
        old_room = page.provider_session_id
        renewed = await page.eventually(
            lambda: [f for f in page.frames("avatar.credentials") if f["data"].get("renewed")]
        )
        assert renewed[0]["data"]["session_id"] == page.session_id
        new_room = await provider_id(client, page.session_id)
        assert new_room != old_room
        page.provider_session_id = new_room  # the page switched rooms
        spoken = await client.post(
            f"/api/v1/avatar/sessions/{page.session_id}/speak",
            json={"text": "Said in the new room."},
            headers=auth,
        )
        assert spoken.status == 202, await spoken.text()
        command = await page.eventually(
            lambda: [
                f
                for f in page.frames("avatar.command")
                if f["data"]["command"].get("text") == "Said in the new room."
            ]
        )
        # a later renewal may have moved the room again meanwhile: never the first one
        assert command[0]["data"]["command"]["session_id"] != old_room
