"""HeyGen Interactive (Streaming) Avatar, the legacy ``api.heygen.com/v1/streaming.*`` API, as an
:class:`~avatarstack.ports.avatar.AvatarProvider`.

A session is three calls: ``streaming.create_token`` (API key) → ``streaming.new`` (Bearer session
token, ``version: "v2"`` = LiveKit) → ``streaming.start``. The browser joins the LiveKit room with
the returned ``url`` + ``access_token``; the server drives ``task`` / ``interrupt`` /
``keep_alive`` / ``stop`` over REST.

Credentials, as HeyGen's own SDK and its backend pattern (SDK PR #69) use them: the API key
(``x-api-key``) mints tokens and reads the lists; each session's calls carry that session's
one-time token as ``Authorization: Bearer``. HeyGen's API reference
(https://docs.heygen.com/reference) also says a backend may call every endpoint with the API
key, so when we hold no token for a session (after a restart) or HeyGen rejects it (reported at
the one-hour mark), the call is repeated once with the API key — a 401 means nothing was done,
so even ``task`` is safe to repeat. Session tokens live only in memory, are dropped when the
session ends and are never logged.

Events are derived, not received (HeyGen sends ``avatar_start_talking``/``…stop_talking`` to
the browser over LiveKit only): ``speaking`` when a task starts, ``idle`` after its duration
(HeyGen's ``duration_ms`` or :func:`~avatarstack.core.speech.estimate_speech_seconds`, times
``speech_time_scale``; tasks queue one after another as at HeyGen), ``closed`` on ``stop`` or
when HeyGen answers that the session is closed (``400006``). HeyGen closes idle or over-long
sessions silently, so that ``closed`` arrives with the next call (``keep_alive`` runs
regularly); its reason (``idle_timeout``/``max_duration``) is inferred from the clock.

The HTTP calls go through ``_http`` (on the shared ``adapters/vendorhttp``), their 4xx answers
become port errors in ``_errors``, the session state and derived events live in ``_sessions``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from avatarstack.adapters.heygen import _parse
from avatarstack.adapters.heygen._errors import refusal_error
from avatarstack.adapters.heygen._http import (
    API_KEY_SETTING,
    Credential,
    HeyGenHttp,
    HeyGenRefusal,
    log,
)
from avatarstack.adapters.heygen._sessions import SessionBook, SessionState
from avatarstack.core.speech import check_speech, estimate_speech_seconds
from avatarstack.ports.avatar import (
    AvatarEvent,
    AvatarInfo,
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
    UpstreamError,
)

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "MAX_IDLE_TIMEOUT",
    "MAX_TEXT_LENGTH",
    "MIN_IDLE_TIMEOUT",
    "STREAMING_LANGUAGES",
    "HeyGenAvatarProvider",
]

#: one ``speak`` call's limit. HeyGen rejects or truncates text of "about 1000+" characters
#: (HeyGen-Official/StreamingAvatar #18, a single report): 800 keeps a fifth of margin under an
#: approximate threshold, and callers split text into sentences anyway.
MAX_TEXT_LENGTH = 800
#: HeyGen's ``activity_idle_timeout``: default and allowed range in seconds
DEFAULT_IDLE_TIMEOUT = 120
MIN_IDLE_TIMEOUT = 30
MAX_IDLE_TIMEOUT = 3600
#: the API has low (360p), medium (480p) and high (720p) only
_QUALITY = {"low": "low", "medium": "medium", "high": "high", "very_high": "high"}
#: the ``language`` codes HeyGen's Interactive Avatar demo offers for ``streaming.new``
STREAMING_LANGUAGES: tuple[str, ...] = (
    "bg",
    "cs",
    "da",
    "de",
    "el",
    "en",
    "es",
    "fi",
    "fr",
    "hi",
    "hu",
    "id",
    "it",
    "ja",
    "ko",
    "ms",
    "nl",
    "no",
    "pl",
    "pt",
    "ro",
    "ru",
    "sk",
    "sv",
    "tr",
    "uk",
    "vi",
    "zh",
)


class HeyGenAvatarProvider:
    """An ``AvatarProvider`` for HeyGen's legacy Interactive Avatar API.

    ``timeout`` bounds each request (``start_timeout`` the slower ``streaming.new`` and
    ``streaming.start``; users report 6 to 7 s for ``new``); ``retries`` extra attempts with
    exponential backoff (``backoff`` seconds, doubled, with jitter) are made for the idempotent
    calls only — lists, ``keep_alive``, ``interrupt``, ``stop`` — never for ``create_token``,
    ``new``, ``start`` or ``task``. ``speech_time_scale`` multiplies the time between a
    ``speaking`` event and its ``idle`` (0 in tests).
    """

    max_text_length: int = MAX_TEXT_LENGTH

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        clock: Clock,
        name: str = "heygen",
        timeout: float = 10.0,
        retries: int = 2,
        speech_time_scale: float = 1.0,
        start_timeout: float | None = None,
        backoff: float = 0.5,
    ) -> None:
        if not api_key:
            raise ValueError(f"the HeyGen avatar provider needs an API key ({API_KEY_SETTING})")
        self.name = name
        self._api_key = Credential("api_key", api_key)
        self._clock = clock
        self._timeout = timeout
        self._start_timeout = start_timeout if start_timeout is not None else max(timeout, 30.0)
        self._http = HeyGenHttp(
            base_url, timeout=timeout, retries=retries, backoff=backoff, vendor="HeyGen"
        )
        self._book = SessionBook(
            clock,
            speech_time_scale=max(0.0, speech_time_scale),
            default_idle_timeout=DEFAULT_IDLE_TIMEOUT,
        )
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self._http.base_url!r})"

    # ------------------------------------------------------------------ lists

    async def ping(self) -> None:
        """Readiness: the cheapest authenticated call (the running sessions)."""
        await self.active_sessions()

    async def list_avatars(self) -> Sequence[AvatarInfo]:
        envelope = await self._get("v1/streaming/avatar.list", action="list the avatars")
        return _parse.avatars(envelope)

    async def list_voices(self) -> Sequence[VoiceInfo]:
        """The account's voices that can stream (``voice.list`` marks them ``support_realtime``);
        any of them goes into ``streaming.new``'s ``voice.voice_id``."""
        envelope = await self._get("v1/voice.list", action="list the voices")
        return _parse.voices(envelope)

    async def list_languages(self) -> Sequence[str]:
        """``streaming.new``'s ``language`` codes. HeyGen's API reference lists none, so these
        are the ones its own demo offers (``STT_LANGUAGE_LIST`` in ``app/lib/constants.ts`` of
        github.com/HeyGen-Official/InteractiveAvatarNextJSDemo)."""
        return STREAMING_LANGUAGES

    async def active_sessions(self) -> Sequence[str]:
        envelope = await self._get("v1/streaming.list", action="list the running sessions")
        return _parse.running_session_ids(envelope)

    # ------------------------------------------------------------------ session lifecycle

    async def start_session(self, request: SessionRequest) -> ProviderSession:
        idle_timeout = _idle_timeout(request.idle_timeout_seconds)
        if request.sandbox:  # the legacy API has none; trial API keys play that role
            log.info("heygen_sandbox_not_offered")
        body = _without_none(
            {
                "version": "v2",  # LiveKit; v1 (raw WebRTC) is gone
                "avatar_id": request.avatar_id,
                "quality": _QUALITY[request.quality] if request.quality else None,
                "voice": {"voice_id": request.voice_id} if request.voice_id else None,
                "language": request.language,
                "activity_idle_timeout": idle_timeout,
                "video_encoding": "H264",  # what HeyGen's SDK always sends
            }
        )
        token = await self._create_token()
        try:
            envelope, token_ok = await self._post_as(
                token, "v1/streaming.new", body, idempotent=False, time_limit=self._start_timeout
            )
        except HeyGenRefusal as refusal:
            raise refusal_error(
                refusal, "create a session", avatar_id=request.avatar_id, starting=True
            ) from refusal
        created = _parse.new_session(envelope)  # without an id there is nothing to stop
        session_token = token if token_ok else None
        try:
            if created.url is None or created.access_token is None:
                raise UpstreamError(
                    "HeyGen answered streaming.new without the LiveKit url and access_token; "
                    "its API may have changed — report this with the time it happened"
                )
            try:
                _, token_ok = await self._post_as(
                    session_token,
                    "v1/streaming.start",
                    {"session_id": created.session_id},
                    idempotent=False,
                    time_limit=self._start_timeout,
                )
            except HeyGenRefusal as refusal:
                raise refusal_error(
                    refusal, "start the session", session_id=created.session_id, starting=True
                ) from refusal
        except BaseException:
            await self._abandon(created.session_id, session_token)
            raise
        now = self._clock.now()
        self._book.remember(
            SessionState(
                session_id=created.session_id,
                token=session_token if token_ok else None,
                started_at=now,
                idle_timeout=float(idle_timeout),
                max_duration=created.duration_limit,
                last_activity=now,
                busy_until=now,
            )
        )
        log.info(
            "heygen_session_started",
            session_id=created.session_id,
            avatar_id=request.avatar_id,
            idle_timeout=idle_timeout,
            max_duration=created.duration_limit,
        )
        return ProviderSession(
            provider_session_id=created.session_id,
            livekit=LiveKitCredentials(url=created.url, access_token=created.access_token),
            max_duration_seconds=created.duration_limit,
            idle_timeout_seconds=float(idle_timeout),
        )

    async def speak(self, provider_session_id: str, text: str, mode: SpeakMode) -> str:
        check_speech(text, mode, self.max_text_length, "HeyGen")
        cleaned = text.strip()
        state = self._book.usable(provider_session_id)
        envelope = await self._session_call(
            provider_session_id,
            state,
            "v1/streaming.task",
            {
                "session_id": provider_session_id,
                "text": cleaned,
                "task_type": mode,
                "task_mode": "async",  # returns at once; speaking/idle events follow
            },
            idempotent=False,
            action="make the avatar speak",
        )
        task_id, seconds = _parse.task(envelope)
        if task_id is None:  # accepted but unnamed: do not make the caller say it twice
            task_id = f"local-{uuid.uuid4().hex}"
            log.warning("heygen_task_without_id", session_id=provider_session_id)
        if seconds is None:
            seconds = estimate_speech_seconds(cleaned)
        state = state or self._book.adopt(provider_session_id)
        self._book.touch(state, seconds)
        self._book.queue_speech(state, task_id, seconds)
        return task_id

    async def interrupt(self, provider_session_id: str) -> None:
        state = self._book.usable(provider_session_id)
        await self._session_call(
            provider_session_id,
            state,
            "v1/streaming.interrupt",
            {"session_id": provider_session_id},
            idempotent=True,
            action="interrupt the avatar",
        )
        state = state or self._book.adopt(provider_session_id)
        self._book.touch(state)
        self._book.silence(state)

    async def keep_alive(self, provider_session_id: str) -> None:
        state = self._book.usable(provider_session_id)
        await self._session_call(
            provider_session_id,
            state,
            "v1/streaming.keep_alive",
            {"session_id": provider_session_id},
            idempotent=True,
            action="keep the session alive",
        )
        self._book.touch(state or self._book.adopt(provider_session_id))

    async def stop(self, provider_session_id: str) -> None:
        state = self._book.get(provider_session_id)
        if state is not None and state.closed is not None:
            return  # we stopped it, or HeyGen told us it ended
        try:
            await self._session_call(
                provider_session_id,
                state,
                "v1/streaming.stop",
                {"session_id": provider_session_id},
                idempotent=True,
                action="stop the session",
            )
        except ConflictError:  # ended at HeyGen already, or never known there
            log.info("heygen_stop_already_ended", session_id=provider_session_id)
            return
        if state is not None:
            self._book.close(state, "stopped")
        log.info("heygen_session_stopped", session_id=provider_session_id)

    async def events(self, provider_session_id: str) -> AsyncIterator[AvatarEvent]:
        state = self._book.get(provider_session_id)
        if state is None:
            raise ConflictError(
                f"HeyGen session {provider_session_id} was not started through this provider; "
                "start a new session"
            )
        while True:
            if state.queue.empty():
                if state.closed is not None:
                    yield state.closed  # a late listener still learns how it ended
                    return
                if self._closed:
                    return
            event = await state.queue.get()
            if event is None:  # close(): the session may still run at HeyGen
                return
            yield event
            if event.type == "closed":
                return

    async def close(self) -> None:
        """Cancel speech timers and end open event streams (without a ``closed`` event:
        sessions are not stopped at HeyGen — the caller stops what it no longer needs). A
        clean-up ``stop`` still in flight gets up to ``timeout`` seconds to finish."""
        self._closed = True
        for state in self._book.sessions.values():
            if state.closed is None:
                state.queue.put_nowait(None)
        if self._background:  # stops of sessions whose start failed: let them finish
            await asyncio.wait(set(self._background), timeout=self._timeout)
        workers = [s.worker for s in self._book.sessions.values() if s.worker is not None]
        workers += list(self._background)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for state in self._book.sessions.values():
            state.worker = None
        await self._http.close()

    # ------------------------------------------------------------------ HTTP + error mapping

    async def _get(self, endpoint: str, *, action: str) -> dict[str, Any]:
        try:
            return await self._http.call("GET", endpoint, credential=self._api_key, idempotent=True)
        except HeyGenRefusal as refusal:
            raise refusal_error(refusal, action) from refusal

    async def _create_token(self) -> str:
        try:
            envelope = await self._http.call(
                "POST",
                "v1/streaming.create_token",
                credential=self._api_key,
                body={},
                idempotent=False,
            )
        except HeyGenRefusal as refusal:
            raise refusal_error(refusal, "create a session token", starting=True) from refusal
        return _parse.session_token(envelope)

    async def _post_as(
        self,
        token: str | None,
        endpoint: str,
        body: dict[str, Any],
        *,
        idempotent: bool,
        time_limit: float | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """POST with the session token if we have one, else (or when HeyGen rejects it) with
        the API key; also says whether the token was accepted."""
        if token is not None:
            try:
                envelope = await self._http.call(
                    "POST",
                    endpoint,
                    credential=Credential("session_token", token),
                    body=body,
                    idempotent=idempotent,
                    time_limit=time_limit,
                )
                return envelope, True
            except HeyGenRefusal as refusal:
                if not refusal.unauthorized:
                    raise
                log.info("heygen_session_token_rejected", endpoint=refusal.endpoint)
        envelope = await self._http.call(
            "POST",
            endpoint,
            credential=self._api_key,
            body=body,
            idempotent=idempotent,
            time_limit=time_limit,
        )
        return envelope, False

    async def _session_call(
        self,
        session_id: str,
        state: SessionState | None,
        endpoint: str,
        body: dict[str, Any],
        *,
        idempotent: bool,
        action: str,
    ) -> dict[str, Any]:
        token = state.token if state is not None else None
        try:
            envelope, token_ok = await self._post_as(token, endpoint, body, idempotent=idempotent)
        except HeyGenRefusal as refusal:
            if state is not None and token is not None and refusal.via == "api_key":
                state.token = None  # HeyGen rejected it before we fell back
            error = refusal_error(refusal, action, session_id=session_id)
            if state is not None and isinstance(error, ConflictError):
                self._book.closed_by_vendor(state)
            raise error from refusal
        if state is not None and token is not None and not token_ok:
            state.token = None
        return envelope

    async def _abandon(self, session_id: str, token: str | None) -> None:
        """Stop a session whose start failed, even when the caller is being cancelled."""
        task = asyncio.ensure_future(self._stop_quietly(session_id, token))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        await asyncio.shield(task)

    async def _stop_quietly(self, session_id: str, token: str | None) -> None:
        try:
            await self._post_as(
                token, "v1/streaming.stop", {"session_id": session_id}, idempotent=True
            )
        except (HeyGenRefusal, AvatarstackError) as exc:
            log.warning("heygen_cleanup_failed", session_id=session_id, error=type(exc).__name__)
            return
        log.info("heygen_session_abandoned", session_id=session_id)

    # ------------------------------------------------------------------ session state + events


def _idle_timeout(requested: int | None) -> int:
    """HeyGen accepts 30 to 3600 s; a value outside is clamped (and reported back in the
    ProviderSession, so the caller schedules keep-alives for what really applies)."""
    if requested is None:
        return DEFAULT_IDLE_TIMEOUT
    used = min(MAX_IDLE_TIMEOUT, max(MIN_IDLE_TIMEOUT, int(requested)))
    if used != requested:
        log.info("heygen_idle_timeout_clamped", requested=requested, used=used)
    return used


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
