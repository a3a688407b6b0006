"""An avatar provider without video: the browser shows the text, the server keeps the timing.

It follows the same contract as the video vendors (tests/contract/test_avatar_contract.py), so
the whole product runs offline with it: sessions start and stop, ``speak`` queues utterances that
"take" their estimated speaking time (:func:`~avatarstack.core.speech.estimate_speech_seconds`,
scaled by ``speech_time_scale``; 0 in tests), and the event stream reports ``speaking``, ``idle``
and ``closed`` like a vendor's would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import structlog

from avatarstack.adapters.avatar_events import AvatarEventLog
from avatarstack.core.speech import check_speech, estimate_speech_seconds
from avatarstack.ports.avatar import (
    AvatarEvent,
    AvatarEventType,
    AvatarInfo,
    ProviderSession,
    SessionRequest,
    SpeakMode,
    VoiceInfo,
)
from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import (
    ConflictError,
    NotFoundError,
    RateLimitedError,
    UnavailableError,
)

__all__ = ["DEFAULT_AVATARS", "TextAvatarProvider"]

log = structlog.get_logger("avatarstack.avatars.text")

DEFAULT_AVATARS: tuple[AvatarInfo, ...] = (
    AvatarInfo(id="text-default", name="Narrator"),
    AvatarInfo(id="text-guide", name="Guide"),
)

_MODES = ("repeat", "talk")
#: ended sessions remembered, so stopping again succeeds and late subscribers see ``closed``
_ENDED_KEPT = 1024


@dataclass
class _Utterance:
    task_id: str
    duration: float
    text: str = ""


@dataclass
class _Session:
    id: str
    avatar_id: str
    started_at: datetime
    kept_alive_at: datetime
    queue: deque[_Utterance] = field(default_factory=deque)
    current: _Utterance | None = None
    worker: asyncio.Task[None] | None = None
    events: AvatarEventLog = field(default_factory=AvatarEventLog)


class TextAvatarProvider:
    """The ``text`` avatar provider: in-process sessions, no video, no network.

    ``max_concurrent`` (None: unlimited) makes ``start_session`` refuse with
    :class:`RateLimitedError` beyond that many open sessions, like a vendor account's limit.
    ``speech_time_scale`` multiplies the estimated speaking time (0 makes speech instant).
    ``max_duration_seconds`` and ``idle_timeout_seconds`` report a vendor-like duration cap and
    idle timeout in ``ProviderSession`` (not enforced), so the service's renewal and keep-alive
    cadence can be exercised offline.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        name: str = "text",
        max_text_length: int = 2000,
        speech_time_scale: float = 1.0,
        max_concurrent: int | None = None,
        avatars: Sequence[AvatarInfo] = DEFAULT_AVATARS,
        max_duration_seconds: float | None = None,
        idle_timeout_seconds: float | None = None,
    ) -> None:
        if max_text_length < 1:
            raise ValueError("max_text_length must be at least 1")
        if speech_time_scale < 0:
            raise ValueError("speech_time_scale must not be negative")
        if max_concurrent is not None and max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1 (or None for no limit)")
        if not avatars:
            raise ValueError("the text avatar provider needs at least one avatar")
        self.name = name
        self.max_text_length = max_text_length
        self.speech_time_scale = speech_time_scale
        self.max_concurrent = max_concurrent
        self.max_duration_seconds = max_duration_seconds
        self.idle_timeout_seconds = idle_timeout_seconds
        self._clock = clock
        self._avatars = {avatar.id: avatar for avatar in avatars}
        self._default_avatar_id = avatars[0].id
        self._sessions: dict[str, _Session] = {}
        self._ended: OrderedDict[str, _Session] = OrderedDict()
        self._closed = False

    # ------------------------------------------------------------------ the port

    async def list_avatars(self) -> Sequence[AvatarInfo]:
        return list(self._avatars.values())

    async def list_voices(self) -> Sequence[VoiceInfo]:
        """None to choose from: the text avatar has no voice (its words are captions)."""
        return []

    async def list_languages(self) -> Sequence[str]:
        """None to choose from: the text avatar says the answer in the answer's language."""
        return []

    async def start_session(self, request: SessionRequest) -> ProviderSession:
        if self._closed:
            raise UnavailableError("the text avatar provider has been shut down")
        avatar_id = request.avatar_id or self._default_avatar_id
        if avatar_id not in self._avatars:
            raise NotFoundError(f"there is no text avatar {avatar_id!r}")
        if self.max_concurrent is not None and len(self._sessions) >= self.max_concurrent:
            raise RateLimitedError(
                f"all {self.max_concurrent} text avatar session(s) are in use; stop one first",
                retry_after=5,
            )
        now = self._clock.now()
        session = _Session(
            id=str(uuid.uuid4()), avatar_id=avatar_id, started_at=now, kept_alive_at=now
        )
        self._sessions[session.id] = session
        log.info("text_avatar_session_started", session_id=session.id, avatar_id=avatar_id)
        return ProviderSession(
            provider_session_id=session.id,
            max_duration_seconds=self.max_duration_seconds,
            idle_timeout_seconds=self.idle_timeout_seconds,
        )

    async def speak(self, provider_session_id: str, text: str, mode: SpeakMode) -> str:
        session = self._open(provider_session_id)
        self._check_text(text, mode)
        utterance = _Utterance(
            task_id=str(uuid.uuid4()), duration=estimate_speech_seconds(text), text=text
        )
        session.queue.append(utterance)
        if session.worker is None or session.worker.done():
            session.worker = asyncio.create_task(self._speak_queue(session))
        return utterance.task_id

    async def interrupt(self, provider_session_id: str) -> None:
        session = self._open(provider_session_id)
        cut, dropped = session.current, len(session.queue)
        worker = self._halt(session)
        if cut is not None or dropped:
            self._emit(session, "idle", task_id=cut.task_id if cut else None)
        await _finished(worker)

    async def keep_alive(self, provider_session_id: str) -> None:
        self._open(provider_session_id).kept_alive_at = self._clock.now()

    async def stop(self, provider_session_id: str) -> None:
        await self._end(provider_session_id, "stopped")

    async def active_sessions(self) -> Sequence[str]:
        return list(self._sessions)

    async def events(self, provider_session_id: str) -> AsyncIterator[AvatarEvent]:
        session = self._sessions.get(provider_session_id) or self._ended.get(provider_session_id)
        if session is None:
            raise ConflictError("no such text avatar session (never started, or long gone)")
        async for event in session.events.follow():
            yield event

    async def close(self) -> None:
        """End every open session (reason ``shutdown``) and cancel their speech timers."""
        self._closed = True
        for session_id in list(self._sessions):
            await self._end(session_id, "shutdown")

    async def ping(self) -> None:
        return None

    # ------------------------------------------------------------------ introspection

    @property
    def open_session_ids(self) -> frozenset[str]:
        """The sessions running now (what ``active_sessions`` reports, without awaiting)."""
        return frozenset(self._sessions)

    def session_status(self, provider_session_id: str) -> Literal["open", "closed"] | None:
        """``open``, ``closed`` (stopped or shut down), or None for an id it does not know."""
        if provider_session_id in self._sessions:
            return "open"
        if provider_session_id in self._ended:
            return "closed"
        return None

    # ------------------------------------------------------------------ helpers

    def _open(self, provider_session_id: str) -> _Session:
        session = self._sessions.get(provider_session_id)
        if session is None:
            raise ConflictError("the text avatar session is closed or was never started")
        return session

    def _check_text(self, text: str, mode: str) -> None:
        check_speech(text, mode, self.max_text_length, "the text avatar")

    async def _speak_queue(self, session: _Session) -> None:
        """Say the queued utterances one after the other (FIFO)."""
        while session.queue:
            utterance = session.queue.popleft()
            session.current = utterance
            self._emit(
                session,
                "speaking",
                task_id=utterance.task_id,
                duration_seconds=utterance.duration,
                text=utterance.text,
            )
            await asyncio.sleep(utterance.duration * self.speech_time_scale)
            session.current = None
            self._emit(session, "idle", task_id=utterance.task_id)

    def _halt(self, session: _Session) -> asyncio.Task[None] | None:
        """Drop the queue and cancel the utterance being spoken; it emits nothing after this."""
        worker, session.worker = session.worker, None
        session.queue.clear()
        session.current = None
        if worker is None or worker.done():
            return None
        worker.cancel()
        return worker

    async def _end(self, provider_session_id: str, reason: str) -> None:
        session = self._sessions.pop(provider_session_id, None)
        if session is None:  # already ended (or ended in an earlier process): nothing to do
            return
        self._ended[session.id] = session
        while len(self._ended) > _ENDED_KEPT:
            self._ended.popitem(last=False)
        worker = self._halt(session)
        self._emit(session, "closed", reason=reason)
        log.info("text_avatar_session_closed", session_id=session.id, reason=reason)
        await _finished(worker)

    def _emit(self, session: _Session, type_: AvatarEventType, **fields: Any) -> None:
        session.events.append(
            AvatarEvent(type=type_, provider_session_id=session.id, at=self._clock.now(), **fields)
        )


async def _finished(worker: asyncio.Task[None] | None) -> None:
    """Wait for a cancelled worker; wait() does not re-raise its cancellation, but lets ours
    through."""
    if worker is not None:
        await asyncio.wait({worker})
