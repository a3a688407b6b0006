"""The avatar vendor as the avatar services call it: every call timed and counted by outcome,
with the sessions open and the session seconds spent (figures for metrics; sessions cost
money)."""

from __future__ import annotations

import bisect
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from avatarstack.ports.avatar import (
    AvatarEvent,
    AvatarInfo,
    AvatarProvider,
    ProviderSession,
    SessionRequest,
    SpeakMode,
    VoiceInfo,
)
from avatarstack.ports.errors import AvatarstackError

log = structlog.get_logger("avatarstack.avatars")
T = TypeVar("T")


#: histogram buckets (seconds) for vendor call latency
CALL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class CallStats:
    count: int = 0
    seconds: float = 0.0
    #: per-bucket counts (last = +Inf), same order as CALL_BUCKETS
    buckets: list[int] = field(default_factory=lambda: [0] * (len(CALL_BUCKETS) + 1))
    #: outcome ("ok" or an error code) -> count
    outcomes: dict[str, int] = field(default_factory=dict)


@dataclass
class AvatarStats:
    """Figures for metrics, kept in plain numbers (the event loop is one thread)."""

    provider: str
    #: live sessions in the registry (all instances), refreshed by every tick
    open_sessions: int = 0
    #: vendor session seconds of sessions ended by this instance
    session_seconds: float = 0.0
    calls: dict[str, CallStats] = field(default_factory=dict)

    def record(self, call: str, seconds: float, outcome: str) -> None:
        stats = self.calls.setdefault(call, CallStats())
        stats.count += 1
        stats.seconds += seconds
        stats.buckets[bisect.bisect_left(CALL_BUCKETS, seconds)] += 1
        stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + 1


class InstrumentedProvider:
    """Wraps a provider: times every vendor call and counts outcomes by error code."""

    def __init__(self, provider: AvatarProvider, stats: AvatarStats) -> None:
        self._provider = provider
        self._stats = stats
        self.name = provider.name
        self.max_text_length = provider.max_text_length

    async def _timed(self, call: str, work: Awaitable[T]) -> T:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await work
        except AvatarstackError as exc:
            outcome = exc.code
            raise
        except BaseException:
            outcome = "error"
            raise
        finally:
            self._stats.record(call, time.perf_counter() - started, outcome)

    async def list_avatars(self) -> Sequence[AvatarInfo]:
        return await self._timed("list_avatars", self._provider.list_avatars())

    async def list_voices(self) -> Sequence[VoiceInfo]:
        # a vendor plugin written before voices were part of the port offers no choice
        if getattr(self._provider, "list_voices", None) is None:
            return []
        return await self._timed("list_voices", self._provider.list_voices())

    async def list_languages(self) -> Sequence[str]:
        if getattr(self._provider, "list_languages", None) is None:
            return []
        return await self._timed("list_languages", self._provider.list_languages())

    async def start_session(self, request: SessionRequest) -> ProviderSession:
        return await self._timed("start_session", self._provider.start_session(request))

    async def speak(self, provider_session_id: str, text: str, mode: SpeakMode) -> str:
        return await self._timed("speak", self._provider.speak(provider_session_id, text, mode))

    async def interrupt(self, provider_session_id: str) -> None:
        await self._timed("interrupt", self._provider.interrupt(provider_session_id))

    async def keep_alive(self, provider_session_id: str) -> None:
        await self._timed("keep_alive", self._provider.keep_alive(provider_session_id))

    async def stop(self, provider_session_id: str) -> None:
        await self._timed("stop", self._provider.stop(provider_session_id))

    async def stop_quietly(self, provider_session_id: str) -> None:
        """Stop a vendor session nothing may use any more (its row has ended, or never named
        it); a failure is logged, not raised: reconciliation stops what is left running."""
        try:
            await self.stop(provider_session_id)
        except AvatarstackError as exc:
            log.warning("avatar_stop_failed", error=exc.code)

    async def active_sessions(self) -> Sequence[str]:
        return await self._timed("active_sessions", self._provider.active_sessions())

    def events(self, provider_session_id: str) -> AsyncIterator[AvatarEvent]:
        return self._provider.events(provider_session_id)

    def feed(self, provider_session_id: str, vendor_event: Mapping[str, Any]) -> None:
        feed = getattr(self._provider, "feed", None)
        if feed is not None:
            feed(provider_session_id, vendor_event)

    async def close(self) -> None:
        await self._provider.close()
