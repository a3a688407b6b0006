"""The middleware chain, outermost first: request id + access log + metrics, errors, access.

One middleware turns every error into a problem+json response, so no handler maps errors and
no stack trace ever reaches a client.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from aiohttp import web

from avatarstack.adapters.http import keys, problems
from avatarstack.adapters.http.routing import PUBLIC, Handler, Route
from avatarstack.ports.errors import AuthenticationError, AvatarstackError, PermissionDeniedError

log = structlog.get_logger("avatarstack.http")

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REQUEST_ID = web.RequestKey("avatarstack_request_id", str)
UNMATCHED = "(unmatched)"


def _route_label(request: web.Request) -> str:
    match = request.match_info
    if match.http_exception is not None:
        return UNMATCHED
    resource = match.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind a request id, log one line per request and record metrics."""
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers[REQUEST_ID_HEADER] = request_id
        return response
    finally:
        elapsed = time.perf_counter() - started
        route = _route_label(request)
        request.app[keys.METRICS].observe(request.method, route, status, elapsed)
        spec = request.app[keys.ROUTES].lookup(request.match_info.route)
        if request.app[keys.CONFIG].access_log and (spec is None or spec.log_requests):
            log.info(
                "http_request",
                method=request.method,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                remote=request.remote,
            )
        structlog.contextvars.unbind_contextvars("request_id")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every exception to an RFC 9457 problem response."""
    request_id = request.get(REQUEST_ID)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects are responses, not errors
            raise
        return problems.from_http_exception(exc, request_id)
    except AvatarstackError as exc:
        response = problems.from_error(exc, request_id)
        if response.status >= 500:
            log.warning("request_failed", error=exc.code, detail=exc.detail)
        return response
    except Exception:
        log.exception("unhandled_error", path=request.path)
        return problems.problem_response(
            500,
            "internal-error",
            "Internal server error",
            "The server could not complete the request; the request id identifies it in the logs.",
            request_id=request_id,
        )
    return response


@web.middleware
async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Deny by default: a route runs only if it declared its access and the caller has it."""
    match = request.match_info
    if match.http_exception is not None:
        raise match.http_exception
    spec: Route | None = request.app[keys.ROUTES].lookup(match.route)
    if spec is None:
        raise PermissionDeniedError("this route does not declare who may call it")
    if spec.access != PUBLIC:
        await request.app[keys.ACCESS_POLICY](request, spec)
    limit = spec.max_body_bytes or request.app[keys.CONFIG].max_body_bytes
    length = request.content_length
    if length is not None and length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
    return await handler(request)


async def deny_non_public(request: web.Request, route: Route) -> None:
    """The access policy until an identity plugin installs one: only public routes run."""
    raise AuthenticationError("this route needs credentials")


__all__ = ["REQUEST_ID", "access", "deny_non_public", "errors", "observe"]
