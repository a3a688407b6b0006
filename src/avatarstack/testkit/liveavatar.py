"""A fake HeyGen LiveAvatar server: a real aiohttp app on 127.0.0.1, state in memory.

It follows LiveAvatar's API reference (https://docs.liveavatar.com):

* **Routes**: ``POST /v1/sessions/token``, ``/start``, ``/keep-alive``, ``/stop``,
  ``DELETE /v1/sessions``, ``GET /v1/sessions`` (``type`` required), ``GET /v1/sessions/{id}``
  and ``/transcript``, ``GET /v1/avatars``, ``/v1/avatars/public``, ``/v1/avatars/{id}``,
  ``GET /v1/voices``, contexts CRUD, and the websocket behind each LITE session's ``ws_url``.
  Anything else is a 404.
* **Envelope**: ``{"code": 1000, "data": …, "message": "success"}`` (``success_code`` switches
  to the docs' 100); ``/start`` answers 201. Business errors: a 4xx with ``{"code": 4000,
  "data": null, "message": …}``; schema errors: 422 ``{"detail": [{loc, msg, type}]}``
  (``wrap_validation_errors`` for the re-wrapped variant).
* **Auth**: ``X-API-KEY`` for ``/token`` and the account routes; ``/start`` only with
  ``Authorization: Bearer <session_token>`` (the API key there is a 401); keep-alive and stop take
  either (the API key needs ``session_id`` in the body). Bad credentials: ``unauthorized_status``
  with ``unauthorized_code`` (the real code is unknown).
* **Token validation**: the FULL/LITE union, UUIDs of known avatars, voices and contexts, the
  enums and ranges, ``max_session_duration`` ≤ ``tier_max_session_duration``, a context's
  required ``dynamic_variables``; unknown keys are ignored. Sandbox (``is_sandbox``) allows only
  the Wayne avatar and closes after ``sandbox_duration`` (60 s) as ``MAX_DURATION_REACHED``.
* **Sessions**: ``created`` → ``active`` → ``closed`` with an ``end_reason``; one start per
  token; keep-alive on a closed session is a 400; a second stop is a 200 (``strict_stop``: 400).
  ``max_concurrent`` active sessions per key (over it: ``concurrent_limit_status`` /
  ``concurrent_limit_code``, "Concurrent limit reached…"). Credits: 2 per minute FULL, 1 LITE,
  0 sandbox; a start needs one minute's worth (``enforce_credits``); running out closes sessions
  with ``NO_CREDITS``.
* **Clock**: idle timeout (``idle_timeout``, 300 s; reset by keep-alive and by any data-channel
  or websocket command), the duration cap, sandbox, credits and speech all run on the
  injectable clock (a :class:`~avatarstack.testkit.clock.ManualClock` by default). Time moves
  only with ``await fake.advance(seconds)``; ``await fake.tick()`` applies what is due (every
  request does too, so moving the clock directly also works).
* **FULL data channel**: ``fake.commands`` (:class:`FakeDataChannel`) implements the port's
  ``CommandChannel`` in place of the LiveKit topics ``agent-control``/``agent-response``:
  ``avatar.speak_text`` → ``avatar.speak_started``, ``avatar.transcription``,
  ``avatar.speak_ended`` (after ``seconds_per_word`` per word on the clock; 0: at once);
  ``avatar.speak_response`` → the same with a canned reply built from the context;
  ``avatar.interrupt`` cuts the current utterance; stop or timeout → ``session.stopped``.
  ``listen(callback)`` forwards each event (e.g. to ``LiveAvatarProvider.feed``).
* **LITE websocket**: ``connecting``/``connected`` (``ws_connect_delay``), commands before
  ``connected`` dropped and recorded, ``agent.speak`` checked (base64, even length, ≤ 1 MB, else
  the socket closes), ``agent.speak_started``/``ended`` (bytes / 48000 s on the clock),
  ``agent.interrupt`` → ``agent.speak_interrupted``, ``avatar.*`` ignored, ``closing``/``closed``
  at the end; :meth:`FakeLiveAvatar.drop_websockets` cuts them mid-utterance.
* **Faults**: :meth:`FakeLiveAvatar.inject` per route name (``"token"``, ``"start"``,
  ``"keep-alive"``, ``"stop"``, ``"sessions"``, ``"session"``, ``"avatars"``, …; see
  ``ROUTES``): an error status (before anything happens), a delay, malformed JSON or
  ``data: null`` on a 2xx (after the route did its work). ``rate_limit_per_second``: 429 with
  ``Retry-After`` and ``X-RateLimit-Reset`` per credential and route.
* **Introspection**: ``sessions`` (status, ``end_reason``, ``keep_alives``, data-channel
  ``commands`` and ``responses``, websocket messages, credits), ``active_session_ids``,
  ``stops`` and :meth:`saw_stop`, ``calls`` (requests per route), ``token_requests``,
  ``requests``, ``commands.received``, ``credits``.

Use it as an async context manager::

    async with FakeLiveAvatar(clock=clock) as fake:
        provider = LiveAvatarProvider(
            fake.api_key, fake.base_url, commands=fake.commands, clock=clock
        )

For tests, never for production.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import inspect
import json
import math
import re
import secrets
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from aiohttp import WSMsgType, web

from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import UnavailableError
from avatarstack.testkit._server import LocalServer
from avatarstack.testkit.clock import ManualClock

__all__ = [
    "END_REASONS",
    "ROUTES",
    "WAYNE_AVATAR_ID",
    "DataChannelCommand",
    "FakeAvatar",
    "FakeContext",
    "FakeDataChannel",
    "FakeLiveAvatar",
    "FakeSession",
    "FakeVoice",
    "Fault",
    "StopCall",
    "WebSocketMessage",
]

#: the one avatar sandbox sessions may use
WAYNE_AVATAR_ID = "dd73ea75-1218-4ef3-92ce-606d5f7fbc0a"
#: SessionEndReasonEnum
END_REASONS = frozenset(
    {
        "UNKNOWN",
        "USER_DISCONNECTED",
        "SERVER_ERROR",
        "IDLE_TIMEOUT",
        "NO_CREDITS",
        "USER_CLOSED",
        "AVATAR_DELETED",
        "MAX_DURATION_REACHED",
        "ZOMBIE_SESSION_REAP",
        "AGENT_HANG_UP",
    }
)
#: route names for :meth:`FakeLiveAvatar.inject` and :attr:`FakeLiveAvatar.calls`
ROUTES = (
    "token",
    "start",
    "keep-alive",
    "stop",
    "delete-session",
    "sessions",
    "session",
    "transcript",
    "avatars",
    "avatars-public",
    "avatar",
    "voices",
    "contexts",
    "create-context",
    "context",
    "update-context",
    "delete-context",
    "websocket",
)

_QUALITIES = ("very_high", "high", "medium", "low")
_ENCODINGS = ("VP8", "H264")
_INTERACTIVITY = ("CONVERSATIONAL", "PUSH_TO_TALK")
_STT_PROVIDERS = ("deepgram", "assembly_ai", "gladia", "elevenlabs")
_ELEVENLABS_MODELS = ("eleven_flash_v2_5", "eleven_multilingual_v2")
_FISH_MODELS = ("s1", "s2")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CONCURRENT_MESSAGE = (
    "Concurrent limit reached, please make sure you have closed other sessions under the same "
    "account"
)
_NAMESPACE = uuid.UUID("5a2f0d1e-7c3b-4e8a-9f61-2b4d8c0e7a13")


def _fixed_id(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, name))


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# =========================================================================== records


@dataclass
class FakeAvatar:
    id: str
    name: str
    #: ACTIVE | INIT | DEPLOYING | FAILED (only ACTIVE avatars can start sessions)
    status: str = "ACTIVE"
    type: str = "VIDEO"
    #: listed by /v1/avatars/public (else by /v1/avatars, for the key in ``owner``)
    public: bool = False
    #: the API key that owns a private avatar (None: the fake's main key)
    owner: str | None = None
    preview_url: str | None = None
    default_voice: dict[str, str] | None = None
    is_expired: bool = False

    def as_json(self, created_at: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "space_id": None if self.public else _fixed_id(f"space:{self.owner}"),
            "type": self.type,
            "status": self.status,
            "name": self.name,
            "preview_url": self.preview_url,
            "is_expired": self.is_expired,
            "default_voice": self.default_voice,
            "is_1080p": False,
            "created_at": _iso(created_at),
            "updated_at": _iso(created_at),
            "error_message": "avatar training failed" if self.status == "FAILED" else None,
        }


@dataclass
class FakeVoice:
    id: str
    name: str
    language: str = "en"
    gender: str = "female"
    public: bool = True

    def as_json(self, created_at: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": None,
            "language": self.language,
            "gender": self.gender,
            "created_at": _iso(created_at),
            "updated_at": _iso(created_at),
            "tags": [],
        }


@dataclass
class FakeContext:
    id: str
    name: str
    prompt: str
    opening_text: str
    created_at: datetime
    updated_at: datetime
    links: list[dict[str, Any]] = field(default_factory=list)

    @property
    def required_dynamic_variables(self) -> list[str]:
        return sorted(set(_PLACEHOLDER.findall(self.prompt + "\n" + self.opening_text)))

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }

    def detail(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "prompt": self.prompt,
            "opening_text": self.opening_text,
            "links": self.links,
            "required_dynamic_variables": self.required_dynamic_variables,
        }


@dataclass(frozen=True)
class DataChannelCommand:
    """One message published on a session's ``agent-control`` topic."""

    session_id: str
    event_type: str | None
    event_id: str | None
    #: the whole message, as it arrived (after a JSON round trip)
    payload: dict[str, Any]
    at: datetime
    #: False when the session was not one that acts on it (LITE, or an unknown type)
    accepted: bool


@dataclass(frozen=True)
class WebSocketMessage:
    """One frame a client sent on a LITE session's websocket."""

    session_id: str
    type: str | None
    event_id: str | None
    at: datetime
    #: ``accepted``, ``dropped`` (before ``connected``) or ``rejected`` (ignored or fatal)
    outcome: Literal["accepted", "dropped", "rejected"]
    size: int


@dataclass(frozen=True)
class StopCall:
    """One stop request the fake accepted (``POST /stop`` or ``DELETE /v1/sessions``)."""

    session_id: str
    reason: str
    auth: Literal["bearer", "api_key"]
    route: str
    #: the session's status when the stop arrived (``closed``: a repeated stop)
    status_before: str
    at: datetime


@dataclass
class Fault:
    """What :meth:`FakeLiveAvatar.inject` makes one route do."""

    #: answer this status (with the error envelope) before doing anything
    status: int | None = None
    #: wait this many (real) seconds before answering
    delay: float = 0.0
    #: on a 2xx, send a body that is not JSON (the route did its work)
    malformed_json: bool = False
    #: on a 2xx, send ``data: null`` (the route did its work)
    data_null: bool = False
    #: Retry-After for an injected 429
    retry_after: float | None = None
    #: how many requests it affects (None: until cleared)
    times: int | None = None


@dataclass
class _Utterance:
    event_id: str | None
    text: str
    starts_at: datetime
    ends_at: datetime
    started: bool = False


@dataclass
class _Account:
    credits: float


@dataclass
class FakeSession:
    id: str
    api_key: str
    token: str = field(repr=False)
    mode: Literal["FULL", "LITE"]
    avatar_id: str
    is_sandbox: bool
    #: the token request's body
    config: dict[str, Any]
    created_at: datetime
    status: Literal["created", "active", "closed"] = "created"
    started_at: datetime | None = None
    last_activity_at: datetime | None = None
    max_duration: float | None = None
    end_at: datetime | None = None
    end_reason: str | None = None
    keep_alives: int = 0
    credits_consumed: float = 0.0
    livekit_url: str | None = None
    livekit_client_token: str | None = field(default=None, repr=False)
    livekit_agent_token: str | None = field(default=None, repr=False)
    ws_url: str | None = None
    #: FULL data channel: commands received and ``agent-response`` events sent, in order
    commands: list[DataChannelCommand] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    #: LITE websocket: frames received and events sent
    ws_messages: list[WebSocketMessage] = field(default_factory=list)
    ws_events: list[dict[str, Any]] = field(default_factory=list)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    _ws_secret: str | None = field(default=None, repr=False)
    _utterances: list[_Utterance] = field(default_factory=list, repr=False)
    _speech_free_at: datetime | None = field(default=None, repr=False)
    _sockets: list[web.WebSocketResponse] = field(default_factory=list, repr=False)
    _lite_audio: dict[str, int] = field(default_factory=dict, repr=False)
    _lite_pending: list[tuple[str, datetime]] = field(default_factory=list, repr=False)
    _lite_free_at: datetime | None = field(default=None, repr=False)
    _billed_minutes: int = field(default=0, repr=False)

    @property
    def hybrid(self) -> bool:
        """LITE with the ElevenLabs agent: no ``ws_url``, FULL's data-channel events."""
        return self.mode == "LITE" and bool(self.config.get("elevenlabs_agent_config"))

    @property
    def context_id(self) -> str | None:
        persona = self.config.get("avatar_persona")
        value = persona.get("context_id") if isinstance(persona, dict) else None
        return value if isinstance(value, str) else None

    def spoken(self) -> list[str]:
        """What the avatar was told to say or answered, in order."""
        return [e["transcript"] for e in self.transcript if e["role"] == "avatar"]


class _Refused(Exception):
    """Ends a handler with this error response (caught by the middleware)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


# =========================================================================== data channel

Listener = Callable[[str, dict[str, Any]], object]


class FakeDataChannel:
    """The fake's stand-in for FULL sessions' LiveKit data channel; a ``CommandChannel``.

    ``send`` publishes one command on ``agent-control`` of an active session (otherwise
    UnavailableError, as publishing into a closed room fails). ``listen`` registers a callback
    ``(session_id, event)`` (plain or async) that gets every ``agent-response`` event, e.g.
    ``LiveAvatarProvider.feed``. ``unavailable = True`` makes every send fail as if no
    participant could carry it."""

    def __init__(self, fake: FakeLiveAvatar) -> None:
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


# =========================================================================== the server


class FakeLiveAvatar(LocalServer):
    """LiveAvatar's REST API, FULL data channel and LITE websocket. See the module docstring."""

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
        self.reply: Callable[[str, FakeContext | None], str] = _canned_reply
        # state
        self._created_at = self._clock.now()
        self._accounts: dict[str, _Account] = {api_key: _Account(credits=10_000.0)}
        self.avatars: list[FakeAvatar] = _default_avatars()
        self.voices: list[FakeVoice] = _default_voices()
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

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(self._routes())
        return app

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
        self._accounts[api_key] = _Account(credits=credits)

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

    def inject(
        self,
        route: str,
        *,
        status: int | None = None,
        delay: float = 0.0,
        malformed_json: bool = False,
        data_null: bool = False,
        retry_after: float | None = None,
        times: int | None = None,
    ) -> Fault:
        """Make ``route`` (a name in ``ROUTES``) misbehave; see :class:`Fault`."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; one of {', '.join(ROUTES)}")
        fault = Fault(status, delay, malformed_json, data_null, retry_after, times)
        self._faults[route] = fault
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    async def drop_websockets(self, session_id: str) -> None:
        """Cut a LITE session's websockets without a goodbye (code 1011), e.g. mid-utterance."""
        for ws in list(self.session(session_id)._sockets):
            await ws.close(code=1011, message=b"connection lost")

    async def close_session(self, session_id: str, reason: str = "SERVER_ERROR") -> None:
        """End a session from LiveAvatar's side (a crash, a deleted avatar, …)."""
        session = self.session(session_id)
        if session.status != "closed":
            await self._close(session, reason, self.now())

    # ------------------------------------------------------------------ plumbing

    def _routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/sessions/token", self._token, name="token"),
            web.post("/v1/sessions/start", self._start, name="start"),
            web.post("/v1/sessions/keep-alive", self._keep_alive, name="keep-alive"),
            web.post("/v1/sessions/stop", self._stop, name="stop"),
            web.delete("/v1/sessions", self._delete_session, name="delete-session"),
            web.get("/v1/sessions", self._list_sessions, name="sessions"),
            web.get("/v1/sessions/{session_id}", self._get_session, name="session"),
            web.get("/v1/sessions/{session_id}/transcript", self._transcript, name="transcript"),
            web.get("/v1/avatars", self._list_avatars, name="avatars"),
            web.get("/v1/avatars/public", self._list_public_avatars, name="avatars-public"),
            web.get("/v1/avatars/{avatar_id}", self._get_avatar, name="avatar"),
            web.get("/v1/voices", self._list_voices, name="voices"),
            web.get("/v1/contexts", self._list_contexts, name="contexts"),
            web.post("/v1/contexts", self._create_context, name="create-context"),
            web.get("/v1/contexts/{context_id}", self._get_context, name="context"),
            web.patch("/v1/contexts/{context_id}", self._update_context, name="update-context"),
            web.delete("/v1/contexts/{context_id}", self._delete_context, name="delete-context"),
            web.get("/v1/ws/{secret}", self._websocket, name="websocket"),
        ]

    @web.middleware
    async def _middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        route = request.match_info.route.name
        if route is None:  # aiohttp's 404 and 405, in FastAPI's words
            try:
                return await handler(request)
            except web.HTTPMethodNotAllowed:
                return web.json_response({"detail": "Method Not Allowed"}, status=405)
            except web.HTTPNotFound:
                return web.json_response({"detail": "Not Found"}, status=404)
        self.calls[route] += 1
        await self._apply_timers()
        fault = self._take_fault(route)
        if fault is not None and fault.delay > 0:
            await self._sleep(fault.delay)
        if fault is not None and fault.status is not None:
            return self._injected(fault)
        limited = self._rate_limit(request, route)
        if limited is not None:
            return limited
        try:
            response = await handler(request)
        except _Refused as refused:
            response = refused.response
        if (
            fault is not None
            and isinstance(response, web.Response)
            and 200 <= response.status < 300
        ):
            if fault.malformed_json:
                return web.Response(
                    status=response.status,
                    text='{"code": 1000, "data": {"session_id": "',
                    content_type="application/json",
                )
            if fault.data_null:
                return web.json_response(
                    {"code": self.success_code, "data": None, "message": "success"},
                    status=response.status,
                )
        return response

    def _take_fault(self, route: str) -> Fault | None:
        fault = self._faults.get(route)
        if fault is None:
            return None
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                del self._faults[route]
        return fault

    def _injected(self, fault: Fault) -> web.Response:
        status = fault.status or 500
        headers = {}
        if status == 429:
            headers["Retry-After"] = f"{fault.retry_after or 1:g}"
            message = "Too many requests"
        elif status >= 500:
            message = "Internal server error"
        else:
            message = "Injected failure"
        return web.json_response(
            {"code": status * 10, "data": None, "message": message},
            status=status,
            headers=headers,
        )

    def _rate_limit(self, request: web.Request, route: str) -> web.Response | None:
        limit = self.rate_limit_per_second
        if limit is None:
            return None
        credential = (
            request.headers.get("X-API-KEY") or _bearer(request) or (request.remote or "unknown")
        )
        now = self.now().timestamp()
        window = int(now)
        self._windows[(credential, route, window)] += 1
        if self._windows[(credential, route, window)] <= limit:
            return None
        reset = max(1, math.ceil(window + 1 - now))
        return web.json_response(
            {"code": 4290, "data": None, "message": "Rate limit exceeded"},
            status=429,
            headers={
                "Retry-After": str(reset),
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
            },
        )

    def _ok(self, data: Any, status: int = 200) -> web.Response:
        return web.json_response(
            {"code": self.success_code, "data": data, "message": "success"}, status=status
        )

    @staticmethod
    def _error(status: int, message: str, code: int = 4000) -> _Refused:
        return _Refused(
            web.json_response({"code": code, "data": None, "message": message}, status=status)
        )

    def _invalid(self, loc: list[Any], msg: str, kind: str, value: Any = None) -> _Refused:
        if self.wrap_validation_errors:
            body: dict[str, Any] = {
                "code": 4000,
                "data": [{"message": msg, "loc": loc}],
                "message": "Validation error",
            }
        else:
            body = {"detail": [{"loc": loc, "msg": msg, "type": kind, "input": value}]}
        return _Refused(web.json_response(body, status=422))

    def _unauthorized(self, message: str) -> _Refused:
        return self._error(self.unauthorized_status, message, self.unauthorized_code)

    def _require_api_key(self, request: web.Request) -> str:
        key = request.headers.get("X-API-KEY")
        if not key:
            raise self._unauthorized("Missing API key (X-API-KEY)")
        if key not in self._accounts:
            raise self._unauthorized("Invalid API key")
        return key

    def _by_token(self, request: web.Request) -> FakeSession:
        token = _bearer(request)
        if token is None:
            raise self._unauthorized("Missing session token (Authorization: Bearer)")
        session_id = self._tokens.get(token)
        if session_id is None:
            raise self._unauthorized("Invalid session token")
        return self.sessions[session_id]

    async def _json_object(self, request: web.Request, *, optional: bool = False) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            if optional:
                return {}
            raise self._invalid(["body"], "Field required", "missing")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise self._invalid(["body", 0], "JSON decode error", "json_invalid") from exc
        if not isinstance(body, dict):
            raise self._invalid(["body"], "Input should be a valid dictionary", "dict_type", body)
        return body

    async def _session_for_call(
        self, request: web.Request
    ) -> tuple[FakeSession, Literal["bearer", "api_key"], dict[str, Any]]:
        """Keep-alive and stop: the Bearer token names the session; with the API key the body's
        ``session_id`` does."""
        if _bearer(request) is not None:
            session = self._by_token(request)
            return session, "bearer", await self._json_object(request, optional=True)
        key = self._require_api_key(request)
        body = await self._json_object(request, optional=True)
        session_id = body.get("session_id")
        if session_id is None:
            raise self._error(400, "session_id is required when calling with an API key")
        if not _is_uuid(session_id):
            raise self._invalid(
                ["body", "session_id"], "Input should be a valid UUID", "uuid_parsing", session_id
            )
        found = self.sessions.get(session_id)
        if found is None or found.api_key != key:
            raise self._error(400, f"Session {session_id} not found")
        return found, "api_key", body

    def _owns(self, avatar: FakeAvatar, key: str) -> bool:
        return (avatar.owner or self._api_key) == key

    def _visible_avatar(self, avatar_id: str, key: str) -> FakeAvatar | None:
        for avatar in self.avatars:
            if avatar.id == avatar_id and (avatar.public or self._owns(avatar, key)):
                return avatar
        return None

    def _paging(self, request: web.Request) -> tuple[int, int]:
        values = []
        for name, default, low, high in (("page", 1, 1, None), ("page_size", 20, 1, 100)):
            raw = request.query.get(name)
            if raw is None:
                values.append(default)
                continue
            try:
                value = int(raw)
            except ValueError:
                raise self._invalid(
                    ["query", name], "Input should be a valid integer", "int_parsing", raw
                ) from None
            if value < low or (high is not None and value > high):
                bound = f"greater than or equal to {low}" if value < low else f"at most {high}"
                raise self._invalid(["query", name], f"Input should be {bound}", "range", raw)
            values.append(value)
        return values[0], values[1]

    def _page(self, request: web.Request, items: list[dict[str, Any]]) -> dict[str, Any]:
        page, size = self._paging(request)
        start = (page - 1) * size
        url = request.url
        return {
            "count": len(items),
            "next": str(url.update_query(page=page + 1)) if start + size < len(items) else None,
            "previous": str(url.update_query(page=page - 1)) if page > 1 else None,
            "results": items[start : start + size],
        }

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
        session._utterances.append(_Utterance(event_id, text, starts, ends))
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

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        secret = request.match_info["secret"]
        session = next((s for s in self.sessions.values() if s._ws_secret == secret), None)
        if session is None or session.status != "active":
            raise self._error(404, "Unknown or closed session websocket")
        ws = web.WebSocketResponse(max_msg_size=4 * self.max_ws_message_bytes)
        await ws.prepare(request)
        session._sockets.append(ws)
        connected = asyncio.Event()
        await ws.send_json({"type": "session.state_updated", "state": "connecting"})
        session.ws_events.append({"type": "session.state_updated", "state": "connecting"})
        announcer = asyncio.create_task(self._announce(session, ws, connected))
        self._background.add(announcer)
        announcer.add_done_callback(self._background.discard)
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._on_ws_text(session, ws, message.data, connected.is_set())
                elif message.type == WSMsgType.BINARY:
                    session.ws_messages.append(
                        WebSocketMessage(
                            session.id, None, None, self.now(), "rejected", len(message.data)
                        )
                    )
        finally:
            announcer.cancel()
            if ws in session._sockets:
                session._sockets.remove(ws)
        return ws

    async def _announce(
        self, session: FakeSession, ws: web.WebSocketResponse, connected: asyncio.Event
    ) -> None:
        await self._sleep(self.ws_connect_delay)
        if not ws.closed and session.status == "active":
            connected.set()
            event = {"type": "session.state_updated", "state": "connected"}
            session.ws_events.append(event)
            await ws.send_json(event)

    async def _on_ws_text(
        self, session: FakeSession, ws: web.WebSocketResponse, data: str, connected: bool
    ) -> None:
        await self._apply_timers()
        now = self.now()
        size = len(data.encode())

        def record(kind: str | None, event_id: Any, outcome: Any) -> None:
            session.ws_messages.append(
                WebSocketMessage(
                    session.id,
                    kind,
                    event_id if isinstance(event_id, str) else None,
                    now,
                    outcome,
                    size,
                )
            )

        if session.status != "active":
            return
        if size > self.max_ws_message_bytes:
            record(None, None, "rejected")
            await ws.close(code=1009, message=b"message too big")
            return
        try:
            payload = json.loads(data)
        except ValueError:
            record(None, None, "rejected")
            return
        if not isinstance(payload, dict):
            record(None, None, "rejected")
            return
        kind, event_id = payload.get("type"), payload.get("event_id")
        kind = kind if isinstance(kind, str) else None
        if not connected:
            record(kind, event_id, "dropped")
            return
        if kind is None or kind.startswith("avatar.") or kind not in _LITE_COMMANDS:
            record(kind, event_id, "rejected")
            return
        session.last_activity_at = now
        if kind == "agent.speak":
            try:
                audio = base64.b64decode(payload.get("audio", ""), validate=True)
            except (binascii.Error, ValueError, TypeError):
                audio = None
            if audio is None or len(audio) % 2 or not isinstance(event_id, str):
                record(kind, event_id, "rejected")
                await ws.close(code=1003, message=b"invalid audio")
                return
            if event_id not in session._lite_audio:
                session._lite_audio[event_id] = 0
                await self._ws_send(
                    session,
                    {"type": "agent.speak_started", "event_id": event_id, "task": {"id": event_id}},
                )
            session._lite_audio[event_id] += len(audio)
        elif kind == "agent.speak_end" and isinstance(event_id, str):
            audio_bytes = session._lite_audio.pop(event_id, None)
            if audio_bytes is not None:
                starts = max(now, session._lite_free_at or now)
                ends = starts + timedelta(seconds=audio_bytes / 48000)
                session._lite_pending.append((event_id, ends))
                session._lite_free_at = ends
        elif kind == "agent.interrupt":
            cut = next(iter(session._lite_pending), None)
            current = cut[0] if cut else next(iter(session._lite_audio), None)
            session._lite_audio.clear()
            session._lite_pending.clear()
            session._lite_free_at = None
            await self._ws_send(
                session, {"type": "agent.speak_interrupted", "event_id": event_id or current}
            )
        elif kind == "session.keep_alive":
            session.keep_alives += 1
        record(kind, event_id, "accepted")
        await self._progress(session, now)

    # ------------------------------------------------------------------ sessions

    async def _token(self, request: web.Request) -> web.Response:
        key = self._require_api_key(request)
        body = await self._json_object(request)
        self.token_requests.append(body)
        mode, avatar_id, sandbox = self._validate_token(body, key)
        session = FakeSession(
            id=str(uuid.uuid4()),
            api_key=key,
            token="eyJ" + secrets.token_urlsafe(48),
            mode=mode,
            avatar_id=avatar_id,
            is_sandbox=sandbox,
            config=body,
            created_at=self.now(),
        )
        self.sessions[session.id] = session
        self._tokens[session.token] = session.id
        return self._ok({"session_id": session.id, "session_token": session.token})

    def _validate_token(self, body: dict[str, Any], key: str) -> tuple[Any, str, bool]:
        mode = body.get("mode", "FULL")
        if mode not in ("FULL", "LITE"):
            raise self._invalid(
                ["body", "mode"], "Input should be 'FULL' or 'LITE'", "literal_error", mode
            )
        branch = "Full Mode" if mode == "FULL" else "Lite Mode"
        loc = ["body", branch]
        avatar_id = body.get("avatar_id")
        if not isinstance(avatar_id, str):
            raise self._invalid([*loc, "avatar_id"], "Field required", "missing")
        sandbox = body.get("is_sandbox", False)
        if not isinstance(sandbox, bool):
            raise self._invalid(
                [*loc, "is_sandbox"], "Input should be a valid boolean", "bool_parsing", sandbox
            )
        self._check_object(
            body,
            "video_settings",
            loc,
            {"quality": _QUALITIES, "encoding": _ENCODINGS},
        )
        duration = body.get("max_session_duration")
        if duration is not None and (
            isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0
        ):
            raise self._invalid(
                [*loc, "max_session_duration"],
                "Input should be a positive integer",
                "int_parsing",
                duration,
            )
        self._check_dynamic_variables(body.get("dynamic_variables"), loc)
        memory = body.get("memory")
        if memory is not None:
            if not isinstance(memory, dict):
                raise self._invalid([*loc, "memory"], "Input should be an object", "dict_type")
            for name in ("prev_session_id", "session_memory_id"):
                if memory.get(name) is not None and not _is_uuid(memory[name]):
                    raise self._invalid(
                        [*loc, "memory", name], "Input should be a valid UUID", "uuid_parsing"
                    )
        if mode == "FULL":
            self._validate_full(body, loc)
        else:
            self._validate_lite(body, loc)
        # business rules (400/4000) after the schema
        avatar = self._visible_avatar(avatar_id, key) if _is_uuid(avatar_id) else None
        if avatar is None:
            raise self._error(400, f"Avatar {avatar_id} not found in your space")
        if avatar.status != "ACTIVE" or avatar.is_expired:
            raise self._error(400, f"Avatar {avatar_id} is not ready (status {avatar.status})")
        if sandbox and avatar_id != WAYNE_AVATAR_ID:
            raise self._error(
                400, f"Sandbox mode only supports the Wayne avatar ({WAYNE_AVATAR_ID})"
            )
        if duration is not None and duration > self.tier_max_session_duration:
            raise self._error(
                400,
                f"max_session_duration exceeds your plan's limit of "
                f"{self.tier_max_session_duration} seconds",
            )
        if mode == "FULL":
            persona = body.get("avatar_persona") or {}
            voice_id = persona.get("voice_id")
            if voice_id and not any(v.id == voice_id for v in self.voices):
                raise self._error(400, f"Voice {voice_id} not found")
            context_id = persona.get("context_id")
            if context_id:
                context = self.contexts.get(context_id)
                if context is None:
                    raise self._error(400, f"Context {context_id} not found")
                given = body.get("dynamic_variables") or {}
                missing = [v for v in context.required_dynamic_variables if v not in given]
                if missing:
                    raise self._error(
                        400, f"Missing required dynamic variables: {', '.join(missing)}"
                    )
        return mode, avatar_id, sandbox

    def _check_object(
        self,
        body: Mapping[str, Any],
        name: str,
        loc: list[Any],
        enums: Mapping[str, tuple[str, ...]],
        required: tuple[str, ...] = (),
    ) -> dict[str, Any] | None:
        value = body.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._invalid([*loc, name], "Input should be an object", "dict_type", value)
        for key in required:
            if not isinstance(value.get(key), str) or not value.get(key):
                raise self._invalid([*loc, name, key], "Field required", "missing")
        for key, allowed in enums.items():
            if key in value and value[key] is not None and value[key] not in allowed:
                raise self._invalid(
                    [*loc, name, key],
                    "Input should be " + ", ".join(repr(a) for a in allowed),
                    "enum",
                    value[key],
                )
        return value

    def _check_dynamic_variables(self, variables: Any, loc: list[Any]) -> None:
        if variables is None:
            return
        where = [*loc, "dynamic_variables"]
        if not isinstance(variables, dict):
            raise self._invalid(where, "Input should be a valid dictionary", "dict_type")
        if len(variables) > 50:
            raise self._invalid(where, "At most 50 dynamic variables", "too_long")
        for name, value in variables.items():
            if len(name) > 64:
                raise self._invalid([*where, name], "Keys are at most 64 characters", "too_long")
            if not isinstance(value, str) or len(value) > 1000:
                raise self._invalid(
                    [*where, name], "Values are strings of at most 1000 characters", "string_type"
                )

    def _validate_full(self, body: dict[str, Any], loc: list[Any]) -> None:
        persona, agent = body.get("avatar_persona"), body.get("voice_agent")
        if persona is None and agent is None:
            raise self._invalid([*loc, "avatar_persona"], "Field required", "missing")
        if persona is not None and agent is not None:
            raise self._invalid(
                loc, "avatar_persona and voice_agent are mutually exclusive", "value_error"
            )
        kind = body.get("interactivity_type")
        if kind is not None and kind not in _INTERACTIVITY:
            raise self._invalid(
                [*loc, "interactivity_type"],
                "Input should be 'CONVERSATIONAL' or 'PUSH_TO_TALK'",
                "enum",
                kind,
            )
        if body.get("llm_configuration_id") is not None and not _is_uuid(
            body["llm_configuration_id"]
        ):
            raise self._invalid(
                [*loc, "llm_configuration_id"], "Input should be a valid UUID", "uuid_parsing"
            )
        if agent is not None:
            agent_obj = self._check_object(body, "voice_agent", loc, {})
            if agent_obj is not None and not _is_uuid(agent_obj.get("id")):
                raise self._invalid(
                    [*loc, "voice_agent", "id"], "Input should be a valid UUID", "uuid_parsing"
                )
            return
        persona_obj = self._check_object(body, "avatar_persona", loc, {})
        assert persona_obj is not None
        where = [*loc, "avatar_persona"]
        for name in ("voice_id", "context_id"):
            value = persona_obj.get(name)
            if value not in (None, "") and not _is_uuid(value):
                raise self._invalid(
                    [*where, name], "Input should be a valid UUID", "uuid_parsing", value
                )
        language = persona_obj.get("language")
        if language is not None and not isinstance(language, str):
            raise self._invalid(
                [*where, "language"], "Input should be a valid string", "string_type"
            )
        self._check_object(persona_obj, "stt_config", where, {"provider": _STT_PROVIDERS})
        self._check_voice_settings(persona_obj.get("voice_settings"), [*where, "voice_settings"])

    def _check_voice_settings(self, settings: Any, where: list[Any]) -> None:
        if settings is None:
            return
        if not isinstance(settings, dict):
            raise self._invalid(where, "Input should be an object", "dict_type")
        provider = settings.get("provider")
        if provider == "elevenLabs":
            ranges = {
                "speed": (0.8, 1.2),
                "stability": (0.0, 1.0),
                "similarity_boost": (0.0, 1.0),
                "style": (0.0, 1.0),
            }
            models: tuple[str, ...] = _ELEVENLABS_MODELS
        elif provider == "fish":
            ranges = {"speed": (0.8, 1.2)}
            models = _FISH_MODELS
        else:
            raise self._invalid(
                [*where, "provider"], "Input should be 'elevenLabs' or 'fish'", "union_tag_invalid"
            )
        for name, (low, high) in ranges.items():
            value = settings.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self._invalid([*where, name], "Input should be a number", "float_parsing")
            if not low <= value <= high:
                raise self._invalid(
                    [*where, name], f"Input should be between {low} and {high}", "range", value
                )
        model = settings.get("model")
        if model is not None and model not in models:
            raise self._invalid([*where, "model"], "Input should be a known model", "enum", model)

    def _validate_lite(self, body: dict[str, Any], loc: list[Any]) -> None:
        self._check_object(
            body,
            "livekit_config",
            loc,
            {},
            required=("livekit_url", "livekit_room", "livekit_client_token"),
        )
        self._check_object(
            body,
            "agora_config",
            loc,
            {},
            required=("agora_app_id", "agora_token", "agora_channel"),
        )
        agora = body.get("agora_config")
        if isinstance(agora, dict) and "agora_uid" not in agora:
            raise self._invalid([*loc, "agora_config", "agora_uid"], "Field required", "missing")
        eleven = self._check_object(body, "elevenlabs_agent_config", loc, {}, ("agent_id",))
        for name, config in (
            ("elevenlabs_agent_config", eleven),
            ("openai_realtime_config", self._check_object(body, "openai_realtime_config", loc, {})),
            ("gemini_realtime_config", self._check_object(body, "gemini_realtime_config", loc, {})),
        ):
            if config is not None and not _is_uuid(config.get("secret_id")):
                raise self._invalid(
                    [*loc, name, "secret_id"], "Input should be a valid UUID", "uuid_parsing"
                )

    async def _start(self, request: web.Request) -> web.Response:
        if _bearer(request) is None and request.headers.get("X-API-KEY"):
            raise self._unauthorized(
                "This endpoint needs the session token (Authorization: Bearer), not the API key"
            )
        session = self._by_token(request)
        if session.status == "active":
            raise self._error(400, "Session already started")
        if session.status == "closed":
            raise self._error(400, "Session is closed")
        account = self._accounts[session.api_key]
        rate = self._rate(session)
        if self.enforce_credits and rate and account.credits < rate:
            raise self._error(
                400, "Insufficient credits: at least one minute of credits is needed to start"
            )
        running = sum(
            1
            for s in self.sessions.values()
            if s.api_key == session.api_key and s.status == "active"
        )
        if running >= self.max_concurrent:
            raise self._error(
                self.concurrent_limit_status, _CONCURRENT_MESSAGE, self.concurrent_limit_code
            )
        now = self.now()
        requested = session.config.get("max_session_duration")
        duration = float(requested or self.tier_max_session_duration)
        if session.is_sandbox:
            duration = min(duration, self.sandbox_duration)
        session.status = "active"
        session.started_at = now
        session.last_activity_at = now
        session.max_duration = duration
        livekit = session.config.get("livekit_config") if session.mode == "LITE" else None
        session.livekit_url = livekit["livekit_url"] if livekit else "wss://fake-livekit.invalid"
        session.livekit_client_token = "lk-client-" + secrets.token_urlsafe(32)
        session.livekit_agent_token = "lk-agent-" + secrets.token_urlsafe(32)
        data: dict[str, Any] = {
            "session_id": session.id,
            "livekit_url": session.livekit_url,
            "livekit_client_token": session.livekit_client_token,
            "livekit_agent_token": session.livekit_agent_token,
            "max_session_duration": int(duration),
        }
        if session.mode == "LITE" and not session.hybrid:
            session._ws_secret = secrets.token_urlsafe(24)
            session.ws_url = f"ws://127.0.0.1:{self._port}/v1/ws/{session._ws_secret}"
            data["ws_url"] = session.ws_url
        context = self.contexts.get(session.context_id or "")
        if session.mode == "FULL" and context is not None and context.opening_text:
            self._enqueue(session, None, context.opening_text)
            await self._progress(session, now)
        return self._ok(data, status=201)

    async def _keep_alive(self, request: web.Request) -> web.Response:
        session, _, _ = await self._session_for_call(request)
        if session.status == "closed":
            raise self._error(400, "Session is closed")
        if session.status != "active":
            raise self._error(400, "Session is not active")
        session.last_activity_at = self.now()
        session.keep_alives += 1
        return self._ok(None)

    async def _stop(self, request: web.Request) -> web.Response:
        session, auth, body = await self._session_for_call(request)
        reason = body.get("reason", "UNKNOWN")
        if reason not in END_REASONS:
            raise self._invalid(
                ["body", "reason"], "Input should be a SessionEndReasonEnum", "enum", reason
            )
        return await self._stop_session(session, reason, auth, "stop")

    async def _delete_session(self, request: web.Request) -> web.Response:
        session = self._by_token(request)
        return await self._stop_session(session, "USER_CLOSED", "bearer", "delete-session")

    async def _stop_session(
        self, session: FakeSession, reason: str, auth: Literal["bearer", "api_key"], route: str
    ) -> web.Response:
        before = session.status
        self.stops.append(StopCall(session.id, reason, auth, route, before, self.now()))
        if before == "closed":
            if self.strict_stop:
                raise self._error(400, "Session is already closed")
            return self._ok(None)
        await self._close(session, reason, self.now())
        return self._ok(None)

    def _entry(self, session: FakeSession) -> dict[str, Any]:
        now = self.now()
        end = session.end_at or now
        duration = (end - session.started_at).total_seconds() if session.started_at else 0
        entry: dict[str, Any] = {
            "id": session.id,
            "created_at": _iso(session.created_at),
            "updated_at": _iso(session.end_at or session.last_activity_at or session.created_at),
            "duration": int(duration),
            "source": "API",
            "mode": session.mode,
            "is_sandbox": session.is_sandbox,
            "credits_consumed": session.credits_consumed,
        }
        if session.status == "closed":
            entry["end_at"] = _iso(session.end_at)
            entry["end_reason"] = session.end_reason
        return entry

    async def _list_sessions(self, request: web.Request) -> web.Response:
        key = self._require_api_key(request)
        kind = request.query.get("type")
        if kind is None:
            raise self._invalid(["query", "type"], "Field required", "missing")
        if kind not in ("active", "historic"):
            raise self._invalid(
                ["query", "type"], "Input should be 'active' or 'historic'", "enum", kind
            )
        wanted = "active" if kind == "active" else "closed"
        filters = {name: request.query.get(name) for name in ("avatar_id", "context_id")}
        items = [
            self._entry(s)
            for s in self.sessions.values()
            if s.api_key == key
            and s.status == wanted
            and filters["avatar_id"] in (None, s.avatar_id)
            and filters["context_id"] in (None, s.context_id)
        ]
        return self._ok(self._page(request, items))

    def _owned_session(self, request: web.Request) -> FakeSession:
        key = self._require_api_key(request)
        session = self.sessions.get(request.match_info["session_id"])
        if session is None or session.api_key != key:
            raise self._error(404, "Session not found")
        return session

    async def _get_session(self, request: web.Request) -> web.Response:
        return self._ok(self._entry(self._owned_session(request)))

    async def _transcript(self, request: web.Request) -> web.Response:
        session = self._owned_session(request)
        bounds = []
        for name in ("start_timestamp", "end_timestamp"):
            raw = request.query.get(name)
            try:
                bounds.append(int(raw) if raw is not None else None)
            except ValueError:
                raise self._invalid(
                    ["query", name], "Input should be a valid integer", "int_parsing", raw
                ) from None
        start, end = bounds
        entries = [
            e
            for e in session.transcript
            if (start is None or e["absolute_timestamp"] >= start)
            and (end is None or e["absolute_timestamp"] < end)
        ]
        page = entries[: self.transcript_page_size]
        rest = entries[self.transcript_page_size :]
        return self._ok(
            {
                "session_active": session.status == "active",
                "next_timestamp": rest[0]["absolute_timestamp"] if rest else None,
                "transcript_data": page,
            }
        )

    # ------------------------------------------------------------------ avatars, voices

    async def _list_avatars(self, request: web.Request) -> web.Response:
        key = self._require_api_key(request)
        items = [
            a.as_json(self._created_at) for a in self.avatars if not a.public and self._owns(a, key)
        ]
        return self._ok(self._page(request, items))

    async def _list_public_avatars(self, request: web.Request) -> web.Response:
        if request.headers.get("X-API-KEY"):  # no auth is declared, but a sent key must work
            self._require_api_key(request)
        items = [a.as_json(self._created_at) for a in self.avatars if a.public]
        return self._ok(self._page(request, items))

    async def _get_avatar(self, request: web.Request) -> web.Response:
        key = self._require_api_key(request)
        avatar = self._visible_avatar(request.match_info["avatar_id"], key)
        if avatar is None:
            raise self._error(404, "Avatar not found")
        return self._ok(avatar.as_json(self._created_at))

    async def _list_voices(self, request: web.Request) -> web.Response:
        self._require_api_key(request)
        kind = request.query.get("voice_type", "public")
        if kind not in ("public", "private"):
            raise self._invalid(
                ["query", "voice_type"], "Input should be 'public' or 'private'", "enum", kind
            )
        items = [v.as_json(self._created_at) for v in self.voices if v.public == (kind == "public")]
        return self._ok(self._page(request, items))

    # ------------------------------------------------------------------ contexts

    async def _list_contexts(self, request: web.Request) -> web.Response:
        self._require_api_key(request)
        return self._ok(self._page(request, [c.summary() for c in self.contexts.values()]))

    def _context_fields(self, body: dict[str, Any]) -> tuple[str, str, str, list[Any]]:
        values = []
        for name in ("name", "prompt", "opening_text"):
            value = body.get(name)
            if not isinstance(value, str):
                raise self._invalid(["body", name], "Field required", "missing")
            values.append(value)
        links = body.get("links") or []
        if not isinstance(links, list):
            raise self._invalid(["body", "links"], "Input should be a valid list", "list_type")
        return values[0], values[1], values[2], links

    async def _create_context(self, request: web.Request) -> web.Response:
        self._require_api_key(request)
        name, prompt, opening_text, links = self._context_fields(await self._json_object(request))
        context = self.add_context(name, prompt, opening_text)
        context.links = [{**link, "id": link.get("id") or str(uuid.uuid4())} for link in links]
        return self._ok(context.detail())

    def _context(self, request: web.Request) -> FakeContext:
        self._require_api_key(request)
        context = self.contexts.get(request.match_info["context_id"])
        if context is None:
            raise self._error(404, "Context not found")
        return context

    async def _get_context(self, request: web.Request) -> web.Response:
        return self._ok(self._context(request).detail())

    async def _update_context(self, request: web.Request) -> web.Response:
        context = self._context(request)
        name, prompt, opening_text, links = self._context_fields(await self._json_object(request))
        context.name, context.prompt, context.opening_text = name, prompt, opening_text
        context.links = [{**link, "id": link.get("id") or str(uuid.uuid4())} for link in links]
        context.updated_at = self.now()
        return self._ok(context.detail())

    async def _delete_context(self, request: web.Request) -> web.Response:
        context = self._context(request)
        del self.contexts[context.id]
        return self._ok(None)


_LITE_COMMANDS = frozenset(
    {
        "agent.speak",
        "agent.speak_end",
        "agent.interrupt",
        "agent.start_listening",
        "agent.stop_listening",
        "session.keep_alive",
    }
)


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def _canned_reply(text: str, context: FakeContext | None) -> str:
    who = context.name if context is not None else "the assistant"
    return f"This is {who}. You said: {text.strip()}"


def _default_avatars() -> list[FakeAvatar]:
    return [
        FakeAvatar(
            id=_fixed_id("avatar:ada"),
            name="Ada",
            preview_url="https://files.fake-liveavatar.invalid/ada.webp",
            default_voice={"id": _fixed_id("voice:june"), "name": "June"},
        ),
        FakeAvatar(id=_fixed_id("avatar:draft"), name="Draft (still training)", status="INIT"),
        FakeAvatar(
            id=WAYNE_AVATAR_ID,
            name="Wayne",
            public=True,
            preview_url="https://files.fake-liveavatar.invalid/wayne.webp",
            default_voice={"id": _fixed_id("voice:oliver"), "name": "Oliver"},
        ),
        FakeAvatar(
            id=_fixed_id("avatar:grace"),
            name="Grace",
            type="IMAGE",
            public=True,
            preview_url="https://files.fake-liveavatar.invalid/grace.webp",
        ),
        FakeAvatar(id=_fixed_id("avatar:broken"), name="Broken", status="FAILED", public=True),
    ]


def _default_voices() -> list[FakeVoice]:
    return [
        FakeVoice(id=_fixed_id("voice:june"), name="June"),
        FakeVoice(id=_fixed_id("voice:oliver"), name="Oliver", gender="male"),
        FakeVoice(id=_fixed_id("voice:lena"), name="Lena", language="de"),
        FakeVoice(id=_fixed_id("voice:mine"), name="My cloned voice", public=False),
    ]
