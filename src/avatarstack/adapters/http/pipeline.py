"""The request pipeline, wrapped around every declared route's handler.

It binds a request id, enforces the route's declared access, limits the body, turns every
error into an RFC 9457 problem response (so no handler maps errors and no stack trace reaches a
client), records metrics and writes the access log. Wrapping each handler once at registration
instead of using aiohttp middlewares keeps the per-request cost low (aiohttp adds a wrapper
layer of its own as soon as an app has a middleware).

Requests that match no declared route reach the *fallback* route, which answers 404, or 405
with ``Allow`` when the path exists with other methods.
"""

from __future__ import annotations

import contextvars
import itertools
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from aiohttp import web

from avatarstack.adapters.http import problems
from avatarstack.adapters.http.metrics import HttpMetrics
from avatarstack.adapters.http.routing import PUBLIC, Handler, Route
from avatarstack.ports.errors import AuthenticationError, AvatarstackError

log = structlog.get_logger("avatarstack.http")

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID = web.RequestKey("avatarstack_request_id", str)
#: the id of the request being handled, for log lines written while it runs (bootstrap's
#: logging adds it to every event); a plain ContextVar is cheaper than structlog's binding
CURRENT_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "avatarstack_request_id", default=None
)
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED = "(unmatched)"

#: an access rule: raises AuthenticationError / PermissionDeniedError to refuse the request
AccessPolicy = Callable[[web.Request, Route], Awaitable[None]]


async def deny_non_public(request: web.Request, route: Route) -> None:
    """The access policy until an identity service installs one: only public routes run."""
    raise AuthenticationError("this route needs credentials")


@dataclass
class Pipeline:
    """Per-application state of the pipeline."""

    metrics: HttpMetrics
    max_body_bytes: int
    access_log: bool = True
    max_upload_bytes: int = 50 * 1024 * 1024
    access_policy: AccessPolicy = deny_non_public
    #: request ids: a random prefix per application and a counter — unique across processes
    #: and instances, and much cheaper per request than a fresh UUID
    _prefix: str = field(default_factory=lambda: secrets.token_hex(6))
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def request_id(self, request: web.Request) -> str:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        if incoming and _VALID_REQUEST_ID.match(incoming):
            return incoming
        return f"{self._prefix}{next(self._counter):010x}"

    def wrap(self, route: Route, label: str | None = None) -> Handler:
        """The handler aiohttp calls for ``route``."""
        metric_route = label or route.path
        if route.upload:
            limit = self.max_upload_bytes
        else:
            limit = route.max_body_bytes or self.max_body_bytes
        log_requests = self.access_log and route.log_requests
        handler = route.handler
        public = route.access == PUBLIC

        async def endpoint(request: web.Request) -> web.StreamResponse:
            request_id = self.request_id(request)
            request[REQUEST_ID] = request_id
            token = CURRENT_REQUEST_ID.set(request_id)
            started = time.perf_counter()
            try:
                try:
                    if not public:
                        await self.access_policy(request, route)
                    length = request.content_length
                    if length is not None and length > limit:
                        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
                    response = await handler(request)
                except web.HTTPException as exc:
                    if exc.status < 400:  # redirects are responses, not errors
                        exc.headers[REQUEST_ID_HEADER] = request_id
                        self._finish(request, metric_route, exc.status, started, log_requests)
                        raise
                    response = problems.from_http_exception(exc, request_id)
                except AvatarstackError as exc:
                    response = problems.from_error(exc, request_id)
                    if response.status >= 500:
                        log.warning("request_failed", error=exc.code, detail=exc.detail)
                except Exception:
                    log.exception("unhandled_error", route=metric_route)
                    response = problems.internal_error(request_id)
                response.headers[REQUEST_ID_HEADER] = request_id
                self._finish(request, metric_route, response.status, started, log_requests)
                return response
            finally:
                CURRENT_REQUEST_ID.reset(token)

        return endpoint

    def _finish(
        self, request: web.Request, route: str, status: int, started: float, log_requests: bool
    ) -> None:
        elapsed = time.perf_counter() - started
        self.metrics.observe(request.method, route, status, elapsed)
        if log_requests:
            log.info(
                "http_request",
                method=request.method,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                remote=request.remote,
            )


async def fallback(request: web.Request) -> web.Response:
    """No declared route matched: 405 with ``Allow`` if the path exists, otherwise 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is request.match_info.route.resource:
            continue
        _, methods = await resource.resolve(request)
        allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, sorted(allowed))
    raise web.HTTPNotFound()


FALLBACK = Route(
    "*",
    r"/{tail:[\s\S]*}",  # any path, newlines included (they arrive %-decoded)
    fallback,
    PUBLIC,
    "fallback",
    "Answers requests that match no route (404/405 problems).",
    include_in_schema=False,
)
