"""The fake LiveAvatar's state machine: sessions, avatars, credits, timers and speech."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import math
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import UnavailableError
from avatarstack.testkit._server import LocalServer
from avatarstack.testkit.clock import ManualClock
from avatarstack.testkit.liveavatar._records import (
    Account,
    DataChannelCommand,
    FakeAvatar,
    FakeContext,
    FakeSession,
    FakeVoice,
    Fault,
    StopCall,
    Utterance,
    canned_reply,
    default_avatars,
    default_voices,
)

# =========================================================================== data channel

Listener = Callable[[str, dict[str, Any]], object]


class FakeDataChannel:
    """The fake's stand-in for FULL sessions' LiveKit data channel; a ``CommandChannel``.

    ``send`` publishes one command on ``agent-control`` of an active session (otherwise
    UnavailableError, as publishing into a closed room fails). ``listen`` registers a callback
    ``(session_id, event)`` (plain or async) that gets every ``agent-response`` event, e.g.
    ``LiveAvatarProvider.feed``. ``unavailable = True`` makes every send fail as if no
    participant could carry it."""

    def __init__(self, fake: _SessionState) -> None:
        self._fake = fake
        self._listeners: list[Listener] = []
        self.unavailable = False

    async def send(self, provider_session_id: str, command: Mapping[str, Any]) -> None:
        if self.unavailable:
            raise UnavailableError("the fake data channel is switched off")
        await self._fake._on_data_channel(provider_session_id, command)

    def listen(self, callback: Listener) -> None:
        self._listeners.append(callback)

    def unlisten(self, callback: Listener) -> None:
        self._listeners.remove(callback)

    @property
    def received(self) -> list[DataChannelCommand]:
        """Every command received, all sessions, in order."""
        return sorted(
            (c for s in self._fake.sessions.values() for c in s.commands), key=lambda c: c.at
        )

    def responses(self, provider_session_id: str) -> list[dict[str, Any]]:
        """The ``agent-response`` events sent to a session, in order."""
        return list(self._fake.session(provider_session_id).responses)

    async def inject_user_speech(self, provider_session_id: str, text: str) -> None:
        """The end user says ``text`` (``user.speak_started``, ``user.transcription``,
        ``user.speak_ended``); it goes into the transcript and resets the idle timer."""
        fake = self._fake
        session = fake.session(provider_session_id)
        if session.status != "active":
            raise UnavailableError("the session is not active")
        session.last_activity_at = fake.now()
        await fake._respond(session, "user.speak_started")
        await fake._respond(session, "user.transcription", text=text)
        fake._say(session, "user", text)
        await fake._respond(session, "user.speak_ended")

    async def _deliver(self, session_id: str, event: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            result = listener(session_id, dict(event))
            if inspect.isawaitable(result):
                await result


class _SessionState(LocalServer):
    """The switches, the state and the clock-driven life of sessions; no HTTP here (the data
    channel and the websocket events are pushed from here, received in the other layers)."""

    def __init__(
        self,
        *,
        api_key: str = "fake-liveavatar-key",
        clock: Clock | None = None,
        max_concurrent: int = 3,
    ) -> None:
        super().__init__()
        self._api_key = api_key
        self._clock: Clock = clock or ManualClock()
        self.max_concurrent = max_concurrent
        # switches
        self.success_code = 1000
        self.strict_stop = False
        self.wrap_validation_errors = False
        self.unauthorized_status = 401
        self.unauthorized_code = 4001
        self.concurrent_limit_status = 400
        self.concurrent_limit_code = 4000
        self.enforce_credits = True
        self.idle_timeout: float | None = 300.0
        self.tier_max_session_duration = 1200
        self.sandbox_duration = 60.0
        self.seconds_per_word = 0.4
        self.ws_connect_delay = 0.0
        self.max_ws_message_bytes = 1024 * 1024
        self.rate_limit_per_second: int | None = None
        self.transcript_page_size = 50
        #: builds the answer to ``avatar.speak_response`` (the "LLM")
        self.reply: Callable[[str, FakeContext | None], str] = canned_reply
        # state
        self._created_at = self._clock.now()
        self._accounts: dict[str, Account] = {api_key: Account(credits=10_000.0)}
        self.avatars: list[FakeAvatar] = default_avatars()
        self.voices: list[FakeVoice] = default_voices()
        self.contexts: dict[str, FakeContext] = {}
        self.sessions: dict[str, FakeSession] = {}
        self._tokens: dict[str, str] = {}
        self._faults: dict[str, Fault] = {}
        self._windows: Counter[tuple[str, str, int]] = Counter()
        self.commands = FakeDataChannel(self)
        # records
        self.requests: list[str] = []
        self.calls: Counter[str] = Counter()
        self.token_requests: list[dict[str, Any]] = []
        self.stops: list[StopCall] = []
        # server
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def api_key(self) -> str:
        return self._api_key

    async def _before_stop(self) -> None:
        for session in self.sessions.values():
            for ws in list(session._sockets):
                await ws.close()
        for task in list(self._background):
            task.cancel()

    # ------------------------------------------------------------------ test handle

    def now(self) -> datetime:
        return self._clock.now()

    async def advance(self, seconds: float) -> None:
        """Move the clock (it must have ``advance``, like ManualClock) and apply what is due."""
        advance = getattr(self._clock, "advance", None)
        if advance is None:
            raise TypeError("advance() needs a clock with advance(); call tick() instead")
        advance(seconds)
        await self.tick()

    async def tick(self) -> None:
        """Apply idle timeouts, duration caps, credits and speech progress up to now."""
        await self._apply_timers()

    def session(self, session_id: str) -> FakeSession:
        return self.sessions[session_id]

    @property
    def active_session_ids(self) -> set[str]:
        return {s.id for s in self.sessions.values() if s.status == "active"}

    @property
    def active_avatar_ids(self) -> tuple[str, ...]:
        """Ids of the ACTIVE avatars the main key can use: its own first, then public ones."""
        own = [a.id for a in self.avatars if not a.public and self._owns(a, self._api_key)]
        public = [a.id for a in self.avatars if a.public]
        usable = {a.id for a in self.avatars if a.status == "ACTIVE" and not a.is_expired}
        return tuple(i for i in [*own, *public] if i in usable)

    def saw_stop(self, session_id: str) -> bool:
        """Whether a stop request reached this session."""
        return any(call.session_id == session_id for call in self.stops)

    @property
    def credits(self) -> float:
        return self._accounts[self._api_key].credits

    @credits.setter
    def credits(self, value: float) -> None:
        self._accounts[self._api_key].credits = value

    def add_api_key(self, api_key: str, *, credits: float = 10_000.0) -> None:
        """Another account (its own sessions, concurrency and credits)."""
        self._accounts[api_key] = Account(credits=credits)

    def add_context(
        self, name: str, prompt: str, opening_text: str, *, context_id: str | None = None
    ) -> FakeContext:
        now = self.now()
        context = FakeContext(
            id=context_id or str(uuid.uuid4()),
            name=name,
            prompt=prompt,
            opening_text=opening_text,
            created_at=now,
            updated_at=now,
        )
        self.contexts[context.id] = context
        return context

    async def drop_websockets(self, session_id: str) -> None:
        """Cut a LITE session's websockets without a goodbye (code 1011), e.g. mid-utterance."""
        for ws in list(self.session(session_id)._sockets):
            await ws.close(code=1011, message=b"connection lost")

    async def close_session(self, session_id: str, reason: str = "SERVER_ERROR") -> None:
        """End a session from LiveAvatar's side (a crash, a deleted avatar, …)."""
        session = self.session(session_id)
        if session.status != "closed":
            await self._close(session, reason, self.now())

    def _owns(self, avatar: FakeAvatar, key: str) -> bool:
        return (avatar.owner or self._api_key) == key

    def _visible_avatar(self, avatar_id: str, key: str) -> FakeAvatar | None:
        for avatar in self.avatars:
            if avatar.id == avatar_id and (avatar.public or self._owns(avatar, key)):
                return avatar
        return None

    # ------------------------------------------------------------------ timers

    async def _apply_timers(self) -> None:
        now = self.now()
        for session in list(self.sessions.values()):
            if session.status != "active":
                continue
            deadline, reason = self._deadline(session)
            if deadline is not None and deadline <= now:
                await self._progress(session, deadline)
                await self._close(session, reason, deadline)
            else:
                await self._progress(session, now)
                self._bill(session, now, final=False)
        if self.enforce_credits:
            for key, account in self._accounts.items():
                if account.credits > 0:
                    continue
                for session in list(self.sessions.values()):
                    if (
                        session.api_key == key
                        and session.status == "active"
                        and not session.is_sandbox
                    ):
                        await self._close(session, "NO_CREDITS", now)

    def _deadline(self, session: FakeSession) -> tuple[datetime | None, str]:
        candidates: list[tuple[datetime, str]] = []
        if self.idle_timeout is not None and session.last_activity_at is not None:
            candidates.append(
                (session.last_activity_at + timedelta(seconds=self.idle_timeout), "IDLE_TIMEOUT")
            )
        if session.max_duration is not None and session.started_at is not None:
            candidates.append(
                (
                    session.started_at + timedelta(seconds=session.max_duration),
                    "MAX_DURATION_REACHED",
                )
            )
        if not candidates:
            return None, ""
        return min(candidates, key=lambda c: c[0])

    def _rate(self, session: FakeSession) -> float:
        if session.is_sandbox:
            return 0.0
        return 2.0 if session.mode == "FULL" else 1.0

    def _bill(self, session: FakeSession, until: datetime, *, final: bool) -> None:
        if session.started_at is None:
            return
        elapsed = max(0.0, (until - session.started_at).total_seconds()) / 60
        minutes = math.ceil(elapsed) if final else math.floor(elapsed)
        due = max(0, minutes - session._billed_minutes)
        if due:
            cost = due * self._rate(session)
            session._billed_minutes += due
            session.credits_consumed += cost
            self._accounts[session.api_key].credits -= cost

    async def _close(self, session: FakeSession, reason: str, at: datetime) -> None:
        was_active = session.status == "active"
        session.status = "closed"
        session.end_at = at
        session.end_reason = reason
        session._utterances.clear()
        session._lite_audio.clear()
        session._lite_pending.clear()
        if was_active:
            self._bill(session, at, final=True)
            await self._respond(session, "session.stopped", end_reason=reason)
        for state in ("closing", "closed"):
            await self._ws_send(session, {"type": "session.state_updated", "state": state})
        for ws in list(session._sockets):
            await ws.close()

    # ------------------------------------------------------------------ speech (FULL)

    def _say(self, session: FakeSession, role: str, text: str, at: datetime | None = None) -> None:
        moment = at or self.now()
        started = session.started_at or moment
        session.transcript.append(
            {
                "role": role,
                "transcript": text,
                "absolute_timestamp": int(moment.timestamp()),
                "relative_timestamp": int((moment - started).total_seconds()),
            }
        )

    def _enqueue(self, session: FakeSession, event_id: str | None, text: str) -> None:
        now = self.now()
        starts = max(now, session._speech_free_at or now)
        ends = starts + timedelta(seconds=len(text.split()) * self.seconds_per_word)
        session._utterances.append(Utterance(event_id, text, starts, ends))
        session._speech_free_at = ends

    async def _progress(self, session: FakeSession, until: datetime) -> None:
        """Start and finish the utterances (FULL) and audio (LITE) due by ``until``."""
        while session._utterances:
            utterance = session._utterances[0]
            if not utterance.started:
                if utterance.starts_at > until:
                    break
                utterance.started = True
                await self._respond(session, "avatar.speak_started", utterance.event_id)
                await self._respond(
                    session, "avatar.transcription", utterance.event_id, text=utterance.text
                )
                self._say(session, "avatar", utterance.text, utterance.starts_at)
            if utterance.ends_at > until:
                break
            session._utterances.pop(0)
            await self._respond(session, "avatar.speak_ended", utterance.event_id)
        while session._lite_pending and session._lite_pending[0][1] <= until:
            event_id, _ = session._lite_pending.pop(0)
            await self._ws_send(
                session,
                {"type": "agent.speak_ended", "event_id": event_id, "task": {"id": event_id}},
            )

    async def _respond(
        self,
        session: FakeSession,
        event_type: str,
        source_event_id: str | None = None,
        **payload: Any,
    ) -> None:
        """Send one ``agent-response`` event (FULL sessions and the ElevenLabs hybrid)."""
        if session.mode == "LITE" and not session.hybrid:
            return
        event = {
            "event_id": str(uuid.uuid4()),
            "event_type": event_type,
            "session_id": session.id,
            "source_event_id": source_event_id,
            **payload,
        }
        session.responses.append(event)
        await self.commands._deliver(session.id, event)

    async def _on_data_channel(self, session_id: str, command: Mapping[str, Any]) -> None:
        await self._apply_timers()
        session = self.sessions.get(session_id)
        if session is None or session.status != "active":
            raise UnavailableError("there is no open LiveKit room for this session")
        payload = json.loads(json.dumps(command))  # what travels is JSON bytes
        if not isinstance(payload, dict):
            payload = {"value": payload}
        event_type = payload.get("event_type")
        event_id = payload.get("event_id")
        text = payload.get("text")
        full = session.mode == "FULL" or session.hybrid
        known = event_type in {
            "avatar.speak_text",
            "avatar.speak_response",
            "avatar.interrupt",
            "avatar.start_listening",
            "avatar.stop_listening",
            "user.start_push_to_talk",
            "user.stop_push_to_talk",
        }
        session.commands.append(
            DataChannelCommand(
                session_id=session.id,
                event_type=event_type if isinstance(event_type, str) else None,
                event_id=event_id if isinstance(event_id, str) else None,
                payload=payload,
                at=self.now(),
                accepted=full and known,
            )
        )
        session.last_activity_at = self.now()  # any command counts as activity
        if not (full and known):
            return
        source = event_id if isinstance(event_id, str) else None
        if event_type == "avatar.speak_text" and isinstance(text, str) and text.strip():
            self._enqueue(session, source, text)
        elif event_type == "avatar.speak_response" and isinstance(text, str) and text.strip():
            self._say(session, "user", text)
            context = self.contexts.get(session.context_id or "")
            self._enqueue(session, source, self.reply(text, context))
        elif event_type == "avatar.interrupt":
            current = session._utterances[0] if session._utterances else None
            session._utterances.clear()
            session._speech_free_at = None
            if current is not None and current.started:
                await self._respond(session, "avatar.speak_ended", current.event_id)
        elif event_type in ("user.start_push_to_talk", "user.stop_push_to_talk"):
            ptt = session.config.get("interactivity_type") == "PUSH_TO_TALK"
            verb = "started" if event_type.endswith("start_push_to_talk") else "stopped"
            suffix = "" if ptt else ("_start_failed" if verb == "started" else "_stop_failed")
            name = f"user.push_to_talk_{verb}" if ptt else f"user.push_to_talk{suffix}"
            await self._respond(session, name, source)
        await self._progress(session, self.now())

    # ------------------------------------------------------------------ websocket (LITE)

    async def _ws_send(self, session: FakeSession, event: dict[str, Any]) -> None:
        if not session._sockets:
            return
        session.ws_events.append(event)
        for ws in list(session._sockets):
            if not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_json(event)
