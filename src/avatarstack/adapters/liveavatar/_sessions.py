"""The LiveAvatar provider's sessions: their state, the speech it estimates for them, what
LiveAvatar reports on the room's ``agent-response`` topic (:meth:`SessionBook.feed`), and the
ended sessions it remembers.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from avatarstack.adapters.avatar_events import AvatarEventLog
from avatarstack.adapters.liveavatar._models import port_reason
from avatarstack.core.speech import estimate_speech_seconds
from avatarstack.ports.avatar import AvatarEvent, AvatarEventType
from avatarstack.ports.clock import Clock

log = structlog.get_logger("avatarstack.avatars.liveavatar")

#: ended sessions remembered: commands to them are conflicts without asking LiveAvatar
_ENDED_KEPT = 1024


@dataclass
class SessionState:
    id: str
    #: None for a session this instance did not start (the API key then stands in)
    token: str | None = field(repr=False)
    started_at: datetime
    last_activity: datetime
    max_duration: float | None
    events: AvatarEventLog = field(default_factory=AvatarEventLog)
    #: the utterance the estimates say is being spoken
    speaking_task: str | None = None
    #: loop time when the estimated speech queue runs out
    busy_until: float = 0.0
    idle_timer: asyncio.Task[None] | None = None
    #: True once ``feed`` reported real ``avatar.speak_*`` events: estimates stop
    reported: bool = False
    #: tasks whose ``speaking`` the estimates already announced (``feed`` skips them)
    announced: deque[str] = field(default_factory=lambda: deque(maxlen=64))
    #: the text of recent speak commands sent from here, by task id (captions)
    texts: OrderedDict[str, str] = field(default_factory=OrderedDict)


class SessionBook:
    """The sessions this provider follows, by id, and the ended ones it remembers (with their
    event logs, for a late ``events()``). ``speech_time_scale`` scales the estimated speaking
    time before ``idle``."""

    def __init__(self, clock: Clock, *, speech_time_scale: float) -> None:
        self._clock = clock
        self.speech_time_scale = speech_time_scale
        self.sessions: dict[str, SessionState] = {}
        self.ended: OrderedDict[str, AvatarEventLog | None] = OrderedDict()

    def estimate(self, session: SessionState, task_id: str, text: str) -> None:
        duration = estimate_speech_seconds(text)
        now = asyncio.get_running_loop().time()
        session.busy_until = max(now, session.busy_until) + duration * self.speech_time_scale
        session.speaking_task = task_id
        session.announced.append(task_id)
        self.emit(session, "speaking", task_id=task_id, duration_seconds=duration, text=text)
        if session.idle_timer is not None:
            session.idle_timer.cancel()
        session.idle_timer = asyncio.create_task(
            self._idle_after(session, task_id, session.busy_until - now)
        )

    async def _idle_after(self, session: SessionState, task_id: str, delay: float) -> None:
        await asyncio.sleep(max(delay, 0.0))
        if session.idle_timer is asyncio.current_task():
            session.idle_timer = None
        if session.speaking_task is not None and self.sessions.get(session.id) is session:
            session.speaking_task = None
            session.busy_until = 0.0
            self.emit(session, "idle", task_id=task_id)

    def hush(self, session: SessionState) -> None:
        """After an interrupt: the estimated speech is over at once."""
        cancel_timer(session)
        session.busy_until = 0.0
        if session.speaking_task is not None:
            task_id, session.speaking_task = session.speaking_task, None
            self.emit(session, "idle", task_id=task_id)

    def take_over(self, session: SessionState) -> None:
        """LiveAvatar reports speech for this session: stop estimating it."""
        if not session.reported:
            session.reported = True
            cancel_timer(session)
            session.busy_until = 0.0

    def end(self, session_id: str, reason: str) -> None:
        """Forget the session's token and timers and close its event stream (once)."""
        session = self.sessions.pop(session_id, None)
        if session is None:
            if session_id not in self.ended:
                self.remember_ended(session_id, None)
            return
        session.token = None
        cancel_timer(session)
        session.speaking_task = None
        self.emit(session, "closed", reason=reason)
        self.remember_ended(session_id, session.events)
        log.info("liveavatar_session_ended", session_id=session_id, reason=reason)

    def remember_ended(self, session_id: str, events: AvatarEventLog | None) -> None:
        self.ended[session_id] = events
        self.ended.move_to_end(session_id)
        while len(self.ended) > _ENDED_KEPT:
            self.ended.popitem(last=False)

    def emit(
        self,
        session: SessionState,
        event_type: AvatarEventType,
        *,
        task_id: str | None = None,
        reason: str | None = None,
        duration_seconds: float | None = None,
        text: str | None = None,
    ) -> None:
        session.events.append(
            AvatarEvent(
                type=event_type,
                provider_session_id=session.id,
                task_id=task_id,
                reason=reason,
                duration_seconds=duration_seconds,
                text=text,
                at=self._clock.now(),
            )
        )

    def feed(self, provider_session_id: str, vendor_event: Mapping[str, Any]) -> None:
        """What :meth:`LiveAvatarProvider.feed` does (see there): real ``avatar.speak_*``
        reports replace the estimates, ``session.stopped`` ends the session."""
        session = self.sessions.get(provider_session_id)
        reported_for = vendor_event.get("session_id")
        if session is None or reported_for not in (None, provider_session_id):
            return  # e.g. the old room's session.stopped after a renewal replaced it
        event_type = vendor_event.get("event_type")
        task = vendor_event.get("source_event_id") or vendor_event.get("event_id")
        task_id = task if isinstance(task, str) else None
        if event_type == "avatar.speak_started":
            self.take_over(session)
            session.speaking_task = task_id
            if task_id is not None and task_id in session.announced:
                session.announced.remove(task_id)
            else:
                text = session.texts.get(task_id) if task_id is not None else None
                self.emit(session, "speaking", task_id=task_id, text=text)
        elif event_type == "avatar.speak_ended":
            self.take_over(session)
            session.speaking_task = None
            self.emit(session, "idle", task_id=task_id)
        elif event_type == "session.stopped":
            self.end(provider_session_id, port_reason(vendor_event.get("end_reason")))


def cancel_timer(session: SessionState) -> None:
    if session.idle_timer is not None:
        session.idle_timer.cancel()
        session.idle_timer = None
