"""HeyGen LiveAvatar in FULL mode: LiveAvatar hosts the voice, the LLM and the video; we mint
the session, hand the browser its LiveKit credentials, and drive speech.

REST (``https://api.liveavatar.com/v1``) carries the session's life: ``POST /sessions/token``
with the API key, ``POST /sessions/start`` with the session token (201, LiveKit URL and the
*client* token), ``/sessions/keep-alive``, ``/sessions/stop``, ``GET /sessions?type=active``,
``GET /avatars``, ``/avatars/public`` and ``/voices``. In FULL mode speech and interruption exist
only on the room's LiveKit data channel (topic ``agent-control``), so they go through the injected
:class:`~avatarstack.ports.avatar.CommandChannel` as ``{event_id, event_type, session_id, …}``
commands: ``avatar.speak_text`` (``repeat``: say it verbatim), ``avatar.speak_response``
(``talk``: LiveAvatar's LLM answers it, using the session's context) and ``avatar.interrupt``.

Events. LiveAvatar reports speech only on the room's ``agent-response`` topic, which this
server does not see by itself. So by default the event stream *estimates*: ``speaking`` when a
speak command is sent (with :func:`~avatarstack.core.speech.estimate_speech_seconds`), ``idle``
when the estimated speech has run out (``speech_time_scale`` scales the wait; 0 makes it
immediate), ``closed`` on stop or when LiveAvatar says the session ended (a keep-alive answering
"closed", a session lookup with an ``end_reason``). Whoever does receive ``agent-response``
events (the browser relay, or a server-side LiveKit participant) passes each one to
:meth:`LiveAvatarProvider.feed`; from the first ``avatar.speak_*`` event on, that session's
``speaking``/``idle`` follow what LiveAvatar reports instead of the estimates, and
``session.stopped`` closes the stream with LiveAvatar's ``end_reason``.

Secrets. The API key goes only into ``X-API-KEY`` headers. Each session token stays in memory,
keyed by session id, and is dropped when the session ends; keep-alive and stop use it as a
Bearer token and fall back to the API key plus ``session_id`` when there is none (a session
started by another instance or before a restart) or LiveAvatar rejects it. Neither is logged or
put into an error message.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from avatarstack.adapters.avatar_events import AvatarEventLog
from avatarstack.adapters.liveavatar._http import (
    API_KEY,
    AVATARS,
    KEEP_ALIVE,
    SESSION,
    SESSIONS,
    START,
    STOP,
    TOKEN,
    VOICES,
    Auth,
    Endpoint,
    LiveAvatarHttp,
    SessionTokenRejectedError,
)
from avatarstack.core.speech import check_speech, estimate_speech_seconds
from avatarstack.ports.avatar import (
    LANGUAGE_PATTERN,
    AvatarEvent,
    AvatarEventType,
    AvatarInfo,
    CommandChannel,
    LiveKitCredentials,
    ProviderSession,
    SessionRequest,
    SpeakMode,
    VoiceInfo,
)
from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import (
    AvatarstackError,
    ConflictError,
    FieldError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
    UpstreamError,
)

__all__ = [
    "IDLE_TIMEOUT_SECONDS",
    "MAX_TEXT_LENGTH",
    "WAYNE_AVATAR_ID",
    "LiveAvatarProvider",
]

log = structlog.get_logger("avatarstack.avatars.liveavatar")

#: the only avatar sandbox sessions may use ("Wayne", LiveAvatar's sandbox docs)
WAYNE_AVATAR_ID = "dd73ea75-1218-4ef3-92ce-606d5f7fbc0a"
#: LiveAvatar closes a session after 5 minutes without keep-alive or command
IDLE_TIMEOUT_SECONDS = 300
#: the longest text one speak command carries. LiveAvatar documents no limit; the legacy
#: Interactive Avatar rejected or cut texts of about 1000+ characters, and 1000 characters
#: (≤ 4 KB of UTF-8) stay far below LiveKit's 15 KiB reliable data-packet limit. Shorter
#: utterances also make interrupt and the speaking estimates finer-grained.
MAX_TEXT_LENGTH = 1000

_COMMANDS: dict[str, str] = {"repeat": "avatar.speak_text", "talk": "avatar.speak_response"}
#: SessionEndReasonEnum → the port's ``closed`` reasons
_END_REASONS: dict[str, str] = {
    "USER_CLOSED": "stopped",
    "IDLE_TIMEOUT": "idle_timeout",
    "MAX_DURATION_REACHED": "max_duration",
    "SERVER_ERROR": "error",
    "NO_CREDITS": "no_credits",
    "USER_DISCONNECTED": "user_disconnected",
    "AVATAR_DELETED": "avatar_deleted",
    "ZOMBIE_SESSION_REAP": "reaped",
    "AGENT_HANG_UP": "agent_hang_up",
    "UNKNOWN": "closed",
}
_PAGE_SIZE = 100
#: a bound on pagination, in case ``next`` never ends
_MAX_PAGES = 50
#: how long ``list_languages`` may reuse the last voice listing
_VOICES_FRESH_SECONDS = 60.0
#: ended sessions remembered: commands to them are conflicts without asking LiveAvatar
_ENDED_KEPT = 1024
#: speak texts remembered per session for captions
_TEXTS_KEPT = 64


@dataclass
class _Session:
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


class LiveAvatarProvider:
    """The ``liveavatar`` avatar provider (FULL mode). See the module docstring.

    ``sandbox`` makes every session a free sandbox session (only the Wayne avatar, about one
    minute long); ``SessionRequest.sandbox`` asks for one per session. ``timeout`` bounds each
    HTTP request; idempotent calls (lists, lookups, keep-alive, stop) are retried ``retries``
    times on timeouts, connection errors, 5xx and 429, after ``backoff * 2**n`` seconds plus
    jitter; minting and starting a session are never retried. ``speech_time_scale`` scales the
    estimated speaking time before ``idle`` (0 in tests). ``context_id`` is the LiveAvatar
    context (persona, knowledge, opening text) FULL sessions use; without one LiveAvatar's LLM
    has nothing to answer ``talk`` with.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        commands: CommandChannel,
        clock: Clock,
        name: str = "liveavatar",
        sandbox: bool = False,
        timeout: float = 10.0,
        retries: int = 2,
        speech_time_scale: float = 1.0,
        backoff: float = 0.25,
        context_id: str | None = None,
        max_text_length: int = MAX_TEXT_LENGTH,
    ) -> None:
        if speech_time_scale < 0:
            raise ValueError("speech_time_scale must not be negative")
        if max_text_length < 1:
            raise ValueError("max_text_length must be at least 1")
        if context_id is not None and not _is_uuid(context_id):
            raise ValueError("context_id must be a LiveAvatar context UUID")
        self.name = name
        self.max_text_length = max_text_length
        self.speech_time_scale = speech_time_scale
        self.sandbox = sandbox
        self._http = LiveAvatarHttp(
            api_key, base_url, timeout=timeout, retries=retries, backoff=backoff
        )
        self._commands = commands
        self._clock = clock
        self._context_id = context_id
        self._sessions: dict[str, _Session] = {}
        self._ended: OrderedDict[str, AvatarEventLog | None] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._voices: tuple[float, list[VoiceInfo]] = (0.0, [])

    # ------------------------------------------------------------------ avatars

    async def list_avatars(self) -> Sequence[AvatarInfo]:
        """The account's own avatars, then the public ones; only those ``ACTIVE`` (ready)."""
        found: dict[str, AvatarInfo] = {}
        for path in ("/v1/avatars", "/v1/avatars/public"):
            for item in await self._pages(path, AVATARS):
                info = _avatar_info(item)
                if info is not None and info.id not in found:
                    found[info.id] = info
        return list(found.values())

    async def list_voices(self) -> Sequence[VoiceInfo]:
        """The account's own voices (``voice_type=private``: clones, bound third-party voices),
        then LiveAvatar's public ones; any of them goes into ``avatar_persona.voice_id``."""
        found: dict[str, VoiceInfo] = {}
        for kind in ("private", "public"):
            for item in await self._pages("/v1/voices", VOICES, {"voice_type": kind}):
                info = _voice_info(item)
                if info is not None and info.id not in found:
                    found[info.id] = info
        self._voices = (time.monotonic(), list(found.values()))
        return self._voices[1]

    async def list_languages(self) -> Sequence[str]:
        """The languages of the voices (``avatar_persona.language``), as codes, sorted; a voice
        listing less than a minute old is reused."""
        listed_at, voices = self._voices
        if not voices or time.monotonic() - listed_at > _VOICES_FRESH_SECONDS:
            voices = list(await self.list_voices())
        return sorted({v.language for v in voices if re.match(LANGUAGE_PATTERN, v.language)})

    # ------------------------------------------------------------------ sessions

    async def start_session(self, request: SessionRequest) -> ProviderSession:
        if self._closed:
            raise UnavailableError("the LiveAvatar provider has been shut down")
        sandbox = request.sandbox or self.sandbox
        avatar_id = await self._choose_avatar(request.avatar_id, sandbox)
        minted = await self._http.call(
            "POST", "/v1/sessions/token", TOKEN, body=self._token_body(request, avatar_id, sandbox)
        )
        session_id = _text(minted, "session_id", TOKEN)
        token: str | None = None
        try:
            token = _text(minted, "session_token", TOKEN)
            started = await self._http.call(
                "POST", "/v1/sessions/start", START, auth=Auth(session_token=token)
            )
            livekit = LiveKitCredentials(
                url=_text(started, "livekit_url", START),
                access_token=_text(started, "livekit_client_token", START),
            )
            max_duration = _seconds(started.get("max_session_duration"))
        except asyncio.CancelledError:
            self._background(self._discard(session_id, token))
            raise
        except Exception:
            await self._discard(session_id, token)
            raise
        if started.get("session_id") not in (None, session_id):
            log.warning("liveavatar_start_session_id_differs", session_id=session_id)
        now = self._clock.now()
        self._sessions[session_id] = _Session(
            id=session_id,
            token=token,
            started_at=now,
            last_activity=now,
            max_duration=max_duration,
        )
        log.info(
            "liveavatar_session_started",
            session_id=session_id,
            avatar_id=avatar_id,
            sandbox=sandbox,
            max_duration=max_duration,
        )
        return ProviderSession(
            provider_session_id=session_id,
            livekit=livekit,
            max_duration_seconds=max_duration,
            idle_timeout_seconds=IDLE_TIMEOUT_SECONDS,
        )

    async def speak(self, provider_session_id: str, text: str, mode: SpeakMode) -> str:
        self._check_text(text, mode)
        session = await self._for_command(provider_session_id)
        task_id = str(uuid.uuid4())
        await self._send(
            session,
            {
                "event_id": task_id,
                "event_type": _COMMANDS[mode],
                "session_id": session.id,
                "text": text,
            },
        )
        session.last_activity = self._clock.now()
        session.texts[task_id] = text
        while len(session.texts) > _TEXTS_KEPT:
            session.texts.popitem(last=False)
        if not session.reported and session.id in self._sessions:
            self._estimate(session, task_id, text)
        return task_id

    async def interrupt(self, provider_session_id: str) -> None:
        session = await self._for_command(provider_session_id)
        await self._send(
            session,
            {
                "event_id": str(uuid.uuid4()),
                "event_type": "avatar.interrupt",
                "session_id": session.id,
            },
        )
        session.last_activity = self._clock.now()
        if not session.reported:
            self._hush(session)

    async def keep_alive(self, provider_session_id: str) -> None:
        if provider_session_id in self._ended:
            raise ConflictError("the LiveAvatar session has ended")
        if not _is_uuid(provider_session_id):
            raise ConflictError("there is no such LiveAvatar session (ids are UUIDs)")
        session = self._sessions.get(provider_session_id)
        try:
            await self._session_call(
                "/v1/sessions/keep-alive",
                KEEP_ALIVE,
                provider_session_id,
                session.token if session else None,
                {"session_id": provider_session_id},
            )
        except ConflictError:
            reason = "closed"
            if session is not None:
                reason = await self._end_reason_or(provider_session_id, reason)
            self._end(provider_session_id, reason)
            raise
        if session is not None:
            session.last_activity = self._clock.now()

    async def stop(self, provider_session_id: str) -> None:
        """Stop at LiveAvatar (reason ``USER_CLOSED``); a session that already ended, or that
        LiveAvatar does not know, counts as stopped."""
        session = self._sessions.get(provider_session_id)
        if _is_uuid(provider_session_id):
            try:
                await self._session_call(
                    "/v1/sessions/stop",
                    STOP,
                    provider_session_id,
                    session.token if session else None,
                    {"session_id": provider_session_id, "reason": "USER_CLOSED"},
                )
            except (ConflictError, NotFoundError):
                log.info("liveavatar_session_already_ended", session_id=provider_session_id)
        self._end(provider_session_id, "stopped")

    async def active_sessions(self) -> Sequence[str]:
        items = await self._pages("/v1/sessions", SESSIONS, {"type": "active"})
        return [item["id"] for item in items if isinstance(item.get("id"), str)]

    async def events(self, provider_session_id: str) -> AsyncIterator[AvatarEvent]:
        session = self._sessions.get(provider_session_id)
        if session is not None:
            events = session.events
        elif provider_session_id in self._ended:
            ended = self._ended[provider_session_id]
            if ended is None:
                raise ConflictError("the LiveAvatar session has ended")
            events = ended
        else:
            events = (await self._adopt(provider_session_id)).events
        async for event in events.follow():
            yield event

    def feed(self, provider_session_id: str, vendor_event: Mapping[str, Any]) -> None:
        """Take one ``agent-response`` event of a session's data channel, as LiveAvatar sent
        it (``{event_id, event_type, session_id, source_event_id, …}``).

        ``avatar.speak_started`` → ``speaking``, ``avatar.speak_ended`` → ``idle`` (the task id
        is the ``source_event_id``, i.e. the id :meth:`speak` returned); from the first of them
        on, the session's events follow these reports instead of estimates.
        ``session.stopped`` → ``closed`` with its ``end_reason``. Other events, events of
        sessions this provider does not follow, and events whose own ``session_id`` names
        another session (the old room's, after a renewal) are ignored. Safe to call from any
        coroutine on the provider's event loop (it does not block)."""
        session = self._sessions.get(provider_session_id)
        reported_for = vendor_event.get("session_id")
        if session is None or reported_for not in (None, provider_session_id):
            return  # e.g. the old room's session.stopped after a renewal replaced it
        event_type = vendor_event.get("event_type")
        task = vendor_event.get("source_event_id") or vendor_event.get("event_id")
        task_id = task if isinstance(task, str) else None
        if event_type == "avatar.speak_started":
            self._take_over(session)
            session.speaking_task = task_id
            if task_id is not None and task_id in session.announced:
                session.announced.remove(task_id)
            else:
                text = session.texts.get(task_id) if task_id is not None else None
                self._emit(session, "speaking", task_id=task_id, text=text)
        elif event_type == "avatar.speak_ended":
            self._take_over(session)
            session.speaking_task = None
            self._emit(session, "idle", task_id=task_id)
        elif event_type == "session.stopped":
            self._end(provider_session_id, _reason(vendor_event.get("end_reason")))

    async def ping(self) -> None:
        """A cheap authenticated call: the API key works and LiveAvatar answers."""
        await self._http.call("GET", "/v1/avatars", AVATARS, params={"page": "1", "page_size": "1"})

    async def close(self) -> None:
        """Cancel speech timers, end open event streams with UnavailableError, finish pending
        clean-ups and close the HTTP session. Sessions keep running at LiveAvatar (the avatar
        service stops or reconciles them); a second close does nothing."""
        if self._closed:
            return
        self._closed = True
        for session in self._sessions.values():
            _cancel(session)
            session.events.fail(
                UnavailableError(
                    "the LiveAvatar provider was shut down; this session's events are no longer "
                    "followed"
                )
            )
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._http.timeout)
            for task in list(self._tasks):
                task.cancel()
        await self._http.close()

    # ------------------------------------------------------------------ helpers: starting

    async def _choose_avatar(self, avatar_id: str | None, sandbox: bool) -> str:
        if avatar_id is not None:
            if not _is_uuid(avatar_id):
                raise NotFoundError(
                    f"there is no LiveAvatar avatar {avatar_id[:64]!r}: LiveAvatar avatar ids are "
                    "UUIDs (legacy HeyGen avatar names do not work on LiveAvatar)"
                )
            return avatar_id
        if sandbox:
            return WAYNE_AVATAR_ID
        avatars = await self.list_avatars()
        if not avatars:
            raise NotFoundError(
                "the LiveAvatar account has no ready (ACTIVE) avatar; create one at "
                "app.liveavatar.com or choose a public one"
            )
        return avatars[0].id

    def _token_body(self, request: SessionRequest, avatar_id: str, sandbox: bool) -> dict[str, Any]:
        persona: dict[str, Any] = {}
        if request.voice_id is not None:
            if not _is_uuid(request.voice_id):
                raise InvalidInputError(
                    "LiveAvatar voice ids are UUIDs",
                    [FieldError("body.voice_id", "must be a LiveAvatar voice UUID")],
                )
            persona["voice_id"] = request.voice_id
        if request.language:
            persona["language"] = request.language
        if self._context_id is not None:
            persona["context_id"] = self._context_id
        body: dict[str, Any] = {
            "mode": "FULL",
            "avatar_id": avatar_id,
            "is_sandbox": sandbox,
            "avatar_persona": persona,
        }
        if request.quality is not None:
            body["video_settings"] = {"quality": request.quality, "encoding": "H264"}
        return body

    async def _discard(self, session_id: str, token: str | None) -> None:
        """Stop a session whose start failed half-way, so nothing is left running (or billed)."""
        try:
            await self._session_call(
                "/v1/sessions/stop",
                STOP,
                session_id,
                token,
                {"session_id": session_id, "reason": "USER_CLOSED"},
            )
        except (ConflictError, NotFoundError):
            pass
        except AvatarstackError as exc:
            log.warning(
                "liveavatar_failed_start_not_stopped", session_id=session_id, error=exc.code
            )
        else:
            log.info("liveavatar_failed_start_stopped", session_id=session_id)

    # ------------------------------------------------------------------ helpers: commands

    def _check_text(self, text: str, mode: str) -> None:
        check_speech(text, mode, self.max_text_length, "LiveAvatar")

    async def _for_command(self, provider_session_id: str) -> _Session:
        """The open session a command goes to, or ConflictError."""
        if self._closed:
            raise UnavailableError("the LiveAvatar provider has been shut down")
        session = self._sessions.get(provider_session_id)
        if session is None:
            if provider_session_id in self._ended:
                raise ConflictError("the LiveAvatar session has ended")
            return await self._adopt(provider_session_id)
        now = self._clock.now()
        idle = (now - session.last_activity).total_seconds() >= IDLE_TIMEOUT_SECONDS
        capped = (
            session.max_duration is not None
            and (now - session.started_at).total_seconds() >= session.max_duration
        )
        if (idle or capped) and await self._ended_at_vendor(session):
            raise ConflictError("the LiveAvatar session has ended (idle timeout or duration cap)")
        return session

    async def _adopt(self, provider_session_id: str) -> _Session:
        """Follow a session another instance (or this one before a restart) started."""
        if not _is_uuid(provider_session_id):
            raise ConflictError("there is no such LiveAvatar session (ids are UUIDs)")
        reason = await self._end_reason(provider_session_id)
        if reason is not None:
            self._remember_ended(provider_session_id, None)
            raise ConflictError("the LiveAvatar session has ended")
        now = self._clock.now()
        session = self._sessions.setdefault(
            provider_session_id,
            _Session(
                id=provider_session_id,
                token=None,
                started_at=now,
                last_activity=now,
                max_duration=None,
            ),
        )
        log.info("liveavatar_session_adopted", session_id=provider_session_id)
        return session

    async def _send(self, session: _Session, command: dict[str, Any]) -> None:
        try:
            await self._commands.send(session.id, command)
        except UnavailableError:
            # the room is gone when LiveAvatar closed the session: tell that apart
            if await self._ended_at_vendor(session):
                raise ConflictError("the LiveAvatar session has ended") from None
            raise
        except AvatarstackError:
            raise
        except Exception as exc:
            raise UnavailableError(
                "the command could not be sent on the avatar's data channel"
            ) from exc

    def _estimate(self, session: _Session, task_id: str, text: str) -> None:
        duration = estimate_speech_seconds(text)
        now = asyncio.get_running_loop().time()
        session.busy_until = max(now, session.busy_until) + duration * self.speech_time_scale
        session.speaking_task = task_id
        session.announced.append(task_id)
        self._emit(session, "speaking", task_id=task_id, duration_seconds=duration, text=text)
        if session.idle_timer is not None:
            session.idle_timer.cancel()
        session.idle_timer = asyncio.create_task(
            self._idle_after(session, task_id, session.busy_until - now)
        )

    async def _idle_after(self, session: _Session, task_id: str, delay: float) -> None:
        await asyncio.sleep(max(delay, 0.0))
        if session.idle_timer is asyncio.current_task():
            session.idle_timer = None
        if session.speaking_task is not None and self._sessions.get(session.id) is session:
            session.speaking_task = None
            session.busy_until = 0.0
            self._emit(session, "idle", task_id=task_id)

    def _hush(self, session: _Session) -> None:
        """After an interrupt: the estimated speech is over at once."""
        _cancel(session)
        session.busy_until = 0.0
        if session.speaking_task is not None:
            task_id, session.speaking_task = session.speaking_task, None
            self._emit(session, "idle", task_id=task_id)

    def _take_over(self, session: _Session) -> None:
        """LiveAvatar reports speech for this session: stop estimating it."""
        if not session.reported:
            session.reported = True
            _cancel(session)
            session.busy_until = 0.0

    # ------------------------------------------------------------------ helpers: state

    async def _session_call(
        self,
        path: str,
        endpoint: Endpoint,
        session_id: str,
        token: str | None,
        body: dict[str, Any],
    ) -> None:
        """A per-session POST: with the session token, else (or when LiveAvatar refuses the
        token) with the API key and the ``session_id`` in the body."""
        if token is not None:
            try:
                await self._http.call(
                    "POST",
                    path,
                    endpoint,
                    auth=Auth(session_token=token),
                    body=body,
                    require_data=False,
                )
                return
            except SessionTokenRejectedError:
                log.info(
                    "liveavatar_session_token_refused",
                    session_id=session_id,
                    endpoint=endpoint.label,
                )
        await self._http.call("POST", path, endpoint, auth=API_KEY, body=body, require_data=False)

    async def _end_reason(self, session_id: str) -> str | None:
        """None while LiveAvatar runs the session; the port's reason once it ended.
        ConflictError when LiveAvatar does not know it."""
        data = await self._http.call("GET", f"/v1/sessions/{session_id}", SESSION)
        if not isinstance(data, dict):
            raise UpstreamError("LiveAvatar answered the session lookup with something else")
        if data.get("end_reason") or data.get("end_at"):
            return _reason(data.get("end_reason"))
        return None

    async def _end_reason_or(self, session_id: str, default: str) -> str:
        try:
            return await self._end_reason(session_id) or default
        except AvatarstackError:
            return default

    async def _ended_at_vendor(self, session: _Session) -> bool:
        """Ask LiveAvatar whether the session ended; if so, close it here too. An unanswered
        question counts as "still running" (the caller then reports its own error)."""
        try:
            reason = await self._end_reason(session.id)
        except ConflictError:
            reason = "closed"
        except AvatarstackError as exc:
            log.info("liveavatar_session_lookup_failed", session_id=session.id, error=exc.code)
            return False
        if reason is None:
            return False
        self._end(session.id, reason)
        return True

    def _end(self, session_id: str, reason: str) -> None:
        """Forget the session's token and timers and close its event stream (once)."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            if session_id not in self._ended:
                self._remember_ended(session_id, None)
            return
        session.token = None
        _cancel(session)
        session.speaking_task = None
        self._emit(session, "closed", reason=reason)
        self._remember_ended(session_id, session.events)
        log.info("liveavatar_session_ended", session_id=session_id, reason=reason)

    def _remember_ended(self, session_id: str, events: AvatarEventLog | None) -> None:
        self._ended[session_id] = events
        self._ended.move_to_end(session_id)
        while len(self._ended) > _ENDED_KEPT:
            self._ended.popitem(last=False)

    def _emit(
        self,
        session: _Session,
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

    async def _pages(
        self, path: str, endpoint: Endpoint, params: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Every ``results`` item of a paginated list (``{count, next, previous, results}``)."""
        items: list[dict[str, Any]] = []
        for page in range(1, _MAX_PAGES + 1):
            data = await self._http.call(
                "GET",
                path,
                endpoint,
                params={**(params or {}), "page": str(page), "page_size": str(_PAGE_SIZE)},
            )
            results = data.get("results") if isinstance(data, dict) else None
            if not isinstance(results, list):
                raise UpstreamError(
                    f"LiveAvatar answered the {endpoint.label} without a list of results"
                )
            items.extend(item for item in results if isinstance(item, dict))
            if not data.get("next") or not results:
                break
        return items

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _cancel(session: _Session) -> None:
    if session.idle_timer is not None:
        session.idle_timer.cancel()
        session.idle_timer = None


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def _text(data: Any, key: str, endpoint: Endpoint) -> str:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        raise UpstreamError(
            f"LiveAvatar answered the {endpoint.label} without {key}; the API may have changed"
        )
    return value


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)


def _reason(end_reason: Any) -> str:
    if not isinstance(end_reason, str) or not end_reason:
        return "closed"
    return _END_REASONS.get(end_reason, end_reason.lower())


def _avatar_info(item: Mapping[str, Any]) -> AvatarInfo | None:
    avatar_id = item.get("id")
    if item.get("status") != "ACTIVE" or item.get("is_expired") or not isinstance(avatar_id, str):
        return None
    name = item.get("name")
    preview = item.get("preview_url")
    voice = item.get("default_voice")
    voice_id = voice.get("id") if isinstance(voice, dict) else None
    return AvatarInfo(
        id=avatar_id,
        name=name if isinstance(name, str) and name else avatar_id,
        preview_url=preview if isinstance(preview, str) else None,
        default_voice_id=voice_id if isinstance(voice_id, str) else None,
    )


def _voice_info(item: Mapping[str, Any]) -> VoiceInfo | None:
    voice_id, name = item.get("id"), item.get("name")
    language, gender = item.get("language"), item.get("gender")
    if not isinstance(voice_id, str) or not voice_id:
        return None
    return VoiceInfo(
        id=voice_id,
        name=name if isinstance(name, str) and name else voice_id,
        language=language if isinstance(language, str) else "",
        gender=gender if isinstance(gender, str) and gender else None,
    )
