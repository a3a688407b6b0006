"""The HeyGen Interactive Avatar provider against the fake HeyGen server on 127.0.0.1.

The fake and the provider share one ManualClock: idle timeouts and the duration cap happen when a
test advances it, never by sleeping. Speech takes no time (``speech_time_scale=0``) unless a test
needs an utterance to last.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
import structlog

from avatarstack.adapters.heygen import (
    API_KEY_SETTING,
    MAX_TEXT_LENGTH,
    STREAMING_LANGUAGES,
    HeyGenAvatarProvider,
)
from avatarstack.bootstrap.settings import AvatarSettings, HeyGenSettings, Settings
from avatarstack.core.speech import estimate_speech_seconds
from avatarstack.plugins.builtin import heygen as heygen_plugin
from avatarstack.plugins.manager import PluginManager, collect
from avatarstack.ports.avatar import (
    AvatarEvent,
    AvatarProvider,
    AvatarProviderContext,
    SessionRequest,
)
from avatarstack.ports.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
    UnavailableError,
    UpstreamError,
)
from avatarstack.testkit.clock import ManualClock
from avatarstack.testkit.heygen import (
    CONCURRENT_LIMIT_MESSAGE,
    ROUTES,
    SESSION_STATE_CODE,
    FakeAvatar,
    FakeHeyGen,
)

# =========================================================================== fixtures


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def heygen(clock: ManualClock) -> AsyncIterator[FakeHeyGen]:
    async with FakeHeyGen(clock=clock) as server:
        yield server


def make_provider(heygen: FakeHeyGen, clock: ManualClock, **options: Any) -> HeyGenAvatarProvider:
    values: dict[str, Any] = {
        "clock": clock,
        "timeout": 2.0,
        "retries": 2,
        "backoff": 0.01,
        "speech_time_scale": 0.0,
    }
    values.update(options)
    api_key = values.pop("api_key", heygen.api_key)
    return HeyGenAvatarProvider(api_key, heygen.base_url, **values)


@pytest.fixture
async def provider(heygen: FakeHeyGen, clock: ManualClock) -> AsyncIterator[HeyGenAvatarProvider]:
    instance = make_provider(heygen, clock)
    yield instance
    await instance.close()


def a_request(heygen: FakeHeyGen, **values: Any) -> SessionRequest:
    return SessionRequest(avatar_id=heygen.avatar_ids[0], **values)


async def next_events(
    provider: HeyGenAvatarProvider, session_id: str, count: int
) -> list[AvatarEvent]:
    """The next ``count`` events of a session (fails after 2 s instead of hanging)."""
    events: list[AvatarEvent] = []

    async def read() -> None:
        async for event in provider.events(session_id):
            events.append(event)
            if len(events) == count:
                return

    await asyncio.wait_for(read(), 2.0)
    return events


async def call_for(
    route: str, provider: HeyGenAvatarProvider, heygen: FakeHeyGen, session_id: str
) -> object:
    """The provider call that sends a request to ``route`` (session calls use ``session_id``)."""
    if route == "task":
        return await provider.speak(session_id, "Hello there.", "repeat")
    if route == "avatar.list":
        return await provider.list_avatars()
    if route == "list":
        return await provider.active_sessions()
    return await provider.start_session(a_request(heygen))  # create_token, new, start


def routes_and_credentials(heygen: FakeHeyGen) -> list[tuple[str | None, str]]:
    return [(r.route, r.credential) for r in heygen.requests]


# =========================================================================== a whole session


async def test_a_session_is_token_then_new_then_start_and_returns_livekit_credentials_only(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    session = await provider.start_session(
        a_request(heygen, voice_id="voice-1", language="en", idle_timeout_seconds=60)
    )

    fake = heygen.session(session.provider_session_id)
    assert fake.status == "active"
    assert session.livekit is not None
    assert session.livekit.url == "wss://fake-livekit.invalid"
    assert session.livekit.access_token == fake.access_token
    assert session.max_duration_seconds == 600
    assert session.idle_timeout_seconds == 60
    shown = session.model_dump_json() + repr(session)
    assert heygen.api_key not in shown
    assert heygen.issued_tokens[0] not in shown  # the session token stays on the server
    assert routes_and_credentials(heygen) == [
        ("create_token", "api_key"),
        ("new", "bearer"),
        ("start", "bearer"),
    ]
    assert fake.request == {
        "version": "v2",
        "avatar_id": heygen.avatar_ids[0],
        "voice": {"voice_id": "voice-1"},
        "language": "en",
        "activity_idle_timeout": 60,
        "video_encoding": "H264",
    }


@pytest.mark.parametrize(
    ("quality", "sent"),
    [("very_high", "high"), ("high", "high"), ("medium", "medium"), ("low", "low"), (None, None)],
)
async def test_quality_is_mapped_to_the_three_heygen_knows(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider, quality: Any, sent: str | None
) -> None:
    session = await provider.start_session(a_request(heygen, quality=quality))

    assert heygen.session(session.provider_session_id).request.get("quality") == sent


@pytest.mark.parametrize(("asked", "used"), [(None, 120), (10, 30), (90, 90), (10_000, 3600)])
async def test_the_idle_timeout_is_kept_within_heygens_range_and_reported_back(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider, asked: int | None, used: int
) -> None:
    session = await provider.start_session(a_request(heygen, idle_timeout_seconds=asked))

    assert session.idle_timeout_seconds == used
    assert heygen.session(session.provider_session_id).activity_idle_timeout == used


async def test_repeat_and_talk_reach_heygen_as_async_tasks_of_that_type(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    session = await provider.start_session(a_request(heygen))
    sid = session.provider_session_id

    first = await provider.speak(sid, "Hello, I am your guide.", "repeat")
    second = await provider.speak(sid, "  What can you tell me about Lisbon?  ", "talk")

    told = [(t.task_id, t.text, t.task_type, t.task_mode) for t in heygen.session(sid).tasks]
    assert told == [
        (first, "Hello, I am your guide.", "repeat", "async"),
        (second, "What can you tell me about Lisbon?", "talk", "async"),
    ]
    assert [r.credential for r in heygen.requests if r.route == "task"] == ["bearer", "bearer"]


async def test_events_go_speaking_then_idle_for_each_task_then_closed_on_stop(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    session = await provider.start_session(a_request(heygen))
    sid = session.provider_session_id
    first = await provider.speak(sid, "One.", "repeat")
    second = await provider.speak(sid, "And two.", "repeat")

    spoken = await next_events(provider, sid, 4)
    await provider.stop(sid)
    closing = await next_events(provider, sid, 1)

    assert [(e.type, e.task_id) for e in spoken] == [
        ("speaking", first),
        ("idle", first),
        ("speaking", second),
        ("idle", second),
    ]
    durations = [t.duration_ms / 1000 for t in heygen.session(sid).tasks]
    assert [spoken[0].duration_seconds, spoken[2].duration_seconds] == durations
    assert [(e.type, e.reason) for e in closing] == [("closed", "stopped")]
    assert all(e.provider_session_id == sid for e in spoken + closing)


async def test_a_late_listener_still_gets_the_closed_event(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    session = await provider.start_session(a_request(heygen))
    await provider.stop(session.provider_session_id)
    await next_events(provider, session.provider_session_id, 1)

    again = await next_events(provider, session.provider_session_id, 1)

    assert [(e.type, e.reason) for e in again] == [("closed", "stopped")]


async def test_the_speaking_time_is_estimated_when_heygen_sends_no_duration(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    heygen.rewrite("task", lambda data: {"task_id": data["task_id"], "duration_ms": None})
    session = await provider.start_session(a_request(heygen))
    text = "This sentence has exactly seven words."

    await provider.speak(session.provider_session_id, text, "repeat")
    speaking = await next_events(provider, session.provider_session_id, 1)

    assert speaking[0].duration_seconds == estimate_speech_seconds(text)


async def test_interrupt_reaches_heygen_and_ends_the_current_utterance(
    heygen: FakeHeyGen, clock: ManualClock
) -> None:
    provider = make_provider(heygen, clock, speech_time_scale=1.0)  # utterances take time
    try:
        session = await provider.start_session(a_request(heygen))
        sid = session.provider_session_id
        task_id = await provider.speak(sid, "A rather long sentence to be cut short.", "repeat")
        queued = await provider.speak(sid, "Never said.", "repeat")

        await provider.interrupt(sid)
        events = await next_events(provider, sid, 2)

        assert [(e.type, e.task_id, e.reason) for e in events] == [
            ("speaking", task_id, None),
            ("idle", task_id, "interrupted"),
        ]
        fake = heygen.session(sid)
        assert fake.interrupts == 1
        assert [t.interrupted for t in fake.tasks] == [True, True]
        assert queued not in {e.task_id for e in events}
    finally:
        await provider.close()


async def test_keep_alive_resets_heygens_idle_timeout(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    session = await provider.start_session(a_request(heygen, idle_timeout_seconds=60))
    sid = session.provider_session_id

    for _ in range(3):
        await heygen.advance(50)
        await provider.keep_alive(sid)

    fake = heygen.session(sid)
    assert fake.status == "active"
    assert fake.keep_alives == 3
    assert [r.credential for r in heygen.requests if r.route == "keep_alive"] == ["bearer"] * 3


async def test_an_idle_session_is_closed_by_heygen_and_the_next_call_is_a_conflict(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    session = await provider.start_session(a_request(heygen, idle_timeout_seconds=60))
    sid = session.provider_session_id

    closed = await heygen.advance(61)
    with pytest.raises(ConflictError, match="closed or not started"):
        await provider.keep_alive(sid)
    events = await next_events(provider, sid, 1)

    assert [s.session_id for s in closed] == [sid]
    assert heygen.session(sid).close_reason == "idle_timeout"
    assert [(e.type, e.reason) for e in events] == [("closed", "idle_timeout")]
    with pytest.raises(ConflictError, match="idle_timeout"):
        await provider.speak(sid, "Too late.", "repeat")
    assert heygen.calls("task") == 0


async def test_speaking_counts_as_activity_for_the_idle_timeout(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    session = await provider.start_session(a_request(heygen, idle_timeout_seconds=30))
    sid = session.provider_session_id
    await provider.speak(sid, "x" * 800, "repeat")  # 48 s at the fake's 60 ms per character

    await heygen.advance(70)

    assert heygen.session(sid).status == "active"
    await provider.keep_alive(sid)


async def test_the_duration_cap_closes_the_session_even_with_keep_alives(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    heygen.session_duration_limit = 300
    session = await provider.start_session(a_request(heygen, idle_timeout_seconds=120))
    sid = session.provider_session_id
    assert session.max_duration_seconds == 300

    for _ in range(2):
        await heygen.advance(100)
        await provider.keep_alive(sid)
    await heygen.advance(101)
    with pytest.raises(ConflictError):
        await provider.speak(sid, "Still there?", "repeat")
    events = await next_events(provider, sid, 1)

    assert heygen.session(sid).close_reason == "max_duration"
    assert [(e.type, e.reason) for e in events] == [("closed", "max_duration")]


async def test_a_session_token_rejected_after_the_cap_falls_back_to_the_api_key(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    heygen.duration_close_answer = "unauthorized"  # what users report at the one-hour mark
    session = await provider.start_session(a_request(heygen, idle_timeout_seconds=3600))
    sid = session.provider_session_id
    await heygen.advance(601)

    with pytest.raises(ConflictError):
        await provider.speak(sid, "Hello?", "repeat")

    assert [r.credential for r in heygen.requests if r.route == "task"] == ["bearer", "api_key"]
    assert heygen.tasks == []


async def test_stop_ends_the_session_and_a_second_stop_succeeds(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    session = await provider.start_session(a_request(heygen))
    sid = session.provider_session_id

    await provider.stop(sid)
    await provider.stop(sid)

    fake = heygen.session(sid)
    assert (fake.status, fake.close_reason) == ("closed", "stopped")
    assert heygen.stop_calls == [sid]
    assert heygen.open_sessions() == []
    assert await provider.active_sessions() == []


async def test_speaking_after_stop_is_a_conflict(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    session = await provider.start_session(a_request(heygen))
    await provider.stop(session.provider_session_id)

    with pytest.raises(ConflictError, match="start a new session"):
        await provider.speak(session.provider_session_id, "Hello?", "repeat")
    with pytest.raises(ConflictError):
        await provider.keep_alive(session.provider_session_id)


@pytest.mark.parametrize("strict_stop", [False, True])
async def test_after_a_restart_sessions_are_found_and_stopped_with_the_api_key(
    heygen: FakeHeyGen, clock: ManualClock, strict_stop: bool
) -> None:
    heygen.strict_stop = strict_stop  # stopping an ended session: 200, or 400006 if strict
    before = make_provider(heygen, clock)
    running = await before.start_session(a_request(heygen))
    ended = await before.start_session(a_request(heygen))
    await before.stop(ended.provider_session_id)
    await before.close()

    after = make_provider(heygen, clock)  # knows no session and no token
    try:
        found = await after.active_sessions()
        await after.keep_alive(running.provider_session_id)
        for sid in [*found, ended.provider_session_id]:
            await after.stop(sid)
    finally:
        await after.close()

    assert found == [running.provider_session_id]
    assert heygen.open_sessions() == []
    assert [r.credential for r in heygen.requests if r.route == "stop"][-2:] == [
        "api_key",
        "api_key",
    ]


# =========================================================================== refusals


async def test_the_concurrency_limit_is_a_rate_limit_until_a_session_is_stopped(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    sessions = [await provider.start_session(a_request(heygen)) for _ in range(3)]

    with pytest.raises(RateLimitedError, match="concurrent sessions") as caught:
        await provider.start_session(a_request(heygen))
    await provider.stop(sessions[0].provider_session_id)
    fourth = await provider.start_session(a_request(heygen))

    assert caught.value.retry_after > 0
    assert len(heygen.open_sessions()) == 3
    assert heygen.session(fourth.provider_session_id).status == "active"


async def test_the_concurrency_limit_is_recognised_by_its_message_whatever_the_code(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    heygen.fail("new", status=400, code=123456, message=CONCURRENT_LIMIT_MESSAGE)

    with pytest.raises(RateLimitedError):
        await provider.start_session(a_request(heygen))


async def test_a_bad_api_key_names_the_setting_and_never_the_key(
    heygen: FakeHeyGen, clock: ManualClock
) -> None:
    secret = "hg-wrong-key-4242"
    provider = make_provider(heygen, clock, api_key=secret)
    try:
        for call in (
            provider.start_session(a_request(heygen)),
            provider.list_avatars(),
            provider.active_sessions(),
            provider.keep_alive("3bd5e9b0-0000-11ef-0000-000000000000"),
        ):
            with pytest.raises(UpstreamError) as caught:
                await call
            assert API_KEY_SETTING in str(caught.value)
            assert secret not in str(caught.value)
            assert secret not in repr(caught.value)
        assert secret not in repr(provider)
    finally:
        await provider.close()
    assert heygen.sessions == {}


async def test_a_revoked_key_is_rejected_like_a_bad_one(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    heygen.revoke_api_key()

    with pytest.raises(UpstreamError, match=API_KEY_SETTING):
        await provider.start_session(a_request(heygen))


@pytest.mark.parametrize("avatar_id", ["No_such_avatar", "Old_avatar_2023"])
async def test_an_unknown_or_inactive_avatar_is_not_found(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider, avatar_id: str
) -> None:
    with pytest.raises(NotFoundError, match=avatar_id):
        await provider.start_session(SessionRequest(avatar_id=avatar_id))

    assert heygen.sessions == {}
    assert heygen.calls("start") == 0


async def test_without_an_avatar_heygen_picks_the_default_one(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    session = await provider.start_session(SessionRequest())

    assert heygen.session(session.provider_session_id).avatar_id == heygen.avatar_ids[0]
    assert "avatar_id" not in heygen.session(session.provider_session_id).request


@pytest.mark.parametrize("text", ["", "   ", "x" * (MAX_TEXT_LENGTH + 1)])
async def test_empty_or_too_long_text_is_invalid_and_never_sent(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider, text: str
) -> None:
    session = await provider.start_session(a_request(heygen))

    with pytest.raises(InvalidInputError):
        await provider.speak(session.provider_session_id, text, "repeat")

    assert heygen.calls("task") == 0


async def test_the_longest_allowed_text_is_accepted_by_heygen(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    session = await provider.start_session(a_request(heygen))

    await provider.speak(session.provider_session_id, "y" * MAX_TEXT_LENGTH, "repeat")

    assert (heygen.max_text_length or 0) > MAX_TEXT_LENGTH
    assert len(heygen.tasks[0].text) == MAX_TEXT_LENGTH


async def test_a_session_heygen_does_not_know_is_a_conflict_and_stopping_it_succeeds(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    unknown = "0f0e0d0c-0000-11ef-0000-000000000000"

    with pytest.raises(ConflictError, match="start a new session"):
        await provider.speak(unknown, "Hello?", "repeat")
    with pytest.raises(ConflictError):
        await provider.interrupt(unknown)
    await provider.stop(unknown)

    with pytest.raises(ConflictError):
        await anext(aiter(provider.events(unknown)))
    assert heygen.calls("task") == heygen.calls("interrupt") == 1


async def test_close_ends_open_event_streams_and_leaves_sessions_to_the_caller(
    heygen: FakeHeyGen, clock: ManualClock
) -> None:
    provider = make_provider(heygen, clock, speech_time_scale=1.0)
    session = await provider.start_session(a_request(heygen))
    await provider.speak(session.provider_session_id, "A long goodbye, said slowly.", "repeat")
    seen: list[AvatarEvent] = []

    async def read() -> None:
        async for event in provider.events(session.provider_session_id):
            seen.append(event)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.01)
    await provider.close()
    await asyncio.wait_for(reader, 2.0)

    assert [e.type for e in seen] == ["speaking"]
    assert heygen.session(session.provider_session_id).status == "active"


# =========================================================================== retries and failures


async def test_a_5xx_on_keep_alive_is_retried_and_then_succeeds(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    session = await provider.start_session(a_request(heygen))
    heygen.fail("keep_alive", status=503, times=2)

    await provider.keep_alive(session.provider_session_id)

    assert heygen.calls("keep_alive") == 3
    assert heygen.session(session.provider_session_id).keep_alives == 1


async def test_a_5xx_that_lasts_beyond_the_retries_is_unavailable(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    heygen.fail("avatar.list", status=502, times=None)

    with pytest.raises(UnavailableError, match="HTTP 502"):
        await provider.list_avatars()

    assert heygen.calls("avatar.list") == 3


@pytest.mark.parametrize("route", ["create_token", "new", "task"])
async def test_a_5xx_on_a_call_that_is_not_idempotent_is_not_retried(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider, route: str
) -> None:
    session = await provider.start_session(a_request(heygen))
    heygen.requests.clear()
    heygen.fail(route, status=500)

    with pytest.raises(UnavailableError):
        await call_for(route, provider, heygen, session.provider_session_id)

    assert heygen.calls(route) == 1
    assert len(heygen.sessions) == 1


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"status": 500}, UnavailableError),
        ({"status": 400, "code": SESSION_STATE_CODE}, UpstreamError),
        ({"status": 401, "code": 400112, "times": 2}, UpstreamError),  # token, then API key
        ({"malformed_json": True}, UpstreamError),
    ],
)
async def test_a_failure_at_start_stops_the_created_session(
    heygen: FakeHeyGen,
    provider: HeyGenAvatarProvider,
    fault: Mapping[str, Any],
    error: type[Exception],
) -> None:
    heygen.fail("start", **fault)

    with pytest.raises(error):
        await provider.start_session(a_request(heygen))

    [session] = heygen.sessions.values()
    assert (session.status, session.close_reason) == ("closed", "stopped")
    assert heygen.stop_calls == [session.session_id]
    assert heygen.calls("start") == fault.get("times", 1)


async def test_a_new_session_without_livekit_credentials_is_stopped_and_reported(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    heygen.rewrite("new", lambda data: {**data, "access_token": None})

    with pytest.raises(UpstreamError, match="LiveKit"):
        await provider.start_session(a_request(heygen))

    [session] = heygen.sessions.values()
    assert session.close_reason == "stopped"
    assert heygen.calls("start") == 0


async def test_a_slow_answer_times_out_as_unavailable(
    heygen: FakeHeyGen, clock: ManualClock
) -> None:
    provider = make_provider(heygen, clock, timeout=0.2, start_timeout=0.2)
    try:
        session = await provider.start_session(a_request(heygen))
        sid = session.provider_session_id

        heygen.fail("task", delay=1.0)
        with pytest.raises(UnavailableError, match=r"within 0\.2 s"):
            await provider.speak(sid, "Slowly.", "repeat")
        heygen.fail("keep_alive", delay=1.0, times=None)
        with pytest.raises(UnavailableError, match="3 attempts"):
            await provider.keep_alive(sid)
        heygen.fail("new", delay=1.0)
        with pytest.raises(UnavailableError):
            await provider.start_session(a_request(heygen))
    finally:
        await provider.close()

    assert (heygen.calls("task"), heygen.calls("keep_alive"), heygen.calls("new")) == (1, 3, 2)


async def test_an_unreachable_heygen_is_unavailable(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    await heygen.stop()

    with pytest.raises(UnavailableError, match="cannot be reached"):
        await provider.active_sessions()
    with pytest.raises(UnavailableError):
        await provider.start_session(a_request(heygen))


@pytest.mark.parametrize(
    ("route", "fault"),
    [
        ("create_token", {"null_data": True}),
        ("new", {"malformed_json": True}),
        ("new", {"null_data": True}),
        ("task", {"malformed_json": True}),
        ("task", {"null_data": True}),
        ("avatar.list", {"null_data": True}),
        ("list", {"malformed_json": True}),
    ],
)
async def test_malformed_json_or_null_data_is_an_upstream_error(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider, route: str, fault: dict[str, bool]
) -> None:
    session = await provider.start_session(a_request(heygen))
    heygen.fail(route, **fault)

    with pytest.raises(UpstreamError, match="API may have changed"):
        await call_for(route, provider, heygen, session.provider_session_id)

    # HeyGen created the session but its answer broke: its id is unknown, so it cannot be stopped
    assert len(heygen.sessions) == (2 if route == "new" else 1)


async def test_an_empty_data_on_calls_whose_answer_clients_ignore_is_fine(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    heygen.fail("start", null_data=True)
    session = await provider.start_session(a_request(heygen))
    heygen.fail("keep_alive", null_data=True)

    await provider.keep_alive(session.provider_session_id)

    assert heygen.session(session.provider_session_id).status == "active"


# =========================================================================== field-name variants


async def test_avatars_are_read_from_either_list_shape_and_only_active_ones_are_offered(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    direct = await provider.list_avatars()

    def sdk_style(data: list[dict[str, Any]]) -> dict[str, Any]:
        rows = [
            {
                "avatar_id": row["avatar_id"],
                "pose_name": row["pose_name"],
                "status": row["status"].lower(),
                "preview_image_url": row["normal_preview"],
                "default_voice": {"voice_id": row["default_voice"]},
            }
            for row in data
        ]
        return {"avatars": [*rows, rows[0], {"pose_name": "no id"}, "junk"]}

    heygen.rewrite("avatar.list", sdk_style)
    wrapped = await provider.list_avatars()

    assert [a.id for a in direct] == heygen.avatar_ids
    assert direct == wrapped
    assert direct[0].name == "Anna in Brown T-shirt"
    assert direct[0].default_voice_id == "1bd001e7e50f421d891986aad5158bc8"
    assert (direct[0].preview_url or "").endswith("Anna_public_3_20240108.webp")


async def test_avatars_without_status_or_name_are_offered_under_their_id(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    heygen.avatars = [FakeAvatar("Bare_avatar", "ignored")]
    heygen.rewrite("avatar.list", lambda data: [{"avatar_id": row["avatar_id"]} for row in data])

    [avatar] = await provider.list_avatars()

    assert (avatar.id, avatar.name, avatar.preview_url) == ("Bare_avatar", "Bare_avatar", None)


async def test_a_new_session_answer_with_other_names_and_no_limits_is_accepted(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    def liveavatar_names(data: dict[str, Any]) -> dict[str, Any]:
        return {
            "session_id": data["session_id"],
            "livekit_url": data["url"],
            "livekit_client_token": data["access_token"],
        }

    heygen.rewrite("new", liveavatar_names)
    session = await provider.start_session(a_request(heygen))

    assert session.livekit is not None
    assert session.livekit.url == "wss://fake-livekit.invalid"
    assert session.max_duration_seconds is None
    assert heygen.session(session.provider_session_id).status == "active"


async def test_running_sessions_are_read_from_either_list_shape(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    session = await provider.start_session(a_request(heygen))
    nested = await provider.active_sessions()

    heygen.rewrite("list", lambda data: data["sessions"])
    flat = await provider.active_sessions()

    assert nested == flat == [session.provider_session_id]


async def test_a_task_answer_without_a_task_id_still_counts_as_spoken(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    heygen.rewrite("task", lambda data: {"duration_ms": data["duration_ms"]})
    session = await provider.start_session(a_request(heygen))

    task_id = await provider.speak(session.provider_session_id, "Hello.", "repeat")

    assert task_id.startswith("local-")
    assert heygen.calls("task") == 1


# =========================================================================== secrets and plugin


async def test_neither_the_api_key_nor_a_session_token_is_ever_logged(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    with structlog.testing.capture_logs() as logs:
        session = await provider.start_session(a_request(heygen))
        await provider.speak(session.provider_session_id, "Hi.", "talk")
        heygen.fail("keep_alive", status=500)
        await provider.keep_alive(session.provider_session_id)
        await provider.stop(session.provider_session_id)
        heygen.fail("new", status=401, code=400112, times=2)
        with pytest.raises(UpstreamError):
            await provider.start_session(a_request(heygen))

    written = repr(logs)
    assert logs
    assert heygen.api_key not in written
    assert all(token not in written for token in heygen.issued_tokens)


class _NoCommands:
    async def send(self, provider_session_id: str, command: Mapping[str, Any]) -> None:
        raise UnavailableError("no command channel in this test")


def avatar_providers(settings: Settings, clock: ManualClock) -> dict[str, AvatarProvider]:
    pm = PluginManager()
    pm.register_plugin(heygen_plugin, "heygen-under-test", builtin=True)
    return collect(
        pm,
        "register_avatar_providers",
        key=lambda provider: provider.name,
        kind="avatar provider",
        settings=settings,
        context=AvatarProviderContext(clock=clock, commands=_NoCommands()),
    )


async def test_the_builtin_plugin_registers_heygen_only_when_an_api_key_is_set(
    heygen: FakeHeyGen, clock: ManualClock
) -> None:
    configured = Settings(
        avatar=AvatarSettings(
            heygen=HeyGenSettings(api_key=heygen.api_key, base_url=heygen.base_url)
        )
    )

    registered = avatar_providers(configured, clock)
    provider = registered["heygen"]
    try:
        avatars = await provider.list_avatars()
    finally:
        await provider.close()

    assert isinstance(provider, HeyGenAvatarProvider)
    assert [a.id for a in avatars] == heygen.avatar_ids
    assert heygen.api_key not in repr(provider)
    assert avatar_providers(Settings(), clock) == {}


# =========================================================================== the fake's own rules


async def raw(
    heygen: FakeHeyGen,
    route: str,
    body: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    """One request to the fake as a bare client would send it; ``(status, JSON body)``."""
    method, path = ROUTES[route]
    sent = {"x-api-key": heygen.api_key} if headers is None else dict(headers)
    async with (
        aiohttp.ClientSession() as client,
        client.request(
            method, heygen.base_url + path, json=body, headers=sent, params=query
        ) as response,
    ):
        return response.status, await response.json(content_type=None)


async def new_token(heygen: FakeHeyGen) -> str:
    status, answer = await raw(heygen, "create_token")
    assert status == 200
    return str(answer["data"]["token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_fake_lets_a_session_token_create_one_session_and_use_only_that_one(
    heygen: FakeHeyGen,
) -> None:
    token, other = await new_token(heygen), await new_token(heygen)
    new_body = {"version": "v2", "avatar_id": heygen.avatar_ids[0]}

    first = await raw(heygen, "new", new_body, headers=bearer(token))
    second = await raw(heygen, "new", new_body, headers=bearer(token))
    sid = first[1]["data"]["session_id"]
    started = await raw(heygen, "start", {"session_id": sid}, headers=bearer(token))
    foreign = await raw(heygen, "keep_alive", {"session_id": sid}, headers=bearer(other))
    minting = await raw(heygen, "create_token", {}, headers=bearer(token))

    assert first[0] == 200
    assert first[1]["code"] == 100
    assert set(first[1]["data"]) >= {
        "session_id",
        "url",
        "access_token",
        "livekit_agent_token",
        "realtime_endpoint",
        "is_paid",
        "session_duration_limit",
        "sdp",
        "ice_servers",
        "ice_servers2",
    }
    assert second == (401, {"code": 400112, "message": "Unauthorized"})
    assert started[0] == 200
    assert foreign[0] == minting[0] == 401


async def test_the_fake_ignores_header_case_and_refuses_missing_credentials(
    heygen: FakeHeyGen,
) -> None:
    token = await new_token(heygen)
    upper = await raw(heygen, "list", headers={"X-API-KEY": heygen.api_key})
    lower = await raw(heygen, "list", headers={"authorization": f"bearer {token}"})
    wrong = await raw(heygen, "list", headers={"Authorization": "Bearer not-a-token"})
    missing = await raw(heygen, "list", headers={})

    assert upper[0] == lower[0] == 200
    assert wrong == missing == (401, {"code": 400112, "message": "Unauthorized"})


async def test_the_fake_expires_session_tokens_after_its_ttl(
    heygen: FakeHeyGen, clock: ManualClock
) -> None:
    heygen.token_ttl = 60
    token = await new_token(heygen)
    clock.advance(61)

    status, _ = await raw(heygen, "new", {"version": "v2"}, headers=bearer(token))

    assert status == 401


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"version": "v1"},
        {"version": "v2", "quality": "very_high"},
        {"version": "v2", "video_encoding": "AV1"},
        {"version": "v2", "voice": {"emotion": "angry"}},
        {"version": "v2", "activity_idle_timeout": 10},
        {"version": "v2", "activity_idle_timeout": "120"},
        {"version": "v2", "stt_settings": {"provider": "whisper"}},
        {"version": "v2", "avatar_id": 7},
        ["not", "an", "object"],
    ],
)
async def test_the_fake_refuses_an_invalid_new_session_body(heygen: FakeHeyGen, body: Any) -> None:
    status, answer = await raw(heygen, "new", body)

    assert status == 400
    assert set(answer) == {"code", "message"}
    assert heygen.sessions == {}


async def test_the_fake_accepts_the_sdk_names_and_extra_keys(heygen: FakeHeyGen) -> None:
    status, answer = await raw(
        heygen,
        "new",
        {
            "version": "v2",
            "avatar_name": heygen.avatar_ids[1],
            "knowledge_id": "kb-1",
            "voice": {"voice_id": "v", "rate": 1.2, "emotion": "Excited"},
            "stt_settings": {"provider": "gladia", "confidence": 0.5},
            "disable_idle_timeout": True,
            "source": "sdk",
            "ia_is_livekit_transport": True,
            "silence_response": False,
        },
    )

    assert status == 200
    session = heygen.session(answer["data"]["session_id"])
    assert (session.avatar_id, session.idle_disabled) == (heygen.avatar_ids[1], True)


async def test_the_fake_enforces_the_session_state_machine(heygen: FakeHeyGen) -> None:
    _, created = await raw(heygen, "new", {"version": "v2"})
    sid = {"session_id": created["data"]["session_id"]}

    early = await raw(heygen, "task", {**sid, "text": "Hi", "task_type": "repeat"})
    await raw(heygen, "start", sid)
    twice = await raw(heygen, "start", sid)
    bad_type = await raw(heygen, "task", {**sid, "text": "Hi", "task_type": "chat"})
    empty = await raw(heygen, "task", {**sid, "text": " "})
    listening = await raw(heygen, "start_listening", sid)
    unknown = await raw(heygen, "keep_alive", {"session_id": "nope"})
    heygen.strict_stop = True
    stops = [await raw(heygen, "stop", sid) for _ in range(2)]

    assert early == twice == (400, {"code": 400006, "message": "Session is not in correct state"})
    assert bad_type[0] == empty[0] == 400
    assert listening[0] == 200
    assert unknown[0] == 400
    assert unknown[1]["code"] not in {400006, 400112}
    assert [status for status, _ in stops] == [200, 400]


async def test_the_fake_lists_history_by_page_and_answers_unknown_routes_with_404(
    heygen: FakeHeyGen,
) -> None:
    for _ in range(3):
        await raw(heygen, "new", {"version": "v2"})

    status, page = await raw(heygen, "history", query={"page": "2", "limit": "2"})
    async with (
        aiohttp.ClientSession() as client,
        client.get(heygen.base_url + "/v1/streaming.nothing") as response,
    ):
        missing = response.status

    assert status == 200
    assert (len(page["data"]["sessions"]), page["data"]["total"]) == (1, 3)
    assert missing == 404


# =========================================================================== voices, languages


async def test_voices_are_the_accounts_streaming_voices_only(
    heygen: FakeHeyGen, provider: HeyGenAvatarProvider
) -> None:
    voices = await provider.list_voices()

    assert [v.name for v in voices] == ["Sara", "Paul", "Lena"]  # not "Studio only"
    assert (voices[2].language, voices[1].gender) == ("German", "male")
    assert routes_and_credentials(heygen) == [("voice.list", "api_key")]


async def test_languages_are_the_streaming_language_codes(provider: HeyGenAvatarProvider) -> None:
    languages = await provider.list_languages()

    assert languages == STREAMING_LANGUAGES
    assert {"en", "de", "zh"} <= set(languages)


async def test_listing_voices_maps_errors_like_the_avatar_list(
    heygen: FakeHeyGen, clock: ManualClock, provider: HeyGenAvatarProvider
) -> None:
    secret = "hg-wrong-key-4242"
    wrong = make_provider(heygen, clock, api_key=secret)
    try:
        with pytest.raises(UpstreamError, match=API_KEY_SETTING) as caught:
            await wrong.list_voices()
        assert secret not in str(caught.value)
    finally:
        await wrong.close()

    heygen.fail("voice.list", null_data=True)
    with pytest.raises(UpstreamError, match="API may have changed"):
        await provider.list_voices()

    heygen.fail("voice.list", status=502, times=None)
    with pytest.raises(UnavailableError, match="HTTP 502"):
        await provider.list_voices()


async def test_the_fake_lists_voices_for_the_api_key_and_not_for_a_session_token(
    heygen: FakeHeyGen,
) -> None:
    token = await new_token(heygen)

    ok, listed = await raw(heygen, "voice.list")
    refused, _ = await raw(heygen, "voice.list", headers={"Authorization": f"Bearer {token}"})

    assert ok == 200
    assert {v["voice_id"] for v in listed["data"]["voices"]} == {v.voice_id for v in heygen.voices}
    assert refused == 401
