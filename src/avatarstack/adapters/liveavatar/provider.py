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

The HTTP calls go through ``_http`` (on the shared ``adapters/vendorhttp``), the request and
response shapes are in ``_models``, the session state and its events in ``_sessions``.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from typing import Any

import structlog

from avatarstack.adapters.liveavatar._http import (
    AVATARS,
    KEEP_ALIVE,
    SESSIONS,
    START,
    STOP,
    TOKEN,
    VOICES,
    Auth,
    LiveAvatarHttp,
)
from avatarstack.adapters.liveavatar._models import (
    avatar_info,
    is_uuid,
    positive_seconds,
    required_text,
    session_end_reason,
    token_body,
    voice_info,
)
from avatarstack.adapters.liveavatar._sessions import SessionBook, SessionState, cancel_timer
from avatarstack.core.speech import check_speech
from avatarstack.ports.avatar import (
    LANGUAGE_PATTERN,
    AvatarEvent,
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
    NotFoundError,
    UnavailableError,
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
#: how long ``list_languages`` may reuse the last voice listing
_VOICES_FRESH_SECONDS = 60.0
#: speak texts remembered per session for captions
_TEXTS_KEPT = 64


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
        if context_id is not None and not is_uuid(context_id):
            raise ValueError("context_id must be a LiveAvatar context UUID")
        self.name = name
        self.max_text_length = max_text_length
        self.sandbox = sandbox
        self._http = LiveAvatarHttp(
            api_key, base_url, timeout=timeout, retries=retries, backoff=backoff
        )
        self._commands = commands
        self._clock = clock
        self._context_id = context_id
        self._book = SessionBook(clock, speech_time_scale=speech_time_scale)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._voices: tuple[float, list[VoiceInfo]] = (0.0, [])

    @property
    def speech_time_scale(self) -> float:
        return self._book.speech_time_scale

    @speech_time_scale.setter
    def speech_time_scale(self, value: float) -> None:
        self._book.speech_time_scale = value

    # ------------------------------------------------------------------ avatars

    async def list_avatars(self) -> Sequence[AvatarInfo]:
        """The account's own avatars, then the public ones; only those ``ACTIVE`` (ready)."""
        found: dict[str, AvatarInfo] = {}
        for path in ("/v1/avatars", "/v1/avatars/public"):
            for item in await self._http.pages(path, AVATARS):
                info = avatar_info(item)
                if info is not None and info.id not in found:
                    found[info.id] = info
        return list(found.values())

    async def list_voices(self) -> Sequence[VoiceInfo]:
        """The account's own voices (``voice_type=private``: clones, bound third-party voices),
        then LiveAvatar's public ones; any of them goes into ``avatar_persona.voice_id``."""
        found: dict[str, VoiceInfo] = {}
        for kind in ("private", "public"):
            for item in await self._http.pages("/v1/voices", VOICES, {"voice_type": kind}):
                info = voice_info(item)
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
            "POST",
            "/v1/sessions/token",
            TOKEN,
            body=token_body(request, avatar_id, sandbox, self._context_id),
        )
        session_id = required_text(minted, "session_id", TOKEN)
        token: str | None = None
        try:
            token = required_text(minted, "session_token", TOKEN)
            started = await self._http.call(
                "POST", "/v1/sessions/start", START, auth=Auth(session_token=token)
            )
            livekit = LiveKitCredentials(
                url=required_text(started, "livekit_url", START),
                access_token=required_text(started, "livekit_client_token", START),
            )
            max_duration = positive_seconds(started.get("max_session_duration"))
        except asyncio.CancelledError:
            self._background(self._http.discard(session_id, token))
            raise
        except Exception:
            await self._http.discard(session_id, token)
            raise
        if started.get("session_id") not in (None, session_id):
            log.warning("liveavatar_start_session_id_differs", session_id=session_id)
        now = self._clock.now()
        self._book.sessions[session_id] = SessionState(
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
        if not session.reported and session.id in self._book.sessions:
            self._book.estimate(session, task_id, text)
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
            self._book.hush(session)

    async def keep_alive(self, provider_session_id: str) -> None:
        if provider_session_id in self._book.ended:
            raise ConflictError("the LiveAvatar session has ended")
        if not is_uuid(provider_session_id):
            raise ConflictError("there is no such LiveAvatar session (ids are UUIDs)")
        session = self._book.sessions.get(provider_session_id)
        try:
            await self._http.session_post(
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
            self._book.end(provider_session_id, reason)
            raise
        if session is not None:
            session.last_activity = self._clock.now()

    async def stop(self, provider_session_id: str) -> None:
        """Stop at LiveAvatar (reason ``USER_CLOSED``); a session that already ended, or that
        LiveAvatar does not know, counts as stopped."""
        session = self._book.sessions.get(provider_session_id)
        if is_uuid(provider_session_id):
            try:
                await self._http.session_post(
                    "/v1/sessions/stop",
                    STOP,
                    provider_session_id,
                    session.token if session else None,
                    {"session_id": provider_session_id, "reason": "USER_CLOSED"},
                )
            except (ConflictError, NotFoundError):
                log.info("liveavatar_session_already_ended", session_id=provider_session_id)
        self._book.end(provider_session_id, "stopped")

    async def active_sessions(self) -> Sequence[str]:
        items = await self._http.pages("/v1/sessions", SESSIONS, {"type": "active"})
        return [item["id"] for item in items if isinstance(item.get("id"), str)]

    async def events(self, provider_session_id: str) -> AsyncIterator[AvatarEvent]:
        session = self._book.sessions.get(provider_session_id)
        if session is not None:
            events = session.events
        elif provider_session_id in self._book.ended:
            ended = self._book.ended[provider_session_id]
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
        self._book.feed(provider_session_id, vendor_event)

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
        for session in self._book.sessions.values():
            cancel_timer(session)
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
            if not is_uuid(avatar_id):
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

    # ------------------------------------------------------------------ helpers: commands

    def _check_text(self, text: str, mode: str) -> None:
        check_speech(text, mode, self.max_text_length, "LiveAvatar")

    async def _for_command(self, provider_session_id: str) -> SessionState:
        """The open session a command goes to, or ConflictError."""
        if self._closed:
            raise UnavailableError("the LiveAvatar provider has been shut down")
        session = self._book.sessions.get(provider_session_id)
        if session is None:
            if provider_session_id in self._book.ended:
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

    async def _adopt(self, provider_session_id: str) -> SessionState:
        """Follow a session another instance (or this one before a restart) started."""
        if not is_uuid(provider_session_id):
            raise ConflictError("there is no such LiveAvatar session (ids are UUIDs)")
        reason = await session_end_reason(self._http, provider_session_id)
        if reason is not None:
            self._book.remember_ended(provider_session_id, None)
            raise ConflictError("the LiveAvatar session has ended")
        now = self._clock.now()
        session = self._book.sessions.setdefault(
            provider_session_id,
            SessionState(
                id=provider_session_id,
                token=None,
                started_at=now,
                last_activity=now,
                max_duration=None,
            ),
        )
        log.info("liveavatar_session_adopted", session_id=provider_session_id)
        return session

    async def _send(self, session: SessionState, command: dict[str, Any]) -> None:
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

    async def _end_reason_or(self, session_id: str, default: str) -> str:
        try:
            return await session_end_reason(self._http, session_id) or default
        except AvatarstackError:
            return default

    async def _ended_at_vendor(self, session: SessionState) -> bool:
        """Ask LiveAvatar whether the session ended; if so, close it here too. An unanswered
        question counts as "still running" (the caller then reports its own error)."""
        try:
            reason = await session_end_reason(self._http, session.id)
        except ConflictError:
            reason = "closed"
        except AvatarstackError as exc:
            log.info("liveavatar_session_lookup_failed", session_id=session.id, error=exc.code)
            return False
        if reason is None:
            return False
        self._book.end(session.id, reason)
        return True

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
