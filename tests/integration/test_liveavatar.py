"""The LiveAvatar adapter against the fake LiveAvatar server on 127.0.0.1 (FULL mode): sessions,
the data channel, timeouts on the fake clock, limits, faults and the error contract."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from avatarstack.adapters.liveavatar import (
    MAX_TEXT_LENGTH,
    WAYNE_AVATAR_ID,
    LiveAvatarProvider,
)
from avatarstack.bootstrap.settings import Settings
from avatarstack.core.speech import estimate_speech_seconds
from avatarstack.plugins.manager import collect, make_plugin_manager
from avatarstack.ports.avatar import AvatarEvent, AvatarProvider, AvatarProviderContext
from avatarstack.ports.avatar import SessionRequest as Request
from avatarstack.ports.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
    UnavailableError,
    UpstreamError,
)
from avatarstack.testkit.clock import ManualClock
from avatarstack.testkit.liveavatar import FakeAvatar, FakeLiveAvatar, FakeVoice

API_KEY = "la-test-key-3f9a1c7e5b2d"
EVENT_TIMEOUT = 5.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeLiveAvatar]:
    async with FakeLiveAvatar(api_key=API_KEY, clock=clock) as server:
        yield server


@pytest.fixture
async def make_provider(
    fake: FakeLiveAvatar, clock: ManualClock
) -> AsyncIterator[Callable[..., LiveAvatarProvider]]:
    made: list[LiveAvatarProvider] = []

    def make(**options: Any) -> LiveAvatarProvider:
        settings: dict[str, Any] = {
            "commands": fake.commands,
            "clock": clock,
            "speech_time_scale": 0,
            "backoff": 0.01,
            "timeout": 2.0,
        }
        settings.update(options)
        api_key = settings.pop("api_key", fake.api_key)
        provider = LiveAvatarProvider(api_key, fake.base_url, **settings)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


@pytest.fixture
def provider(make_provider: Callable[..., LiveAvatarProvider]) -> LiveAvatarProvider:
    return make_provider()


@pytest.fixture
def ada(fake: FakeLiveAvatar) -> str:
    return fake.active_avatar_ids[0]


class Reader:
    """Reads a session's events in the background."""

    def __init__(self, provider: AvatarProvider, session_id: str) -> None:
        self.events: list[AvatarEvent] = []
        self.task = asyncio.create_task(self._read(provider, session_id))

    async def _read(self, provider: AvatarProvider, session_id: str) -> None:
        async for event in provider.events(session_id):
            self.events.append(event)

    @property
    def types(self) -> list[str]:
        return [event.type for event in self.events]

    async def wait_for(self, count: int) -> list[AvatarEvent]:
        async with asyncio.timeout(EVENT_TIMEOUT):
            while len(self.events) < count:
                if self.task.done():
                    self.task.result()
                    pytest.fail(f"the stream ended early: {self.types}")
                await asyncio.sleep(0.005)
        return self.events

    async def ended(self) -> list[AvatarEvent]:
        async with asyncio.timeout(EVENT_TIMEOUT):
            await self.task
        return self.events


# =========================================================================== a whole session


async def test_a_full_session_gets_livekit_credentials_speaks_on_the_data_channel_and_stops(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str
) -> None:
    voice = fake.voices[0].id
    with capture_logs() as logs:
        session = await provider.start_session(
            Request(avatar_id=ada, voice_id=voice, language="de", quality="very_high")
        )
        sid = session.provider_session_id
        vendor = fake.session(sid)
        repeat = await provider.speak(sid, "Hello, I am your avatar.", "repeat")
        talk = await provider.speak(sid, "What can you do?", "talk")
        await provider.interrupt(sid)
        await provider.keep_alive(sid)
        await provider.stop(sid)
        await provider.stop(sid)

    # the browser gets the room and the *client* token, never the API key
    assert session.livekit is not None
    assert session.livekit.url == "wss://fake-livekit.invalid"
    assert session.livekit.access_token == vendor.livekit_client_token
    assert API_KEY not in session.model_dump_json()
    assert API_KEY not in session.livekit.access_token
    assert session.max_duration_seconds == fake.tier_max_session_duration
    assert session.idle_timeout_seconds == 300
    # the token request, as LiveAvatar documents FULL mode
    assert fake.token_requests == [
        {
            "mode": "FULL",
            "avatar_id": ada,
            "is_sandbox": False,
            "avatar_persona": {"voice_id": voice, "language": "de"},
            "video_settings": {"quality": "very_high", "encoding": "H264"},
        }
    ]
    # speech and interruption travelled on the data channel in LiveAvatar's envelope
    commands = [(c.event_type, c.event_id, c.payload.get("text")) for c in vendor.commands]
    assert commands == [
        ("avatar.speak_text", repeat, "Hello, I am your avatar."),
        ("avatar.speak_response", talk, "What can you do?"),
        ("avatar.interrupt", vendor.commands[2].event_id, None),
    ]
    assert all(c.accepted and c.payload["session_id"] == sid for c in vendor.commands)
    assert vendor.spoken()[0] == "Hello, I am your avatar."
    # the first utterance was cut by the interrupt, the queued answer never started
    said = [(r["event_type"], r["source_event_id"]) for r in vendor.responses]
    assert said[:3] == [
        ("avatar.speak_started", repeat),
        ("avatar.transcription", repeat),
        ("avatar.speak_ended", repeat),
    ]
    assert ("avatar.speak_started", talk) not in said
    # keep-alive, then one real stop with the session token and a repeated one with the API key
    assert vendor.keep_alives == 1
    assert vendor.status == "closed"
    assert vendor.end_reason == "USER_CLOSED"
    assert [(s.auth, s.status_before, s.reason) for s in fake.stops] == [
        ("bearer", "active", "USER_CLOSED"),
        ("api_key", "closed", "USER_CLOSED"),
    ]
    assert vendor.responses[-1]["event_type"] == "session.stopped"
    # no secret in any log line
    logged = repr(logs)
    assert API_KEY not in logged
    assert vendor.token not in logged
    assert session.livekit.access_token not in logged


async def test_the_event_stream_says_speaking_then_idle_then_closed_with_the_reason(
    provider: LiveAvatarProvider, ada: str
) -> None:
    sid = (await provider.start_session(Request(avatar_id=ada))).provider_session_id
    reader = Reader(provider, sid)
    await asyncio.sleep(0)

    text = "Nice to meet you, my friend."
    task = await provider.speak(sid, text, "repeat")
    await reader.wait_for(2)
    await provider.stop(sid)
    events = await reader.ended()

    assert reader.types == ["speaking", "idle", "closed"]
    assert events[0].task_id == task
    assert events[0].duration_seconds == estimate_speech_seconds(text)
    assert events[1].task_id == task
    assert events[2].reason == "stopped"
    assert {event.provider_session_id for event in events} == {sid}


async def test_reported_data_channel_events_replace_the_estimates_when_fed(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str
) -> None:
    fake.commands.listen(provider.feed)
    sid = (await provider.start_session(Request(avatar_id=ada))).provider_session_id
    reader = Reader(provider, sid)
    await asyncio.sleep(0)

    task = await provider.speak(sid, "one two three four five", "repeat")  # 2 s on the fake
    await reader.wait_for(1)
    await asyncio.sleep(0.05)
    assert reader.types == ["speaking"]  # no estimated idle: LiveAvatar has not finished yet

    await fake.advance(2)
    await reader.wait_for(2)
    await fake.close_session(sid, "AVATAR_DELETED")
    events = await reader.ended()

    assert reader.types == ["speaking", "idle", "closed"]
    assert [e.task_id for e in events[:2]] == [task, task]
    assert events[2].reason == "avatar_deleted"


async def test_the_session_token_is_dropped_at_stop_and_another_instance_can_take_over(
    fake: FakeLiveAvatar, make_provider: Callable[..., LiveAvatarProvider], ada: str
) -> None:
    first, second = make_provider(), make_provider()
    sid = (await first.start_session(Request(avatar_id=ada))).provider_session_id

    await second.keep_alive(sid)
    task = await second.speak(sid, "I was started elsewhere.", "repeat")
    await second.stop(sid)

    vendor = fake.session(sid)
    assert vendor.keep_alives == 1
    assert vendor.commands[-1].event_id == task
    assert [(s.auth, s.status_before) for s in fake.stops] == [("api_key", "active")]
    with pytest.raises(ConflictError):
        await first.speak(sid, "Still there?", "repeat")


# =========================================================================== the clock


async def test_keep_alive_resets_the_idle_timer(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str
) -> None:
    sid = (await provider.start_session(Request(avatar_id=ada))).provider_session_id

    await fake.advance(200)
    await provider.keep_alive(sid)
    await fake.advance(200)
    assert fake.session(sid).status == "active"

    await fake.advance(101)
    assert fake.session(sid).status == "closed"
    assert fake.session(sid).end_reason == "IDLE_TIMEOUT"


async def test_an_idle_session_closes_on_the_fake_clock_and_keep_alive_then_is_a_conflict(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str
) -> None:
    sid = (await provider.start_session(Request(avatar_id=ada))).provider_session_id
    reader = Reader(provider, sid)

    await fake.advance(301)
    with pytest.raises(ConflictError):
        await provider.keep_alive(sid)

    events = await reader.ended()
    assert fake.session(sid).end_reason == "IDLE_TIMEOUT"
    assert [(e.type, e.reason) for e in events] == [("closed", "idle_timeout")]
    assert sid not in await provider.active_sessions()
    with pytest.raises(ConflictError):
        await provider.speak(sid, "Hello?", "repeat")


async def test_the_duration_cap_ends_the_session_and_speaking_then_is_a_conflict(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str
) -> None:
    fake.tier_max_session_duration = 120
    session = await provider.start_session(Request(avatar_id=ada))
    sid = session.provider_session_id
    reader = Reader(provider, sid)
    assert session.max_duration_seconds == 120

    await fake.advance(100)
    await provider.keep_alive(sid)
    await fake.advance(21)

    with pytest.raises(ConflictError):
        await provider.speak(sid, "Are we still on?", "repeat")
    events = await reader.ended()
    assert fake.session(sid).end_reason == "MAX_DURATION_REACHED"
    assert [(e.type, e.reason) for e in events] == [("closed", "max_duration")]


async def test_a_sandbox_session_uses_wayne_costs_nothing_and_ends_after_a_minute(
    fake: FakeLiveAvatar, make_provider: Callable[..., LiveAvatarProvider], ada: str
) -> None:
    provider = make_provider(sandbox=True)
    credits = fake.credits

    session = await provider.start_session(Request())
    sid = session.provider_session_id
    await fake.advance(61)

    assert fake.token_requests[0]["is_sandbox"] is True
    assert fake.session(sid).avatar_id == WAYNE_AVATAR_ID
    assert session.max_duration_seconds == 60
    assert fake.session(sid).end_reason == "MAX_DURATION_REACHED"
    assert fake.credits == credits
    with pytest.raises(InvalidInputError, match="Wayne"):
        await provider.start_session(Request(avatar_id=ada))


async def test_a_paid_session_costs_two_credits_a_minute(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str
) -> None:
    credits = fake.credits
    sid = (await provider.start_session(Request(avatar_id=ada))).provider_session_id

    await fake.advance(90)
    await provider.stop(sid)

    assert fake.session(sid).credits_consumed == 4  # two minutes started
    assert fake.credits == credits - 4


# =========================================================================== limits and errors


async def test_beyond_the_concurrency_limit_start_is_rate_limited_and_leaves_nothing_behind(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str
) -> None:
    fake.max_concurrent = 2
    first = (await provider.start_session(Request(avatar_id=ada))).provider_session_id
    second = (await provider.start_session(Request(avatar_id=ada))).provider_session_id

    with pytest.raises(RateLimitedError, match="concurrent"):
        await provider.start_session(Request(avatar_id=ada))

    refused = [sid for sid in fake.sessions if sid not in (first, second)]
    assert len(refused) == 1
    assert fake.session(refused[0]).status == "closed"  # the minted session was stopped
    assert set(await provider.active_sessions()) == {first, second}
    assert fake.active_session_ids == {first, second}


async def test_a_bad_api_key_is_an_upstream_error_naming_the_setting_and_not_the_key(
    make_provider: Callable[..., LiveAvatarProvider], ada: str
) -> None:
    wrong_key = "la-wrong-key-0d8c2b6a4f1e"
    provider = make_provider(api_key=wrong_key)

    for call in (
        provider.list_avatars(),
        provider.start_session(Request(avatar_id=ada)),
        provider.active_sessions(),
    ):
        with pytest.raises(UpstreamError) as raised:
            await call
        assert "AVATARSTACK_AVATAR__LIVEAVATAR__API_KEY" in str(raised.value)
        assert wrong_key not in str(raised.value)
        assert API_KEY not in str(raised.value)


@pytest.mark.parametrize(
    "avatar_id",
    [
        "0d5f5c1e-6a55-4a44-8f0e-3c9d2b1a7e66",  # a UUID LiveAvatar does not have
        "Shawn_Therapist_public",  # a legacy HeyGen id
    ],
    ids=["unknown-uuid", "heygen-id"],
)
async def test_an_unknown_avatar_is_not_found_and_starts_nothing(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, avatar_id: str
) -> None:
    with pytest.raises(NotFoundError):
        await provider.start_session(Request(avatar_id=avatar_id))

    assert fake.active_session_ids == set()
    assert await provider.active_sessions() == []


async def test_an_avatar_still_in_training_is_not_offered_and_cannot_start(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider
) -> None:
    training = next(a for a in fake.avatars if a.status == "INIT")

    avatars = await provider.list_avatars()
    with pytest.raises(NotFoundError, match="not ready"):
        await provider.start_session(Request(avatar_id=training.id))

    assert [a.id for a in avatars] == list(fake.active_avatar_ids)
    assert training.id not in {a.id for a in avatars}
    assert all(a.id != training.id for a in avatars)
    ada = avatars[0]
    assert (ada.name, ada.default_voice_id) == ("Ada", fake.voices[0].id)


async def test_long_lists_are_read_page_by_page(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str
) -> None:
    extra = [
        FakeAvatar(id=str(uuid.UUID(int=n)), name=f"Avatar {n} " + "x" * 500) for n in range(150)
    ]
    fake.avatars.extend(extra)
    fake.max_concurrent = 200
    for _ in range(3):
        await provider.start_session(Request(avatar_id=ada))

    avatars = await provider.list_avatars()

    assert len(avatars) == len(fake.active_avatar_ids) == 153
    assert fake.calls["avatars"] == 2  # 100 per page
    assert set(await provider.active_sessions()) == fake.active_session_ids


async def test_a_wrong_base_url_is_an_upstream_error_naming_the_setting(
    fake: FakeLiveAvatar,
) -> None:
    provider = LiveAvatarProvider(
        fake.api_key, fake.base_url + "/api", commands=fake.commands, clock=ManualClock()
    )
    try:
        with pytest.raises(UpstreamError, match="AVATARSTACK_AVATAR__LIVEAVATAR__BASE_URL"):
            await provider.list_avatars()
    finally:
        await provider.close()


async def test_without_an_avatar_id_the_first_ready_avatar_is_used(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str
) -> None:
    sid = (await provider.start_session(Request())).provider_session_id

    assert fake.session(sid).avatar_id == ada


async def test_text_is_checked_before_it_reaches_the_data_channel(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str
) -> None:
    sid = (await provider.start_session(Request(avatar_id=ada))).provider_session_id

    assert provider.max_text_length == MAX_TEXT_LENGTH == 1000
    with pytest.raises(InvalidInputError):
        await provider.speak(sid, "x" * 1001, "repeat")
    with pytest.raises(InvalidInputError):
        await provider.speak(sid, "  ", "talk")
    assert await provider.speak(sid, "y" * 1000, "repeat")
    assert [len(c.payload["text"]) for c in fake.session(sid).commands] == [1000]


async def test_a_session_the_vendor_closed_is_a_conflict_when_the_room_is_gone(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str
) -> None:
    sid = (await provider.start_session(Request(avatar_id=ada))).provider_session_id
    reader = Reader(provider, sid)
    await fake.close_session(sid, "SERVER_ERROR")

    with pytest.raises(ConflictError):
        await provider.interrupt(sid)

    assert [(e.type, e.reason) for e in await reader.ended()] == [("closed", "error")]


async def test_an_unreachable_data_channel_is_unavailable_while_the_session_runs(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str
) -> None:
    sid = (await provider.start_session(Request(avatar_id=ada))).provider_session_id
    fake.commands.unavailable = True

    with pytest.raises(UnavailableError):
        await provider.speak(sid, "Can you hear me?", "repeat")

    assert fake.session(sid).status == "active"


# =========================================================================== faults and retries


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_keep_alive_is_retried_after_a_transient_failure(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str, status: int
) -> None:
    sid = (await provider.start_session(Request(avatar_id=ada))).provider_session_id
    fake.inject("keep-alive", status=status, times=2, retry_after=0.01)

    await provider.keep_alive(sid)

    assert fake.calls["keep-alive"] == 3
    assert fake.session(sid).keep_alives == 1


async def test_keep_alive_gives_up_after_the_retries_with_unavailable(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str
) -> None:
    sid = (await provider.start_session(Request(avatar_id=ada))).provider_session_id
    fake.inject("keep-alive", status=502)

    with pytest.raises(UnavailableError, match="3 attempts"):
        await provider.keep_alive(sid)

    assert fake.calls["keep-alive"] == 3


@pytest.mark.parametrize("route", ["token", "start"])
async def test_minting_and_starting_are_never_retried_and_leave_nothing_running(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str, route: str
) -> None:
    fake.inject(route, status=503, times=1)

    with pytest.raises(UnavailableError):
        await provider.start_session(Request(avatar_id=ada))

    assert fake.calls[route] == 1
    assert fake.active_session_ids == set()
    if route == "start":  # the token step created a session: it was stopped
        (sid,) = fake.sessions
        assert fake.saw_stop(sid)
        assert fake.session(sid).status == "closed"
    assert await provider.start_session(Request(avatar_id=ada))


async def test_a_start_over_the_rate_limit_is_rate_limited_without_a_retry(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str
) -> None:
    fake.inject("start", status=429, retry_after=7)

    with pytest.raises(RateLimitedError) as raised:
        await provider.start_session(Request(avatar_id=ada))

    assert raised.value.retry_after == 7
    assert fake.calls["start"] == 1


async def test_timeouts_are_unavailable_after_retrying_idempotent_calls_only(
    fake: FakeLiveAvatar, make_provider: Callable[..., LiveAvatarProvider], ada: str
) -> None:
    provider = make_provider(timeout=0.2)
    sid = (await provider.start_session(Request(avatar_id=ada))).provider_session_id
    fake.inject("keep-alive", delay=1.0)
    fake.inject("token", delay=1.0)

    with pytest.raises(UnavailableError, match=r"did not answer the keep-alive within 0\.2 s"):
        await provider.keep_alive(sid)
    with pytest.raises(UnavailableError, match="session token"):
        await provider.start_session(Request(avatar_id=ada))

    assert fake.calls["keep-alive"] == 3
    assert fake.calls["token"] == 2  # one successful start, one that timed out once


async def test_a_start_that_times_out_is_stopped_so_nothing_keeps_running(
    fake: FakeLiveAvatar, make_provider: Callable[..., LiveAvatarProvider], ada: str
) -> None:
    provider = make_provider(timeout=0.2)
    fake.inject("start", delay=0.4, times=1)

    with pytest.raises(UnavailableError):
        await provider.start_session(Request(avatar_id=ada))
    await asyncio.sleep(0.4)  # the slow start finishes at the vendor after we gave up

    (sid,) = fake.sessions
    assert fake.saw_stop(sid)
    assert fake.active_session_ids == set()


@pytest.mark.parametrize("fault", ["malformed_json", "data_null"])
@pytest.mark.parametrize("route", ["token", "start"])
async def test_a_broken_answer_to_start_is_an_upstream_error_and_leaves_nothing_running(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str, route: str, fault: str
) -> None:
    fake.inject(route, times=1, **{fault: True})

    with pytest.raises(UpstreamError):
        await provider.start_session(Request(avatar_id=ada))

    assert fake.active_session_ids == set()
    if route == "start":  # the session did start at the vendor: it was stopped again
        (sid,) = fake.sessions
        assert fake.session(sid).end_reason == "USER_CLOSED"


@pytest.mark.parametrize("fault", ["malformed_json", "data_null"])
async def test_a_broken_answer_to_a_list_is_an_upstream_error(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, fault: str
) -> None:
    fake.inject("avatars", **{fault: True})
    fake.inject("sessions", **{fault: True})

    with pytest.raises(UpstreamError):
        await provider.list_avatars()
    with pytest.raises(UpstreamError):
        await provider.active_sessions()


async def test_an_unreachable_server_is_unavailable_and_names_the_base_url_setting(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider
) -> None:
    await fake.stop()

    with pytest.raises(UnavailableError, match="AVATARSTACK_AVATAR__LIVEAVATAR__BASE_URL"):
        await provider.list_avatars()


async def test_the_documented_success_code_100_is_accepted_too(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str
) -> None:
    fake.success_code = 100

    session = await provider.start_session(Request(avatar_id=ada))

    assert session.provider_session_id in fake.active_session_ids


async def test_close_ends_open_event_streams_and_timers(
    provider: LiveAvatarProvider, ada: str
) -> None:
    sid = (await provider.start_session(Request(avatar_id=ada))).provider_session_id
    reader = Reader(provider, sid)
    await provider.speak(sid, "Goodbye for now.", "talk")

    await provider.close()
    await provider.close()

    with pytest.raises(UnavailableError):
        await reader.ended()
    with pytest.raises(UnavailableError):
        await provider.start_session(Request(avatar_id=ada))


# =========================================================================== the fake itself


async def test_the_fake_accepts_start_only_with_the_session_token_and_only_once(
    fake: FakeLiveAvatar, ada: str
) -> None:
    async with aiohttp.ClientSession(base_url=fake.base_url) as http:
        async with http.post(
            "/v1/sessions/token",
            json={"avatar_id": ada, "avatar_persona": {}},
            headers={"x-api-key": fake.api_key},
        ) as response:
            token = (await response.json())["data"]["session_token"]
        async with http.post("/v1/sessions/start", headers={"X-API-KEY": fake.api_key}) as response:
            assert response.status == 401
        bearer = {"authorization": f"bearer {token}"}
        async with http.post("/v1/sessions/start", headers=bearer) as response:
            assert response.status == 201
            body = await response.json()
            assert body["code"] == 1000
            assert "ws_url" not in body["data"]
        async with http.post("/v1/sessions/start", headers=bearer) as response:
            assert response.status == 400
            assert (await response.json())["code"] == 4000
        async with http.get(
            "/v1/sessions", headers={"X-API-KEY": fake.api_key}
        ) as response:  # type is required
            assert response.status == 422
            assert (await response.json())["detail"][0]["loc"] == ["query", "type"]
        async with http.get("/v1/nothing-here") as response:
            assert response.status == 404


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"mode": "CUSTOM"}, 422),
        ({"video_settings": {"quality": "ultra"}}, 422),
        ({"avatar_persona": None}, 422),
        ({"avatar_persona": {"voice_id": "0d5f5c1e-6a55-4a44-8f0e-3c9d2b1a7e66"}}, 400),
        ({"max_session_duration": 99_999}, 400),
        ({"video_quality": "high"}, 200),  # unknown keys are ignored, as LiveKit's client needs
    ],
)
async def test_the_fake_validates_token_requests_like_liveavatar(
    fake: FakeLiveAvatar, ada: str, change: dict[str, Any], status: int
) -> None:
    body = {"mode": "FULL", "avatar_id": ada, "avatar_persona": {}, **change}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            fake.base_url + "/v1/sessions/token", json=body, headers={"X-API-KEY": fake.api_key}
        ) as response,
    ):
        assert response.status == status, await response.text()


async def test_talk_answers_from_the_context_and_the_transcript_records_both_sides(
    fake: FakeLiveAvatar, make_provider: Callable[..., LiveAvatarProvider], ada: str
) -> None:
    fake.seconds_per_word = 0
    context = fake.add_context("Support desk", "Help ${customer}.", "Hello ${customer}!")
    provider = make_provider(context_id=context.id)

    with pytest.raises(UpstreamError, match="customer"):  # a required dynamic variable
        await provider.start_session(Request(avatar_id=ada))
    fake.contexts[context.id].prompt = fake.contexts[context.id].opening_text = "Hello!"
    sid = (await provider.start_session(Request(avatar_id=ada))).provider_session_id
    await provider.speak(sid, "Where is my parcel?", "talk")
    await fake.commands.inject_user_speech(sid, "Thanks!")

    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{fake.base_url}/v1/sessions/{sid}/transcript", headers={"X-API-KEY": API_KEY}
        ) as response,
    ):
        transcript = (await response.json())["data"]
    assert transcript["session_active"] is True
    assert [(e["role"], e["transcript"]) for e in transcript["transcript_data"]] == [
        ("avatar", "Hello!"),
        ("user", "Where is my parcel?"),
        ("avatar", "This is Support desk. You said: Where is my parcel?"),
        ("user", "Thanks!"),
    ]


async def test_the_fake_rate_limits_per_credential_and_route_when_asked(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider
) -> None:
    fake.rate_limit_per_second = 1
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(2):
            async with http.get(
                f"{fake.base_url}/v1/voices", headers={"X-API-KEY": API_KEY}
            ) as response:
                statuses.append(response.status)
                reset = response.headers.get("X-RateLimit-Reset")
    assert statuses == [200, 429]
    assert reset == "1"
    await provider.list_avatars()  # another route: its own window (and retried on 429)


async def test_the_fake_lite_websocket_speaks_audio_on_the_clock(
    fake: FakeLiveAvatar, ada: str
) -> None:
    headers = {"X-API-KEY": fake.api_key}
    async with aiohttp.ClientSession(base_url=fake.base_url) as http:
        async with http.post(
            "/v1/sessions/token", json={"mode": "LITE", "avatar_id": ada}, headers=headers
        ) as response:
            token = (await response.json())["data"]["session_token"]
        async with http.post(
            "/v1/sessions/start", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            started = (await response.json())["data"]
        async with http.ws_connect(started["ws_url"]) as ws:

            async def receive() -> dict[str, Any]:
                message: dict[str, Any] = await asyncio.wait_for(ws.receive_json(), 2)
                return message

            assert (await receive())["state"] == "connecting"
            assert (await receive())["state"] == "connected"
            audio = "AAAA" * 12_000  # 36 000 bytes of PCM16 = 0.75 s at 24 kHz
            await ws.send_json({"type": "agent.speak", "event_id": "u1", "audio": audio})
            assert await receive() == {
                "type": "agent.speak_started",
                "event_id": "u1",
                "task": {"id": "u1"},
            }
            await ws.send_json({"type": "agent.speak_end", "event_id": "u1"})
            await asyncio.sleep(0.05)
            await fake.advance(1)
            assert (await receive())["type"] == "agent.speak_ended"
            await fake.close_session(started["session_id"], "USER_CLOSED")
            assert (await receive())["state"] == "closing"
            assert (await receive())["state"] == "closed"
    session = fake.session(started["session_id"])
    assert [m.outcome for m in session.ws_messages] == ["accepted", "accepted"]


# =========================================================================== the plugin


def _plugin() -> ModuleType:
    from avatarstack.plugins.builtin import liveavatar

    return liveavatar


@pytest.mark.parametrize("api_key", [None, API_KEY])
async def test_the_builtin_plugin_registers_liveavatar_only_when_the_key_is_set(
    fake: FakeLiveAvatar, clock: ManualClock, api_key: str | None
) -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    if pm.get_plugin("liveavatar") is None:
        pm.register_plugin(_plugin(), "liveavatar")
    liveavatar: dict[str, Any] = {"base_url": fake.base_url}
    if api_key is not None:
        liveavatar["api_key"] = api_key
    settings = Settings(load_plugins="", avatar={"liveavatar": liveavatar})

    providers: dict[str, AvatarProvider] = collect(
        pm,
        "register_avatar_providers",
        key=lambda p: p.name,
        kind="avatar provider",
        settings=settings,
        context=AvatarProviderContext(clock=clock, commands=fake.commands),
    )

    if api_key is None:
        assert "liveavatar" not in providers
        return
    provider = providers["liveavatar"]
    try:
        assert {a.id for a in await provider.list_avatars()} == set(fake.active_avatar_ids)
    finally:
        await provider.close()


# --------------------------------------------------------------------------- voices, languages


async def test_voices_are_the_accounts_own_then_the_public_ones_each_across_pages(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider
) -> None:
    fake.voices.extend(FakeVoice(id=str(uuid.uuid4()), name=f"Extra {n}") for n in range(120))

    voices = await provider.list_voices()

    assert voices[0].name == "My cloned voice"  # voice_type=private comes first
    assert len(voices) == len(fake.voices)
    june = next(v for v in voices if v.name == "June")
    assert (june.language, june.gender) == ("en", "female")
    sent = [r for r in fake.requests if r.startswith("GET /v1/voices")]
    assert len(sent) == 3  # private: one page; public: two pages of 100


async def test_languages_are_the_voices_language_codes(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider
) -> None:
    fake.voices.append(FakeVoice(id=str(uuid.uuid4()), name="Odd", language="Klingon language"))

    assert await provider.list_languages() == ["de", "en"]


async def test_a_chosen_voice_and_language_reach_the_session_persona(
    fake: FakeLiveAvatar, provider: LiveAvatarProvider, ada: str
) -> None:
    lena = next(v for v in await provider.list_voices() if v.name == "Lena")

    session = await provider.start_session(Request(avatar_id=ada, voice_id=lena.id, language="de"))

    persona = fake.session(session.provider_session_id).config["avatar_persona"]
    assert (persona["voice_id"], persona["language"]) == (lena.id, "de")


async def test_listing_voices_maps_errors_like_the_other_lists(
    fake: FakeLiveAvatar, make_provider: Callable[..., LiveAvatarProvider]
) -> None:
    wrong_key = "la-wrong-key-0d8c2b6a4f1e"
    with pytest.raises(UpstreamError, match="AVATARSTACK_AVATAR__LIVEAVATAR__API_KEY") as raised:
        await make_provider(api_key=wrong_key).list_voices()
    assert wrong_key not in str(raised.value)

    fake.inject("voices", malformed_json=True)
    with pytest.raises(UpstreamError):
        await make_provider().list_voices()

    fake.clear_faults()
    fake.inject("voices", status=503)
    with pytest.raises(UnavailableError):
        await make_provider().list_voices()


async def test_the_fake_validates_the_voice_lists_paging_and_needs_the_api_key(
    fake: FakeLiveAvatar,
) -> None:
    async with aiohttp.ClientSession() as http:
        answers = []
        for query, headers in (
            ({"page_size": "101"}, {"X-API-KEY": API_KEY}),
            ({"page": "0"}, {"X-API-KEY": API_KEY}),
            ({"voice_type": "cloned"}, {"X-API-KEY": API_KEY}),
            ({}, {}),
        ):
            async with http.get(
                f"{fake.base_url}/v1/voices", params=query, headers=headers
            ) as response:
                answers.append(response.status)
    assert answers[:3] == [422, 422, 422]
    assert answers[3] in (401, 403)
