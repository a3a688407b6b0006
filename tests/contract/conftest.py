"""Fixtures for the contract suites in this directory.

* **Avatar** — the ``avatar`` fixture runs a test against every avatar provider (the offline text
  avatar, LiveAvatar and legacy HeyGen against their fake servers) and gives the test a window
  onto the vendor's side: what is running there and which sessions it saw stopped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import pytest

from avatarstack.adapters.heygen import HeyGenAvatarProvider
from avatarstack.adapters.liveavatar import LiveAvatarProvider
from avatarstack.adapters.textavatar import TextAvatarProvider
from avatarstack.ports.avatar import AvatarProvider
from avatarstack.testkit.clock import ManualClock
from avatarstack.testkit.heygen import FakeHeyGen
from avatarstack.testkit.liveavatar import FakeLiveAvatar

# =========================================================================== avatar

#: the vendor API key of the fakes: it must never reach the browser or an error message
AVATAR_API_KEY = "avs-contract-api-key-5c1d0e9b7a3f"
UNKNOWN_AVATAR_ID = "no-such-avatar-7f3e"


@dataclass(frozen=True)
class AvatarHarness:
    """One avatar provider under test (no speech delays, a manual clock) and its vendor."""

    name: str
    provider: AvatarProvider
    clock: ManualClock
    #: an avatar the vendor has
    avatar_id: str
    #: an avatar the vendor does not have
    unknown_avatar_id: str
    #: True when sessions stream video (``start_session`` returns LiveKit credentials)
    video: bool
    #: the vendor API key that must never reach the browser (None without one)
    api_key: str | None
    _limit: Callable[[int], None]
    _saw_stop: Callable[[str], bool]
    _running: Callable[[], set[str]]

    def limit_concurrency(self, sessions: int) -> None:
        """Make the vendor refuse to run more than ``sessions`` sessions at once."""
        self._limit(sessions)

    def saw_stop(self, provider_session_id: str) -> bool:
        """Whether the vendor ended this session because it was told to stop."""
        return self._saw_stop(provider_session_id)

    def running_at_vendor(self) -> set[str]:
        """The sessions running at the vendor, by its own bookkeeping."""
        return self._running()


@asynccontextmanager
async def _text_avatar(clock: ManualClock) -> AsyncIterator[AvatarHarness]:
    provider = TextAvatarProvider(clock=clock, speech_time_scale=0)

    def limit(sessions: int) -> None:
        provider.max_concurrent = sessions

    yield AvatarHarness(
        name="text",
        provider=provider,
        clock=clock,
        avatar_id="text-default",
        unknown_avatar_id=UNKNOWN_AVATAR_ID,
        video=False,
        api_key=None,
        _limit=limit,
        _saw_stop=lambda session_id: provider.session_status(session_id) == "closed",
        _running=lambda: set(provider.open_session_ids),
    )


@asynccontextmanager
async def _liveavatar(clock: ManualClock) -> AsyncIterator[AvatarHarness]:
    async with FakeLiveAvatar(api_key=AVATAR_API_KEY, clock=clock) as fake:
        provider = LiveAvatarProvider(
            fake.api_key, fake.base_url, commands=fake.commands, clock=clock, speech_time_scale=0
        )

        def limit(sessions: int) -> None:
            fake.max_concurrent = sessions

        yield AvatarHarness(
            name="liveavatar",
            provider=provider,
            clock=clock,
            avatar_id=fake.active_avatar_ids[0],
            unknown_avatar_id=UNKNOWN_AVATAR_ID,
            video=True,
            api_key=fake.api_key,
            _limit=limit,
            _saw_stop=fake.saw_stop,
            _running=lambda: set(fake.active_session_ids),
        )


@asynccontextmanager
async def _heygen(clock: ManualClock) -> AsyncIterator[AvatarHarness]:
    async with FakeHeyGen(api_key=AVATAR_API_KEY, clock=clock) as fake:
        provider = HeyGenAvatarProvider(
            fake.api_key, fake.base_url, clock=clock, speech_time_scale=0
        )

        def limit(sessions: int) -> None:
            fake.max_concurrent = sessions

        yield AvatarHarness(
            name="heygen",
            provider=provider,
            clock=clock,
            avatar_id=fake.avatar_ids[0],
            unknown_avatar_id=UNKNOWN_AVATAR_ID,
            video=True,
            api_key=fake.api_key,
            _limit=limit,
            _saw_stop=lambda session_id: (
                session_id in fake.sessions and fake.sessions[session_id].close_reason == "stopped"
            ),
            _running=lambda: {session.session_id for session in fake.open_sessions()},
        )


_AVATAR_HARNESSES: dict[
    str, Callable[[ManualClock], AbstractAsyncContextManager[AvatarHarness]]
] = {
    "text": _text_avatar,
    "liveavatar": _liveavatar,
    "heygen": _heygen,
}


@pytest.fixture(params=list(_AVATAR_HARNESSES))
async def avatar(request: pytest.FixtureRequest) -> AsyncIterator[AvatarHarness]:
    """Each avatar provider with speech delays off and a manual clock; closed after the test."""
    async with _AVATAR_HARNESSES[request.param](ManualClock()) as harness:
        try:
            yield harness
        finally:
            await harness.provider.close()
