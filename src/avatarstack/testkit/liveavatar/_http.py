"""The fake LiveAvatar's HTTP plumbing: the middleware, envelopes, auth, bodies, paging."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aiohttp import web

from avatarstack.testkit._avatar_fakes import bearer_token
from avatarstack.testkit.liveavatar._faults import _FaultInjection
from avatarstack.testkit.liveavatar._records import (
    FakeSession,
    is_uuid,
)


class Refused(Exception):
    """Ends a handler with this error response (caught by the middleware)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


class _Http(_FaultInjection):
    """What every route shares: the middleware (faults, rate limits, 404/405), the envelopes,
    the credentials, JSON bodies and paging."""

    def _routes(self) -> list[web.RouteDef]:
        """The route table (the REST handlers and the websocket), given by FakeLiveAvatar."""
        raise NotImplementedError

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(self._routes())
        return app

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
        except Refused as refused:
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

    def _ok(self, data: Any, status: int = 200) -> web.Response:
        return web.json_response(
            {"code": self.success_code, "data": data, "message": "success"}, status=status
        )

    @staticmethod
    def _error(status: int, message: str, code: int = 4000) -> Refused:
        return Refused(
            web.json_response({"code": code, "data": None, "message": message}, status=status)
        )

    def _invalid(self, loc: list[Any], msg: str, kind: str, value: Any = None) -> Refused:
        if self.wrap_validation_errors:
            body: dict[str, Any] = {
                "code": 4000,
                "data": [{"message": msg, "loc": loc}],
                "message": "Validation error",
            }
        else:
            body = {"detail": [{"loc": loc, "msg": msg, "type": kind, "input": value}]}
        return Refused(web.json_response(body, status=422))

    def _unauthorized(self, message: str) -> Refused:
        return self._error(self.unauthorized_status, message, self.unauthorized_code)

    def _require_api_key(self, request: web.Request) -> str:
        key = request.headers.get("X-API-KEY")
        if not key:
            raise self._unauthorized("Missing API key (X-API-KEY)")
        if key not in self._accounts:
            raise self._unauthorized("Invalid API key")
        return key

    def _by_token(self, request: web.Request) -> FakeSession:
        token = bearer_token(request)
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
        if bearer_token(request) is not None:
            session = self._by_token(request)
            return session, "bearer", await self._json_object(request, optional=True)
        key = self._require_api_key(request)
        body = await self._json_object(request, optional=True)
        session_id = body.get("session_id")
        if session_id is None:
            raise self._error(400, "session_id is required when calling with an API key")
        if not is_uuid(session_id):
            raise self._invalid(
                ["body", "session_id"], "Input should be a valid UUID", "uuid_parsing", session_id
            )
        found = self.sessions.get(session_id)
        if found is None or found.api_key != key:
            raise self._error(400, f"Session {session_id} not found")
        return found, "api_key", body

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
