"""The fake HeyGen's routes: ``/v1/streaming.*`` and ``voice.list``."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiohttp import web

from avatarstack.testkit._avatar_fakes import bearer_token
from avatarstack.testkit.heygen._faults import _HeyGenFaults, broken_answer
from avatarstack.testkit.heygen._records import (
    AVATAR_NOT_FOUND_CODE,
    CONCURRENT_LIMIT_MESSAGE,
    INVALID_PARAMETER_CODE,
    ROUTES,
    SUCCESS_CODE,
    UNKNOWN_SESSION_CODE,
    Caller,
    FakeAvatar,
    FakeRequest,
    FakeSession,
    FakeTask,
    Handler,
    Refuse,
    Token,
    credential,
    error_response,
    unauthorized,
    wrong_state,
)
from avatarstack.testkit.heygen._validation import validate_new

#: routes a session token cannot call: minting one, and the account-wide ``voice.list``
_API_KEY_ONLY = {"create_token", "voice.list"}
_TASK_TYPES = {"talk", "repeat"}
_TASK_MODES = {"sync", "async"}


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
        raise Refuse(400, INVALID_PARAMETER_CODE, "page and limit must be integers") from exc
    if number < 1:
        raise Refuse(400, INVALID_PARAMETER_CODE, "page and limit must be at least 1")
    return number


class FakeHeyGen(_HeyGenFaults):
    """HeyGen's legacy streaming API for one account (more keys via :meth:`add_api_key`)."""

    def _build_app(self) -> web.Application:
        @web.middleware
        async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
            try:
                response: web.StreamResponse = await handler(request)
            except web.HTTPException as exc:  # unknown route or method
                if exc.status < 400:
                    raise
                self.requests.append(
                    FakeRequest(None, request.method, request.path, credential(request), None)
                )
                return error_response(exc.status, exc.status, exc.reason)
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
                FakeRequest(route, request.method, request.path, credential(request), body)
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
                        raise Refuse(400, INVALID_PARAMETER_CODE, "Invalid JSON body")
                    if body is None and route != "create_token":
                        raise Refuse(400, INVALID_PARAMETER_CODE, "Request body is required")
                data = await handler(request, caller, body or {})
            except Refuse as refusal:
                return error_response(refusal.status, refusal.code, refusal.message)
            if fault is not None and (fault.malformed_json or fault.null_data):
                return broken_answer(fault)  # the work is done, only the answer is broken
            change = self._rewrites.get(route)
            if change is not None:
                data = change(data)
            return web.json_response({"code": SUCCESS_CODE, "data": data, "message": "success"})

        return endpoint

    def _authenticate(self, request: web.Request, *, bearer_allowed: bool) -> Caller:
        key = request.headers.get("x-api-key")  # header names are case-insensitive
        if key is not None:
            if key in self._keys:
                return Caller(api_key=key)
            raise unauthorized()
        value = bearer_token(request)
        if bearer_allowed and value is not None:
            token = self._tokens.get(value)
            if token is not None and token.api_key in self._keys and not self._expired(token):
                return Caller(api_key=token.api_key, token=token)
        raise unauthorized()

    def _expired(self, token: Token) -> bool:
        if self.token_ttl is None:
            return False
        return self.clock.now() - token.issued_at > timedelta(seconds=self.token_ttl)

    def _session_for(self, caller: Caller, body: dict[str, Any]) -> FakeSession:
        session_id = body.get("session_id")
        if not isinstance(session_id, str) or not session_id:
            raise Refuse(400, INVALID_PARAMETER_CODE, "session_id is required")
        session = self.sessions.get(session_id)
        if caller.token is not None and caller.token.session_id != session_id:
            raise unauthorized()  # a session token works for its own session only
        if session is None or session.api_key != caller.api_key:
            raise Refuse(400, UNKNOWN_SESSION_CODE, "Session not found")
        if (
            caller.token is not None
            and session.close_reason == "max_duration"
            and self.duration_close_answer == "unauthorized"
        ):
            raise unauthorized()
        return session

    def _active(self, caller: Caller, body: dict[str, Any]) -> FakeSession:
        session = self._session_for(caller, body)
        if session.status != "active":
            raise wrong_state()
        return session

    def _touch(self, session: FakeSession) -> None:
        session.last_activity = self.clock.now()

    # ================================================================ endpoints

    async def _create_token(
        self, request: web.Request, caller: Caller, body: dict[str, Any]
    ) -> Any:
        token = secrets.token_urlsafe(32)
        self._tokens[token] = Token(api_key=caller.api_key, issued_at=self.clock.now())
        self.issued_tokens.append(token)
        return {"token": token}

    async def _new(self, request: web.Request, caller: Caller, body: dict[str, Any]) -> Any:
        if caller.token is not None and caller.token.session_id is not None:
            raise unauthorized()  # a session token creates one session
        validate_new(body)
        avatar = self._avatar(body)
        open_count = sum(
            1 for s in self.sessions.values() if s.open and s.api_key == caller.api_key
        )
        if open_count >= self.max_concurrent:
            raise Refuse(400, self.concurrent_limit_code, CONCURRENT_LIMIT_MESSAGE)
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
        raise Refuse(400, AVATAR_NOT_FOUND_CODE, "avatar not found")

    async def _start(self, request: web.Request, caller: Caller, body: dict[str, Any]) -> Any:
        session = self._session_for(caller, body)
        if session.status != "created":
            raise wrong_state()
        now = self.clock.now()
        session.status = "active"
        session.started_at = now
        session.last_activity = now
        return {}

    async def _task(self, request: web.Request, caller: Caller, body: dict[str, Any]) -> Any:
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise Refuse(400, INVALID_PARAMETER_CODE, "text is required")
        task_type = body.get("task_type", "talk")
        task_mode = body.get("task_mode", "sync")
        if task_type not in _TASK_TYPES:
            raise Refuse(400, INVALID_PARAMETER_CODE, "task_type must be talk or repeat")
        if task_mode not in _TASK_MODES:
            raise Refuse(400, INVALID_PARAMETER_CODE, "task_mode must be sync or async")
        if self.max_text_length is not None and len(text) > self.max_text_length:
            raise Refuse(
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

    async def _interrupt(self, request: web.Request, caller: Caller, body: dict[str, Any]) -> Any:
        session = self._active(caller, body)
        now = self.clock.now()
        for task in session.tasks:
            if task.ends_at > now:
                task.interrupted = True
        session.busy_until = now
        session.interrupts += 1
        self._touch(session)
        return {}

    async def _keep_alive(self, request: web.Request, caller: Caller, body: dict[str, Any]) -> Any:
        session = self._active(caller, body)
        session.keep_alives += 1
        self._touch(session)
        return {}

    async def _stop(self, request: web.Request, caller: Caller, body: dict[str, Any]) -> Any:
        session = self._session_for(caller, body)
        self.stop_calls.append(session.session_id)
        session.stop_calls += 1
        if not session.open:
            if self.strict_stop:
                raise wrong_state()
            return {}
        self._close(session, "stopped", self.clock.now())
        return {}

    async def _start_listening(
        self, request: web.Request, caller: Caller, body: dict[str, Any]
    ) -> Any:
        return self._listen(caller, body, listening=True)

    async def _stop_listening(
        self, request: web.Request, caller: Caller, body: dict[str, Any]
    ) -> Any:
        return self._listen(caller, body, listening=False)

    def _listen(self, caller: Caller, body: dict[str, Any], *, listening: bool) -> Any:
        session = self._active(caller, body)
        session.listening = listening
        self._touch(session)
        return {}

    async def _list(self, request: web.Request, caller: Caller, body: dict[str, Any]) -> Any:
        return {"sessions": [_session_row(s) for s in self.open_sessions(caller.api_key)]}

    async def _history(self, request: web.Request, caller: Caller, body: dict[str, Any]) -> Any:
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

    async def _avatar_list(self, request: web.Request, caller: Caller, body: dict[str, Any]) -> Any:
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

    async def _voice_list(self, request: web.Request, caller: Caller, body: dict[str, Any]) -> Any:
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
