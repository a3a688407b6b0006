"""The fake LiveAvatar's REST routes: sessions, avatars, voices, contexts."""

from __future__ import annotations

import secrets
import uuid
from typing import Any, Literal

from aiohttp import web

from avatarstack.testkit._avatar_fakes import bearer_token
from avatarstack.testkit.liveavatar._records import (
    END_REASONS,
    FakeContext,
    FakeSession,
    StopCall,
    iso,
)
from avatarstack.testkit.liveavatar._validation import _TokenValidation
from avatarstack.testkit.liveavatar._websocket import _LiteWebSocket

_CONCURRENT_MESSAGE = (
    "Concurrent limit reached, please make sure you have closed other sessions under the same "
    "account"
)


class FakeLiveAvatar(_TokenValidation, _LiteWebSocket):
    """LiveAvatar's REST API, FULL data channel and LITE websocket.

    See :mod:`avatarstack.testkit.liveavatar` for what it follows and its switches."""

    # ------------------------------------------------------------------ route table

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

    async def _start(self, request: web.Request) -> web.Response:
        if bearer_token(request) is None and request.headers.get("X-API-KEY"):
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
            "created_at": iso(session.created_at),
            "updated_at": iso(session.end_at or session.last_activity_at or session.created_at),
            "duration": int(duration),
            "source": "API",
            "mode": session.mode,
            "is_sandbox": session.is_sandbox,
            "credits_consumed": session.credits_consumed,
        }
        if session.status == "closed":
            entry["end_at"] = iso(session.end_at)
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
