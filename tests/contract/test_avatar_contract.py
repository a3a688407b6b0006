"""The avatar provider contract: every provider (the offline text avatar, LiveAvatar and legacy
HeyGen against their fake servers) must pass every test here, and so should a vendor plugin. The
``avatar`` fixture (tests/contract/conftest.py) is parametrized over them; it turns speech delays
off and gives each test a window onto the vendor (``running_at_vendor``, ``saw_stop``).

The error contract under test is the one in ``avatarstack.ports.avatar``'s docstring.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import pytest

from avatarstack.core.speech import split_for_speech
from avatarstack.ports.avatar import (
    LANGUAGE_PATTERN,
    AvatarEvent,
    AvatarProvider,
    SessionRequest,
)
from avatarstack.ports.errors import (
    AvatarstackError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
)

if TYPE_CHECKING:
    from tests.contract.conftest import AvatarHarness

#: how long a test waits for an event or a stream's end before it fails
EVENT_TIMEOUT = 5.0

SENTENCE = "This sentence is one of many in a long answer that the avatar reads aloud."

Operation = Callable[[AvatarProvider, str], Awaitable[object]]

SESSION_OPERATIONS: list[object] = [
    pytest.param(lambda p, sid: p.speak(sid, "Are you still there?", "repeat"), id="speak"),
    pytest.param(lambda p, sid: p.interrupt(sid), id="interrupt"),
    pytest.param(lambda p, sid: p.keep_alive(sid), id="keep_alive"),
]


async def start(avatar: AvatarHarness) -> str:
    session = await avatar.provider.start_session(SessionRequest(avatar_id=avatar.avatar_id))
    return session.provider_session_id


def text_of_length(length: int) -> str:
    """Words and a final full stop, exactly ``length`` characters long."""
    words = ("lorem ipsum dolor sit amet " * (length // 27 + 1))[: length - 1].rstrip()
    return words + "." * (length - len(words))


def long_text(longer_than: int) -> str:
    """Whole sentences adding up to more than ``longer_than`` characters."""
    return " ".join([SENTENCE] * (math.ceil(longer_than / len(SENTENCE)) + 1))


def reveals(secret: str, value: str) -> bool:
    """Whether ``value`` contains ``secret``, also inside base64url segments (a JWT's claims)."""
    if secret in value:
        return True
    for segment in value.replace("-", "+").replace("_", "/").split("."):
        try:
            decoded = base64.b64decode(segment + "=" * (-len(segment) % 4))
        except (binascii.Error, ValueError):
            continue
        if secret.encode() in decoded:
            return True
    return False


class EventReader:
    """Reads a session's event stream in the background, from before the first command."""

    def __init__(self, stream: AsyncIterator[AvatarEvent]) -> None:
        self.events: list[AvatarEvent] = []
        self.task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: AsyncIterator[AvatarEvent]) -> None:
        async for event in stream:
            self.events.append(event)

    async def wait_for(self, check: Callable[[list[AvatarEvent]], bool]) -> list[AvatarEvent]:
        async with asyncio.timeout(EVENT_TIMEOUT):
            while not check(self.events):
                if self.task.done():
                    self.task.result()  # re-raise what ended the stream
                    pytest.fail(f"the event stream ended early: {self.events}")
                await asyncio.sleep(0.005)
        return self.events

    async def ended(self) -> None:
        """Wait for the stream to end (normally or with an error) and return."""
        await asyncio.wait({self.task}, timeout=EVENT_TIMEOUT)
        assert self.task.done(), f"the event stream did not end; it saw {self.events}"


@asynccontextmanager
async def reading(provider: AvatarProvider, session_id: str) -> AsyncIterator[EventReader]:
    reader = EventReader(provider.events(session_id))
    await asyncio.sleep(0)  # let the reader subscribe before the test acts
    try:
        yield reader
    finally:
        reader.task.cancel()
        await asyncio.wait({reader.task})


def adapter_tasks(ignore: set[asyncio.Task[object]]) -> list[asyncio.Task[object]]:
    """Unfinished tasks running our adapters' code, besides those in ``ignore``."""
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        filename = code.co_filename if code is not None else ""
        if task not in ignore and not task.done() and "/avatarstack/adapters/" in filename:
            found.append(task)
    return found


# --------------------------------------------------------------------------- avatars


async def test_list_avatars_is_not_empty_and_the_ids_are_unique(avatar: AvatarHarness) -> None:
    avatars = await avatar.provider.list_avatars()

    assert avatars
    ids = [info.id for info in avatars]
    assert len(ids) == len(set(ids))
    assert avatar.avatar_id in ids
    assert avatar.unknown_avatar_id not in ids
    assert all(info.name for info in avatars)


async def test_list_voices_names_each_voice_once_with_its_language(
    avatar: AvatarHarness,
) -> None:
    voices = await avatar.provider.list_voices()

    ids = [voice.id for voice in voices]
    assert len(ids) == len(set(ids))
    assert all(voice.name and voice.language for voice in voices)
    # a provider that streams video speaks with a voice a person may choose
    assert bool(voices) is avatar.video


async def test_list_languages_are_unique_language_codes(avatar: AvatarHarness) -> None:
    languages = await avatar.provider.list_languages()

    assert len(languages) == len(set(languages))
    assert all(re.match(LANGUAGE_PATTERN, code) for code in languages)
    assert bool(languages) is avatar.video


async def test_a_session_starts_with_a_listed_voice_and_language(avatar: AvatarHarness) -> None:
    voices = await avatar.provider.list_voices()
    languages = await avatar.provider.list_languages()
    request = SessionRequest(
        avatar_id=avatar.avatar_id,
        voice_id=voices[-1].id if voices else None,
        language=languages[-1] if languages else None,
    )

    session = await avatar.provider.start_session(request)

    assert session.provider_session_id in avatar.running_at_vendor()
    await avatar.provider.stop(session.provider_session_id)


async def test_starting_with_an_unknown_avatar_is_not_found_and_starts_nothing(
    avatar: AvatarHarness,
) -> None:
    with pytest.raises(NotFoundError):
        await avatar.provider.start_session(SessionRequest(avatar_id=avatar.unknown_avatar_id))

    assert avatar.running_at_vendor() == set()
    assert list(await avatar.provider.active_sessions()) == []


# --------------------------------------------------------------------------- start


async def test_start_returns_a_session_id_and_video_vendors_give_livekit_credentials_without_the_api_key(  # noqa: E501
    avatar: AvatarHarness,
) -> None:
    session = await avatar.provider.start_session(SessionRequest(avatar_id=avatar.avatar_id))

    assert session.provider_session_id
    assert avatar.running_at_vendor() == {session.provider_session_id}
    if avatar.video:
        assert session.livekit is not None
        assert session.livekit.url
        assert session.livekit.access_token
    else:
        assert session.livekit is None
    if avatar.api_key is not None:
        assert not reveals(avatar.api_key, session.model_dump_json())
        if session.livekit is not None:
            assert not reveals(avatar.api_key, session.livekit.access_token)
            assert not reveals(avatar.api_key, session.livekit.url)
    for limit in (session.max_duration_seconds, session.idle_timeout_seconds):
        assert limit is None or limit > 0


async def test_each_session_gets_its_own_id(avatar: AvatarHarness) -> None:
    first = await start(avatar)
    second = await start(avatar)

    assert first != second
    assert avatar.running_at_vendor() == {first, second}


# --------------------------------------------------------------------------- speech


async def test_speaking_in_repeat_and_talk_mode_returns_task_ids(avatar: AvatarHarness) -> None:
    session_id = await start(avatar)

    repeat = await avatar.provider.speak(session_id, "Hello, I am your avatar.", "repeat")
    talk = await avatar.provider.speak(session_id, "What would you like to know?", "talk")

    assert repeat
    assert talk
    assert repeat != talk


@pytest.mark.parametrize("text", ["", "   \n\t "], ids=["empty", "blank"])
async def test_empty_text_is_invalid_input(avatar: AvatarHarness, text: str) -> None:
    session_id = await start(avatar)

    with pytest.raises(InvalidInputError):
        await avatar.provider.speak(session_id, text, "repeat")


async def test_text_longer_than_max_text_length_is_invalid_input_and_that_length_is_accepted(
    avatar: AvatarHarness,
) -> None:
    session_id = await start(avatar)
    limit = avatar.provider.max_text_length

    with pytest.raises(InvalidInputError):
        await avatar.provider.speak(session_id, text_of_length(limit + 1), "repeat")
    assert await avatar.provider.speak(session_id, text_of_length(limit), "repeat")


async def test_each_chunk_of_a_long_text_split_for_speech_is_accepted(
    avatar: AvatarHarness,
) -> None:
    session_id = await start(avatar)
    chunks = split_for_speech(
        long_text(2 * avatar.provider.max_text_length), avatar.provider.max_text_length
    )
    assert len(chunks) >= 3

    task_ids = [await avatar.provider.speak(session_id, chunk, "repeat") for chunk in chunks]

    assert all(task_ids)
    assert len(set(task_ids)) == len(task_ids)


async def test_interrupt_succeeds_while_speaking_and_while_idle_and_the_session_speaks_on(
    avatar: AvatarHarness,
) -> None:
    session_id = await start(avatar)

    await avatar.provider.interrupt(session_id)
    for _ in range(3):
        await avatar.provider.speak(session_id, long_text(300), "repeat")
    await avatar.provider.interrupt(session_id)

    assert await avatar.provider.speak(session_id, "As I was saying.", "talk")
    assert session_id in avatar.running_at_vendor()


async def test_keep_alive_succeeds_on_an_open_session(avatar: AvatarHarness) -> None:
    session_id = await start(avatar)

    await avatar.provider.keep_alive(session_id)
    avatar.clock.advance(30)
    await avatar.provider.keep_alive(session_id)

    assert session_id in avatar.running_at_vendor()


# --------------------------------------------------------------------------- stop


async def test_stop_ends_the_session_at_the_vendor_and_stopping_again_succeeds(
    avatar: AvatarHarness,
) -> None:
    session_id = await start(avatar)

    await avatar.provider.stop(session_id)
    await avatar.provider.stop(session_id)

    assert avatar.saw_stop(session_id)
    assert session_id not in avatar.running_at_vendor()


@pytest.mark.parametrize("operation", SESSION_OPERATIONS)
async def test_commands_to_a_stopped_session_are_conflicts(
    avatar: AvatarHarness, operation: Operation
) -> None:
    session_id = await start(avatar)
    await avatar.provider.stop(session_id)

    with pytest.raises(ConflictError):
        await operation(avatar.provider, session_id)


@pytest.mark.parametrize("operation", SESSION_OPERATIONS)
async def test_commands_to_a_session_that_was_never_started_are_conflicts(
    avatar: AvatarHarness, operation: Operation
) -> None:
    with pytest.raises(ConflictError):
        await operation(avatar.provider, str(uuid.uuid4()))


async def test_active_sessions_lists_an_open_session_and_not_a_stopped_one(
    avatar: AvatarHarness,
) -> None:
    open_id = await start(avatar)
    stopped_id = await start(avatar)
    await avatar.provider.stop(stopped_id)

    active = set(await avatar.provider.active_sessions())

    assert open_id in active
    assert stopped_id not in active


# --------------------------------------------------------------------------- limits


async def test_beyond_the_vendor_concurrency_limit_start_is_rate_limited_and_starts_nothing(
    avatar: AvatarHarness,
) -> None:
    avatar.limit_concurrency(1)
    first = await start(avatar)

    with pytest.raises(RateLimitedError):
        await start(avatar)

    assert avatar.running_at_vendor() == {first}
    assert set(await avatar.provider.active_sessions()) == {first}
    await avatar.provider.stop(first)
    second = await start(avatar)
    assert avatar.running_at_vendor() == {second}


# --------------------------------------------------------------------------- events


async def test_the_event_stream_reports_speaking_then_idle_then_closed_after_stop_and_ends(
    avatar: AvatarHarness,
) -> None:
    session_id = await start(avatar)
    async with reading(avatar.provider, session_id) as reader:
        task_id = await avatar.provider.speak(session_id, "Nice to meet you.", "repeat")

        def spoke_and_went_idle(events: list[AvatarEvent]) -> bool:
            types = [event.type for event in events]
            return "speaking" in types and "idle" in types[types.index("speaking") :]

        events = await reader.wait_for(spoke_and_went_idle)
        speaking = next(event for event in events if event.type == "speaking")
        assert speaking.task_id in (None, task_id)
        assert speaking.duration_seconds is not None
        assert speaking.duration_seconds > 0

        await avatar.provider.stop(session_id)
        await reader.ended()

    reader.task.result()  # the stream ended without an error
    closed = reader.events[-1]
    assert closed.type == "closed"
    assert closed.reason == "stopped"
    assert [event.type for event in reader.events].count("closed") == 1
    assert {event.provider_session_id for event in reader.events} == {session_id}
    assert all(event.at.tzinfo is not None for event in reader.events)


# --------------------------------------------------------------------------- close


async def test_close_ends_background_work_and_a_second_close_is_fine(
    avatar: AvatarHarness,
) -> None:
    before = set(asyncio.all_tasks())
    session_id = await start(avatar)
    await avatar.provider.speak(session_id, "One more thing before we go.", "talk")

    await avatar.provider.close()
    await avatar.provider.close()

    leftovers = adapter_tasks(before)
    if leftovers:  # give cancelled tasks a moment to unwind
        await asyncio.wait(leftovers, timeout=EVENT_TIMEOUT)
    assert [task for task in leftovers if not task.done()] == []


async def test_close_ends_open_event_streams_instead_of_leaving_their_readers_waiting(
    avatar: AvatarHarness,
) -> None:
    session_id = await start(avatar)
    async with reading(avatar.provider, session_id) as reader:
        await avatar.provider.speak(session_id, "One more thing before we go.", "talk")

        await avatar.provider.close()

        await reader.ended()
        error = reader.task.exception()
        assert error is None or isinstance(error, AvatarstackError)
