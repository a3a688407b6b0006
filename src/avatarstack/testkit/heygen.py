"""A fake HeyGen Interactive (Streaming) Avatar API: a real aiohttp server on 127.0.0.1.

It follows HeyGen's Streaming API reference (https://docs.heygen.com/reference): the
``/v1/streaming.*`` routes and ``GET /v1/voice.list`` with HeyGen's envelope
(``{"code":100,"data":…,"message":"success"}``, errors ``{"code":…,"message":…}`` without
``data``), the three credentials (``x-api-key`` on every route, ``Authorization: Bearer
<session token>`` on every route but ``create_token`` and ``voice.list``; a
token creates one session and then works for that session only), strict validation of
``streaming.new`` and ``streaming.task``, the session state machine ``created`` → ``active`` →
``closed``, a per-key concurrency limit, and the idle timeout and duration cap on an injectable
clock that only moves when a test says so::

    clock = ManualClock()
    async with FakeHeyGen(clock=clock) as heygen:
        provider = HeyGenAvatarProvider(heygen.api_key, heygen.base_url, clock=clock)
        ...
        await heygen.advance(121)   # the session is now closed for idleness

Codes: ``400112`` (401, bad credential), ``10013`` (avatar not found) and ``400006`` (session
not in the right state) are HeyGen's. The real codes for these are unknown, so they are
invented here and documented once: :data:`INVALID_PARAMETER_CODE` (400, invalid body),
:data:`UNKNOWN_SESSION_CODE` (400, ``"Session not found"``) and
:data:`CONCURRENT_LIMIT_CODE` (400, HeyGen's observed message). Clients should key on the
message for the last two, as the adapter does.

Switches: :meth:`fail` (per route: status, code, message, delay, malformed JSON, ``data: null``,
for N requests), :meth:`rewrite` (change a route's ``data`` before it is sent, to serve the field
variants other clients see), ``max_concurrent``, ``session_duration_limit``,
``default_idle_timeout``, ``token_ttl``, ``max_text_length``, ``ms_per_char``,
``sync_delay_fraction``, ``strict_stop``, ``duration_close_answer``, :meth:`revoke_api_key`,
:meth:`add_api_key`. Introspection: ``sessions`` (status, close reason, tasks, keep-alive and
stop counts), ``tasks``, ``stop_calls``, ``requests`` and :meth:`calls`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from aiohttp import web

from avatarstack.ports.clock import Clock
from avatarstack.testkit._server import LocalServer
from avatarstack.testkit.clock import ManualClock

__all__ = [
    "AVATAR_NOT_FOUND_CODE",
    "CONCURRENT_LIMIT_CODE",
    "CONCURRENT_LIMIT_MESSAGE",
    "INVALID_PARAMETER_CODE",
    "ROUTES",
    "SESSION_STATE_CODE",
    "SUCCESS_CODE",
    "UNAUTHORIZED_CODE",
    "UNKNOWN_SESSION_CODE",
    "FakeAvatar",
    "FakeFault",
    "FakeHeyGen",
    "FakeRequest",
    "FakeSession",
    "FakeTask",
    "FakeVoice",
]

SUCCESS_CODE = 100
UNAUTHORIZED_CODE = 400112
AVATAR_NOT_FOUND_CODE = 10013
SESSION_STATE_CODE = 400006
#: invented: HeyGen's code for an invalid body is not known
INVALID_PARAMETER_CODE = 400
#: invented: HeyGen's answer for an unknown session_id is not known
UNKNOWN_SESSION_CODE = 400404
#: invented code; the message is the one users report
CONCURRENT_LIMIT_CODE = 10007
CONCURRENT_LIMIT_MESSAGE = (
    "Concurrent limit reached, please make sure you have closed other testing sessions "
    "under the same account"
)

#: route names for :meth:`FakeHeyGen.fail`, :meth:`FakeHeyGen.rewrite` and :meth:`calls`
ROUTES: dict[str, tuple[str, str]] = {
    "create_token": ("POST", "/v1/streaming.create_token"),
    "new": ("POST", "/v1/streaming.new"),
    "start": ("POST", "/v1/streaming.start"),
    "task": ("POST", "/v1/streaming.task"),
    "interrupt": ("POST", "/v1/streaming.interrupt"),
    "keep_alive": ("POST", "/v1/streaming.keep_alive"),
    "stop": ("POST", "/v1/streaming.stop"),
    "start_listening": ("POST", "/v1/streaming.start_listening"),
    "stop_listening": ("POST", "/v1/streaming.stop_listening"),
    "list": ("GET", "/v1/streaming.list"),
    "history": ("GET", "/v2/streaming.list"),
    "avatar.list": ("GET", "/v1/streaming/avatar.list"),
    "voice.list": ("GET", "/v1/voice.list"),
}

#: routes a session token cannot call: minting one, and the account-wide ``voice.list``
_API_KEY_ONLY = {"create_token", "voice.list"}
_QUALITIES = {"low", "medium", "high"}
_ENCODINGS = {"H264", "VP8"}
_EMOTIONS = {"excited", "serious", "friendly", "soothing", "broadcaster"}
_STT_PROVIDERS = {"deepgram", "gladia"}
_TASK_TYPES = {"talk", "repeat"}
_TASK_MODES = {"sync", "async"}

SessionStatus = Literal["created", "active", "closed"]
CloseReason = Literal["stopped", "idle_timeout", "max_duration"]


@dataclass
class FakeAvatar:
    avatar_id: str
    avatar_name: str
    status: str = "ACTIVE"
    default_voice: str | None = None
    preview_url: str | None = None
    is_public: bool = True


@dataclass
class FakeVoice:
    """A voice of ``voice.list``; only ``support_realtime`` ones can stream."""

    voice_id: str
    name: str
    language: str = "English"
    gender: str = "female"
    support_realtime: bool = True


@dataclass
class FakeTask:
    task_id: str
    session_id: str
    text: str
    task_type: str
    task_mode: str
    duration_ms: int
    received_at: datetime
    #: when the avatar starts and stops saying it (tasks queue one after another)
    starts_at: datetime
    ends_at: datetime
    interrupted: bool = False


@dataclass
class FakeSession:
    session_id: str
    api_key: str = field(repr=False)
    avatar_id: str
    #: the ``streaming.new`` body as received
    request: dict[str, Any]
    activity_idle_timeout: int
    idle_disabled: bool
    session_duration_limit: int
    created_at: datetime
    status: SessionStatus = "created"
    close_reason: CloseReason | None = None
    started_at: datetime | None = None
    closed_at: datetime | None = None
    last_activity: datetime | None = None
    busy_until: datetime | None = None
    listening: bool = False
    token: str | None = field(default=None, repr=False)
    access_token: str = field(default="", repr=False)
    tasks: list[FakeTask] = field(default_factory=list)
    keep_alives: int = 0
    interrupts: int = 0
    stop_calls: int = 0

    @property
    def open(self) -> bool:
        return self.status != "closed"


@dataclass
class FakeRequest:
    route: str | None
    method: str
    path: str
    #: ``api_key``, ``bearer`` or ``none`` (which credential the request carried, not its value)
    credential: str
    body: Any


@dataclass
class FakeFault:
    """What :meth:`FakeHeyGen.fail` makes a route do instead of its normal answer."""

    status: int | None = None
    code: int | None = None
    message: str | None = None
    #: seconds to wait first (real time, cut short when the server stops)
    delay: float = 0.0
    malformed_json: bool = False
    null_data: bool = False
    #: how many requests it affects; None = all until :meth:`FakeHeyGen.clear_faults`
    times: int | None = 1


@dataclass
class _Token:
    api_key: str = field(repr=False)
    issued_at: datetime
    session_id: str | None = None


class _Refuse(Exception):  # control flow inside the fake
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _default_avatars() -> list[FakeAvatar]:
    return [
        FakeAvatar(
            "Anna_public_3_20240108",
            "Anna in Brown T-shirt",
            default_voice="1bd001e7e50f421d891986aad5158bc8",
        ),
        FakeAvatar("Wayne_20240711", "Wayne", default_voice="f38a635bee7a4d1f9b0a654a31d050d2"),
        FakeAvatar("Old_avatar_2023", "Retired avatar", status="INACTIVE"),
    ]


def _default_voices() -> list[FakeVoice]:
    return [
        FakeVoice("1bd001e7e50f421d891986aad5158bc8", "Sara"),
        FakeVoice("f38a635bee7a4d1f9b0a654a31d050d2", "Paul", gender="male"),
        FakeVoice("77c3b7b1e2a64a4e8c2f1a9d0b3e5f60", "Lena", language="German"),
        FakeVoice("0f3c1a7d9e2b4c6a8d5e7f9a1b3c5d7e", "Studio only", support_realtime=False),
    ]


@dataclass(frozen=True)
class _Caller:
    api_key: str = field(repr=False)
    token: _Token | None = None

    @property
    def credential(self) -> str:
        return "bearer" if self.token is not None else "api_key"


Handler = Callable[[web.Request, _Caller, dict[str, Any]], Awaitable[Any]]


class FakeHeyGen(LocalServer):
    """HeyGen's legacy streaming API for one account (more keys via :meth:`add_api_key`)."""

    def __init__(
        self,
        *,
        api_key: str = "fake-heygen-key",
        clock: Clock | None = None,
        max_concurrent: int = 3,
    ) -> None:
        super().__init__()
        self._api_key = api_key
        self._keys: set[str] = {api_key}
        self.clock: Clock = clock or ManualClock()
        self.max_concurrent = max_concurrent
        self.avatars: list[FakeAvatar] = _default_avatars()
        self.voices: list[FakeVoice] = _default_voices()
        #: seconds after ``start`` when a session is closed (``session_duration_limit``)
        self.session_duration_limit = 600
        #: ``activity_idle_timeout`` when ``new`` does not send one
        self.default_idle_timeout = 120
        #: seconds a session token stays valid (None: no expiry, as far as HeyGen documents)
        self.token_ttl: float | None = None
        #: ``task`` text longer than this is refused (None: no limit)
        self.max_text_length: int | None = 1000
        #: ``duration_ms`` per character of a task's text
        self.ms_per_char = 60
        #: a ``sync`` task answers after this fraction of its duration (real seconds)
        self.sync_delay_fraction = 0.0
        #: ``stop`` on a closed session answers 400006 instead of 200
        self.strict_stop = False
        #: after the duration cap: ``conflict`` (400006) or ``unauthorized`` (the session's Bearer
        #: token gets 401/400112, as users report at the one-hour mark; the API key gets 400006)
        self.duration_close_answer: Literal["conflict", "unauthorized"] = "conflict"
        self.concurrent_limit_code = CONCURRENT_LIMIT_CODE
        self.sessions: dict[str, FakeSession] = {}
        self.tasks: list[FakeTask] = []
        #: session ids of every authorised ``stop`` request, in order (repeats included)
        self.stop_calls: list[str] = []
        self.requests: list[FakeRequest] = []
        self.issued_tokens: list[str] = []
        self._tokens: dict[str, _Token] = {}
        self._faults: dict[str, list[FakeFault]] = {}
        self._rewrites: dict[str, Callable[[Any], Any]] = {}

    # ================================================================ server

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def avatar_ids(self) -> list[str]:
        """The avatars a session can use (``ACTIVE``)."""
        return [a.avatar_id for a in self.avatars if a.status.upper() == "ACTIVE"]

    def _build_app(self) -> web.Application:
        @web.middleware
        async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
            try:
                response: web.StreamResponse = await handler(request)
            except web.HTTPException as exc:  # unknown route or method
                if exc.status < 400:
                    raise
                self.requests.append(
                    FakeRequest(None, request.method, request.path, _credential(request), None)
                )
                return _error(exc.status, exc.status, exc.reason)
            return response

        app = web.Application(middlewares=[json_errors])
        handlers: dict[str, Handler] = {
            "create_token": self._create_token,
            "new": self._new,
            "start": self._start,
            "task": self._task,
            "interrupt": self._interrupt,
            "keep_alive": self._keep_alive,
            "stop": self._stop,
            "start_listening": self._start_listening,
            "stop_listening": self._stop_listening,
            "list": self._list,
            "history": self._history,
            "avatar.list": self._avatar_list,
            "voice.list": self._voice_list,
        }
        for route, (method, path) in ROUTES.items():
            app.router.add_route(method, path, self._endpoint(route, handlers[route]))
        return app

    # ================================================================ switches

    def fail(
        self,
        route: str,
        *,
        status: int | None = None,
        code: int | None = None,
        message: str | None = None,
        delay: float = 0.0,
        malformed_json: bool = False,
        null_data: bool = False,
        times: int | None = 1,
    ) -> FakeFault:
        """Make the next ``times`` requests to ``route`` fail. A ``delay`` (real seconds) comes
        first. An error ``status`` (500 unless a ``code`` alone is given, which gets 400) answers
        ``{"code", "message"}`` without doing anything (with ``malformed_json``: an HTML page).
        ``malformed_json`` or ``null_data`` alone do the work, then answer 200 with a cut-off
        body or with ``"data": null`` — as when the server acted but its answer broke. A delay
        alone answers normally afterwards. Faults queue per route."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; use one of {sorted(ROUTES)}")
        if status is None and code is not None:
            status = 400
        if status is None and not (malformed_json or null_data or delay):
            status = 500
        fault = FakeFault(status, code, message, delay, malformed_json, null_data, times)
        self._faults.setdefault(route, []).append(fault)
        return fault

    def clear_faults(self, route: str | None = None) -> None:
        if route is None:
            self._faults.clear()
        else:
            self._faults.pop(route, None)

    def rewrite(self, route: str, change: Callable[[Any], Any] | None) -> None:
        """Pass ``route``'s ``data`` through ``change`` before sending it (None: stop), e.g.
        ``rewrite("avatar.list", lambda data: {"avatars": data})``."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; use one of {sorted(ROUTES)}")
        if change is None:
            self._rewrites.pop(route, None)
        else:
            self._rewrites[route] = change

    def add_api_key(self, key: str) -> None:
        """Another account's key (its own sessions and concurrency limit)."""
        self._keys.add(key)

    def revoke_api_key(self, key: str | None = None) -> None:
        """The key (default: :attr:`api_key`) and its session tokens now get 401."""
        self._keys.discard(key or self._api_key)

    # ================================================================ clock

    async def advance(self, seconds: float) -> list[FakeSession]:
        """Move the (manual) clock on and apply idle timeouts and duration caps; returns the
        sessions this closed."""
        if not isinstance(self.clock, ManualClock):
            raise TypeError("FakeHeyGen.advance needs a ManualClock; use tick() with other clocks")
        self.clock.advance(seconds)
        return await self.tick()

    async def tick(self) -> list[FakeSession]:
        """Apply idle timeouts and duration caps at the clock's current time (requests do this
        too before they are answered)."""
        return self._expire()

    def _expire(self) -> list[FakeSession]:
        now = self.clock.now()
        closed: list[FakeSession] = []
        for session in self.sessions.values():
            if not session.open:
                continue
            deadlines: list[tuple[datetime, CloseReason]] = []
            if session.started_at is not None:
                limit = timedelta(seconds=session.session_duration_limit)
                deadlines.append((session.started_at + limit, "max_duration"))
            if not session.idle_disabled:
                since = max(
                    moment
                    for moment in (session.created_at, session.last_activity, session.busy_until)
                    if moment is not None
                )
                idle = timedelta(seconds=session.activity_idle_timeout)
                deadlines.append((since + idle, "idle_timeout"))
            if not deadlines:
                continue
            when, reason = min(deadlines, key=lambda item: item[0])
            if when <= now:
                self._close(session, reason, when)
                closed.append(session)
        return closed

    def _close(self, session: FakeSession, reason: CloseReason, when: datetime) -> None:
        session.status = "closed"
        session.close_reason = reason
        session.closed_at = when
        for task in session.tasks:
            if task.ends_at > when:
                task.interrupted = True

    # ================================================================ introspection

    def session(self, session_id: str) -> FakeSession:
        return self.sessions[session_id]

    def open_sessions(self, api_key: str | None = None) -> list[FakeSession]:
        key = api_key or self._api_key
        return [s for s in self.sessions.values() if s.open and s.api_key == key]

    def calls(self, route: str) -> int:
        """How many requests reached ``route`` (failed and faulted ones included)."""
        return sum(1 for r in self.requests if r.route == route)

    # ================================================================ plumbing

    def _endpoint(
        self, route: str, handler: Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            body: Any = None
            raw = await request.read()
            parsed_ok = True
            if raw.strip():
                try:
                    body = json.loads(raw)
                except ValueError:
                    parsed_ok = False
            self.requests.append(
                FakeRequest(route, request.method, request.path, _credential(request), body)
            )
            fault = self._take_fault(route)
            if fault is not None:
                refused = await self._refused(fault)
                if refused is not None:
                    return refused
            self._expire()
            try:
                caller = self._authenticate(request, bearer_allowed=route not in _API_KEY_ONLY)
                if request.method == "POST":
                    if not parsed_ok or (body is not None and not isinstance(body, dict)):
                        raise _Refuse(400, INVALID_PARAMETER_CODE, "Invalid JSON body")
                    if body is None and route != "create_token":
                        raise _Refuse(400, INVALID_PARAMETER_CODE, "Request body is required")
                data = await handler(request, caller, body or {})
            except _Refuse as refusal:
                return _error(refusal.status, refusal.code, refusal.message)
            if fault is not None and (fault.malformed_json or fault.null_data):
                return _broken(fault)  # the work is done, only the answer is broken
            change = self._rewrites.get(route)
            if change is not None:
                data = change(data)
            return web.json_response({"code": SUCCESS_CODE, "data": data, "message": "success"})

        return endpoint

    def _take_fault(self, route: str) -> FakeFault | None:
        queue = self._faults.get(route)
        if not queue:
            return None
        fault = queue[0]
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
        return fault

    async def _refused(self, fault: FakeFault) -> web.StreamResponse | None:
        """The answer of a fault that stops the request before any work (None: go on)."""
        await self._sleep(fault.delay)
        if fault.status is None or fault.status < 300:
            return None
        if fault.malformed_json:  # e.g. a proxy's HTML error page
            return web.Response(
                status=fault.status, text="<html>Bad Gateway</html>", content_type="text/html"
            )
        code = fault.code if fault.code is not None else fault.status
        message = fault.message or ("Internal Server Error" if fault.status >= 500 else "Error")
        return _error(fault.status, code, message)

    def _authenticate(self, request: web.Request, *, bearer_allowed: bool) -> _Caller:
        key = request.headers.get("x-api-key")  # header names are case-insensitive
        if key is not None:
            if key in self._keys:
                return _Caller(api_key=key)
            raise _unauthorized()
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if bearer_allowed and scheme.lower() == "bearer" and value.strip():
            token = self._tokens.get(value.strip())
            if token is not None and token.api_key in self._keys and not self._expired(token):
                return _Caller(api_key=token.api_key, token=token)
        raise _unauthorized()

    def _expired(self, token: _Token) -> bool:
        if self.token_ttl is None:
            return False
        return self.clock.now() - token.issued_at > timedelta(seconds=self.token_ttl)

    def _session_for(self, caller: _Caller, body: dict[str, Any]) -> FakeSession:
        session_id = body.get("session_id")
        if not isinstance(session_id, str) or not session_id:
            raise _Refuse(400, INVALID_PARAMETER_CODE, "session_id is required")
        session = self.sessions.get(session_id)
        if caller.token is not None and caller.token.session_id != session_id:
            raise _unauthorized()  # a session token works for its own session only
        if session is None or session.api_key != caller.api_key:
            raise _Refuse(400, UNKNOWN_SESSION_CODE, "Session not found")
        if (
            caller.token is not None
            and session.close_reason == "max_duration"
            and self.duration_close_answer == "unauthorized"
        ):
            raise _unauthorized()
        return session

    def _active(self, caller: _Caller, body: dict[str, Any]) -> FakeSession:
        session = self._session_for(caller, body)
        if session.status != "active":
            raise _wrong_state()
        return session

    def _touch(self, session: FakeSession) -> None:
        session.last_activity = self.clock.now()

    # ================================================================ endpoints

    async def _create_token(
        self, request: web.Request, caller: _Caller, body: dict[str, Any]
    ) -> Any:
        token = secrets.token_urlsafe(32)
        self._tokens[token] = _Token(api_key=caller.api_key, issued_at=self.clock.now())
        self.issued_tokens.append(token)
        return {"token": token}

    async def _new(self, request: web.Request, caller: _Caller, body: dict[str, Any]) -> Any:
        if caller.token is not None and caller.token.session_id is not None:
            raise _unauthorized()  # a session token creates one session
        _validate_new(body)
        avatar = self._avatar(body)
        open_count = sum(
            1 for s in self.sessions.values() if s.open and s.api_key == caller.api_key
        )
        if open_count >= self.max_concurrent:
            raise _Refuse(400, self.concurrent_limit_code, CONCURRENT_LIMIT_MESSAGE)
        now = self.clock.now()
        session_id = str(uuid.uuid1())
        session = FakeSession(
            session_id=session_id,
            api_key=caller.api_key,
            avatar_id=avatar.avatar_id,
            request=dict(body),
            activity_idle_timeout=body.get("activity_idle_timeout", self.default_idle_timeout),
            idle_disabled=body.get("disable_idle_timeout") is True,
            session_duration_limit=self.session_duration_limit,
            created_at=now,
            last_activity=now,
            access_token="fake-livekit-user." + secrets.token_urlsafe(24),
        )
        if caller.token is not None:
            caller.token.session_id = session_id
            session.token = next(k for k, v in self._tokens.items() if v is caller.token)
        self.sessions[session_id] = session
        return {
            "session_id": session_id,
            "url": "wss://fake-livekit.invalid",
            "access_token": session.access_token,
            "livekit_agent_token": "fake-livekit-agent." + secrets.token_urlsafe(24),
            "realtime_endpoint": (
                f"ws://127.0.0.1:{self._port}/v2-alpha/interactive-avatar/session/{session_id}"
            ),
            "is_paid": False,
            "session_duration_limit": session.session_duration_limit,
            "sdp": None,
            "ice_servers": None,
            "ice_servers2": None,
        }

    def _avatar(self, body: dict[str, Any]) -> FakeAvatar:
        wanted = body.get("avatar_id") or body.get("avatar_name")
        usable = [a for a in self.avatars if a.status.upper() == "ACTIVE"]
        if wanted is None:
            if usable:
                return usable[0]
        elif isinstance(wanted, str):
            for avatar in usable:
                if avatar.avatar_id == wanted:
                    return avatar
        raise _Refuse(400, AVATAR_NOT_FOUND_CODE, "avatar not found")

    async def _start(self, request: web.Request, caller: _Caller, body: dict[str, Any]) -> Any:
        session = self._session_for(caller, body)
        if session.status != "created":
            raise _wrong_state()
        now = self.clock.now()
        session.status = "active"
        session.started_at = now
        session.last_activity = now
        return {}

    async def _task(self, request: web.Request, caller: _Caller, body: dict[str, Any]) -> Any:
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _Refuse(400, INVALID_PARAMETER_CODE, "text is required")
        task_type = body.get("task_type", "talk")
        task_mode = body.get("task_mode", "sync")
        if task_type not in _TASK_TYPES:
            raise _Refuse(400, INVALID_PARAMETER_CODE, "task_type must be talk or repeat")
        if task_mode not in _TASK_MODES:
            raise _Refuse(400, INVALID_PARAMETER_CODE, "task_mode must be sync or async")
        if self.max_text_length is not None and len(text) > self.max_text_length:
            raise _Refuse(
                400,
                INVALID_PARAMETER_CODE,
                f"text is too long (at most {self.max_text_length} characters)",
            )
        session = self._active(caller, body)
        now = self.clock.now()
        duration_ms = len(text) * self.ms_per_char
        starts_at = max(now, session.busy_until or now)
        ends_at = starts_at + timedelta(milliseconds=duration_ms)
        task = FakeTask(
            task_id=str(uuid.uuid4()),
            session_id=session.session_id,
            text=text,
            task_type=task_type,
            task_mode=task_mode,
            duration_ms=duration_ms,
            received_at=now,
            starts_at=starts_at,
            ends_at=ends_at,
        )
        session.tasks.append(task)
        self.tasks.append(task)
        session.busy_until = ends_at
        self._touch(session)
        if task_mode == "sync" and self.sync_delay_fraction > 0:
            await asyncio.sleep(duration_ms / 1000 * self.sync_delay_fraction)
        return {"task_id": task.task_id, "duration_ms": duration_ms}

    async def _interrupt(self, request: web.Request, caller: _Caller, body: dict[str, Any]) -> Any:
        session = self._active(caller, body)
        now = self.clock.now()
        for task in session.tasks:
            if task.ends_at > now:
                task.interrupted = True
        session.busy_until = now
        session.interrupts += 1
        self._touch(session)
        return {}

    async def _keep_alive(self, request: web.Request, caller: _Caller, body: dict[str, Any]) -> Any:
        session = self._active(caller, body)
        session.keep_alives += 1
        self._touch(session)
        return {}

    async def _stop(self, request: web.Request, caller: _Caller, body: dict[str, Any]) -> Any:
        session = self._session_for(caller, body)
        self.stop_calls.append(session.session_id)
        session.stop_calls += 1
        if not session.open:
            if self.strict_stop:
                raise _wrong_state()
            return {}
        self._close(session, "stopped", self.clock.now())
        return {}

    async def _start_listening(
        self, request: web.Request, caller: _Caller, body: dict[str, Any]
    ) -> Any:
        session = self._active(caller, body)
        session.listening = True
        self._touch(session)
        return {}

    async def _stop_listening(
        self, request: web.Request, caller: _Caller, body: dict[str, Any]
    ) -> Any:
        session = self._active(caller, body)
        session.listening = False
        self._touch(session)
        return {}

    async def _list(self, request: web.Request, caller: _Caller, body: dict[str, Any]) -> Any:
        return {"sessions": [_session_row(s) for s in self.open_sessions(caller.api_key)]}

    async def _history(self, request: web.Request, caller: _Caller, body: dict[str, Any]) -> Any:
        page = _positive_int(request.query.get("page"), 1)
        limit = _positive_int(request.query.get("limit") or request.query.get("page_size"), 10)
        status = request.query.get("status")
        rows = [
            _session_row(s)
            for s in self.sessions.values()
            if s.api_key == caller.api_key and (status is None or s.status == status)
        ]
        rows.sort(key=lambda row: row["created_at"], reverse=True)
        start = (page - 1) * limit
        return {
            "sessions": rows[start : start + limit],
            "total": len(rows),
            "page": page,
            "limit": limit,
        }

    async def _avatar_list(
        self, request: web.Request, caller: _Caller, body: dict[str, Any]
    ) -> Any:
        created = int(self.clock.now().timestamp())
        return [
            {
                "avatar_id": a.avatar_id,
                "avatar_name": a.avatar_name,
                "pose_name": a.avatar_name,
                "status": a.status,
                "created_at": created,
                "default_voice": a.default_voice,
                "normal_preview": a.preview_url
                or f"https://files.fake-heygen.invalid/avatar/{a.avatar_id}.webp",
                "is_public": a.is_public,
            }
            for a in self.avatars
        ]

    async def _voice_list(self, request: web.Request, caller: _Caller, body: dict[str, Any]) -> Any:
        """All the account's voices in one answer (the route takes no paging parameters)."""
        return {
            "voices": [
                {
                    "voice_id": v.voice_id,
                    "language": v.language,
                    "gender": v.gender,
                    "name": v.name,
                    "display_name": v.name,
                    "preview_audio": f"https://files.fake-heygen.invalid/voice/{v.voice_id}.mp3",
                    "support_pause": True,
                    "emotion_support": False,
                    "support_realtime": v.support_realtime,
                }
                for v in self.voices
            ]
        }


# ==================================================================== helpers


def _credential(request: web.Request) -> str:
    if "x-api-key" in request.headers:
        return "api_key"
    if request.headers.get("Authorization", "").lower().startswith("bearer "):
        return "bearer"
    return "none"


def _broken(fault: FakeFault) -> web.Response:
    if fault.malformed_json:
        return web.Response(
            status=fault.status or 200,
            text='{"code": 100, "data": {"session_id": "trunc',
            content_type="application/json",
        )
    return web.json_response(
        {"code": SUCCESS_CODE, "data": None, "message": "success"}, status=fault.status or 200
    )


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def _unauthorized() -> _Refuse:
    return _Refuse(401, UNAUTHORIZED_CODE, "Unauthorized")


def _wrong_state() -> _Refuse:
    return _Refuse(400, SESSION_STATE_CODE, "Session is not in correct state")


def _session_row(session: FakeSession) -> dict[str, Any]:
    return {
        "session_id": session.session_id,
        "status": session.status,
        "created_at": int(session.created_at.timestamp()),
    }


def _positive_int(value: str | None, default: int) -> int:
    try:
        number = int(value) if value is not None else default
    except ValueError as exc:
        raise _Refuse(400, INVALID_PARAMETER_CODE, "page and limit must be integers") from exc
    if number < 1:
        raise _Refuse(400, INVALID_PARAMETER_CODE, "page and limit must be at least 1")
    return number


def _invalid(message: str) -> _Refuse:
    return _Refuse(400, INVALID_PARAMETER_CODE, message)


def _optional_str(body: dict[str, Any], name: str) -> None:
    if name in body and body[name] is not None and not isinstance(body[name], str):
        raise _invalid(f"{name} must be a string")


def _validate_new(body: dict[str, Any]) -> None:
    """Strict where clients depend on the server (HeyGen's ``streaming.new`` reference,
    https://docs.heygen.com/reference)."""
    if body.get("version") != "v2":
        raise _invalid('version must be "v2" (v1 raw WebRTC sessions are no longer supported)')
    for name in ("avatar_id", "avatar_name", "knowledge_base_id", "knowledge_id"):
        _optional_str(body, name)
    for name in ("knowledge_base", "language", "source"):
        _optional_str(body, name)
    quality = body.get("quality")
    if quality is not None and quality not in _QUALITIES:
        raise _invalid("quality must be one of low, medium, high")
    encoding = body.get("video_encoding")
    if encoding is not None and encoding not in _ENCODINGS:
        raise _invalid("video_encoding must be one of H264, VP8")
    voice = body.get("voice")
    if voice is not None:
        if not isinstance(voice, dict):
            raise _invalid("voice must be an object")
        _optional_str(voice, "voice_id")
        rate = voice.get("rate")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)):
            raise _invalid("voice.rate must be a number")
        emotion = voice.get("emotion")
        if emotion is not None and (
            not isinstance(emotion, str) or emotion.lower() not in _EMOTIONS
        ):
            raise _invalid(
                "voice.emotion must be one of excited, serious, friendly, soothing, broadcaster"
            )
    idle = body.get("activity_idle_timeout")
    if idle is not None and (
        isinstance(idle, bool) or not isinstance(idle, int) or not 30 <= idle <= 3600
    ):
        raise _invalid("activity_idle_timeout must be an integer from 30 to 3600")
    disable = body.get("disable_idle_timeout")
    if disable is not None and not isinstance(disable, bool):
        raise _invalid("disable_idle_timeout must be a boolean")
    stt = body.get("stt_settings")
    if stt is not None:
        if not isinstance(stt, dict):
            raise _invalid("stt_settings must be an object")
        provider = stt.get("provider")
        if provider is not None and provider not in _STT_PROVIDERS:
            raise _invalid("stt_settings.provider must be deepgram or gladia")
