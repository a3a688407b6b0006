"""What the HeyGen provider knows about its sessions, and the events it derives for them.

HeyGen sends ``avatar_start_talking``/``…stop_talking`` to the browser over LiveKit only, so the
server derives its events: ``speaking`` when a task starts, ``idle`` after its duration (tasks
queue one after another as at HeyGen), ``closed`` when the session ends, with the reason inferred
from the clock when HeyGen closed it silently.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from avatarstack.adapters.heygen._http import log
from avatarstack.ports.avatar import AvatarEvent, AvatarEventType
from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import ConflictError

#: ended sessions remembered (for a late ``events()`` or a repeated ``stop``)
_ENDED_SESSIONS_KEPT = 1000


@dataclass(eq=False)
class SessionState:
    """What the provider knows about one session (its token stays out of every repr)."""

    session_id: str
    token: str | None = field(repr=False)
    started_at: datetime
    idle_timeout: float
    max_duration: float | None
    last_activity: datetime
    #: when the queued speech ends (speaking counts as activity)
    busy_until: datetime
    #: None ends the stream (the provider was closed)
    queue: asyncio.Queue[AvatarEvent | None] = field(default_factory=asyncio.Queue)
    closed: AvatarEvent | None = None
    speaking: tuple[str, float] | None = None
    pending: deque[tuple[str, float]] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None


class SessionBook:
    """The provider's sessions by id, their speech timers and event queues.
    ``speech_time_scale`` multiplies the time between a ``speaking`` event and its ``idle``."""

    def __init__(
        self, clock: Clock, *, speech_time_scale: float, default_idle_timeout: int
    ) -> None:
        self._clock = clock
        self.speech_time_scale = speech_time_scale
        self._default_idle_timeout = float(default_idle_timeout)
        self.sessions: dict[str, SessionState] = {}
        self._ended: deque[str] = deque()

    def get(self, session_id: str) -> SessionState | None:
        return self.sessions.get(session_id)

    def remember(self, state: SessionState) -> None:
        self.sessions[state.session_id] = state

    def adopt(self, session_id: str) -> SessionState:
        """Follow a session started elsewhere (e.g. before a restart) once a call succeeds."""
        state = self.sessions.get(session_id)
        if state is None:
            now = self._clock.now()
            state = SessionState(
                session_id=session_id,
                token=None,
                started_at=now,
                idle_timeout=self._default_idle_timeout,
                max_duration=None,
                last_activity=now,
                busy_until=now,
            )
            self.remember(state)
        return state

    def usable(self, session_id: str) -> SessionState | None:
        state = self.sessions.get(session_id)
        if state is not None and state.closed is not None:
            raise ConflictError(
                f"HeyGen session {session_id} has ended ({state.closed.reason}); start a new "
                "session"
            )
        return state

    def touch(self, state: SessionState, speech_seconds: float = 0.0) -> None:
        now = self._clock.now()
        state.last_activity = now
        state.busy_until = max(now, state.busy_until) + timedelta(seconds=speech_seconds)

    def closed_by_vendor(self, state: SessionState) -> str:
        """HeyGen says the session is over: infer why from the clock, then close it here."""
        if state.closed is not None:
            return state.closed.reason or "closed"
        now = self._clock.now()
        idle_since = max(state.last_activity, state.busy_until)
        if state.max_duration is not None and now >= state.started_at + timedelta(
            seconds=state.max_duration
        ):
            reason = "max_duration"
        elif now >= idle_since + timedelta(seconds=state.idle_timeout):
            reason = "idle_timeout"
        else:
            reason = "closed_by_vendor"
        log.info("heygen_session_closed_by_vendor", session_id=state.session_id, reason=reason)
        self.close(state, reason)
        return reason

    def close(self, state: SessionState, reason: str) -> None:
        if state.closed is not None:
            return
        self.silence(state)
        state.token = None
        state.closed = self._event(state, "closed", reason=reason)
        state.queue.put_nowait(state.closed)
        self._ended.append(state.session_id)
        while len(self._ended) > _ENDED_SESSIONS_KEPT:
            self.sessions.pop(self._ended.popleft(), None)

    def _event(
        self,
        state: SessionState,
        kind: AvatarEventType,
        *,
        task_id: str | None = None,
        reason: str | None = None,
        duration: float | None = None,
    ) -> AvatarEvent:
        return AvatarEvent(
            type=kind,
            provider_session_id=state.session_id,
            task_id=task_id,
            reason=reason,
            duration_seconds=duration,
            at=self._clock.now(),
        )

    def _emit(self, state: SessionState, kind: Literal["speaking", "idle"], **values: Any) -> None:
        state.queue.put_nowait(self._event(state, kind, **values))

    def queue_speech(self, state: SessionState, task_id: str, seconds: float) -> None:
        """HeyGen speaks async tasks one after another: ``speaking`` now if the avatar is idle,
        else when the tasks before it are done."""
        if state.speaking is not None:
            state.pending.append((task_id, seconds))
            return
        state.speaking = (task_id, seconds)
        self._emit(state, "speaking", task_id=task_id, duration=seconds)
        state.worker = asyncio.get_running_loop().create_task(
            self._speech(state), name=f"heygen-speech-{state.session_id}"
        )

    async def _speech(self, state: SessionState) -> None:
        while state.speaking is not None:
            task_id, seconds = state.speaking
            await asyncio.sleep(seconds * self.speech_time_scale)
            self._emit(state, "idle", task_id=task_id)
            state.speaking = state.pending.popleft() if state.pending else None
            if state.speaking is not None:
                next_id, next_seconds = state.speaking
                self._emit(state, "speaking", task_id=next_id, duration=next_seconds)
        state.worker = None

    def silence(self, state: SessionState) -> None:
        """The avatar stopped mid-task (interrupt or end): ``idle`` for the cut task; queued
        tasks are dropped (they never started, so they get no events)."""
        if state.worker is not None:
            state.worker.cancel()
            state.worker = None
        if state.speaking is not None:
            self._emit(state, "idle", task_id=state.speaking[0], reason="interrupted")
            state.speaking = None
        state.pending.clear()
