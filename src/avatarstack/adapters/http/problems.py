"""RFC 9457 problem details: one mapping from error types to HTTP responses."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from avatarstack.ports import errors

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:avatarstack:problem:"

#: most specific first; the first matching class wins
STATUS_BY_ERROR: tuple[tuple[type[errors.AvatarstackError], int], ...] = (
    (errors.InvalidInputError, 422),
    (errors.MalformedRequestError, 400),
    (errors.InvalidTokenError, 400),
    (errors.UnsupportedMediaTypeError, 415),
    (errors.AuthenticationError, 401),
    (errors.PermissionDeniedError, 403),
    (errors.NotFoundError, 404),
    (errors.ConflictError, 409),
    (errors.RateLimitedError, 429),
    (errors.UnavailableError, 503),
    (errors.UpstreamError, 502),
    (errors.StorageError, 500),
)

#: codes for aiohttp's own HTTP exceptions (unknown route, wrong method, body too large…)
CODE_BY_STATUS = {
    400: "malformed-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    408: "request-timeout",
    409: "conflict",
    413: "payload-too-large",
    414: "uri-too-long",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "rate-limited",
    431: "headers-too-large",
    500: "internal-error",
    502: "upstream-error",
    503: "service-unavailable",
}


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + code,
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    return web.Response(
        status=status,
        text=json.dumps(body, ensure_ascii=False),
        content_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def from_error(exc: errors.AvatarstackError, request_id: str | None) -> web.Response:
    status = next((s for cls, s in STATUS_BY_ERROR if isinstance(exc, cls)), 500)
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if isinstance(exc, errors.InvalidInputError):
        extra["errors"] = [{"field": e.field, "message": e.message} for e in exc.errors]
    if isinstance(exc, errors.RateLimitedError):
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if isinstance(exc, errors.UnavailableError):
        headers["Retry-After"] = "5"
    if isinstance(exc, errors.AuthenticationError):
        headers["WWW-Authenticate"] = 'Bearer realm="avatarstack"'
    # 503 and 502 details are written for people (which dependency, which setting to fix) and
    # never carry secrets; a 500 says nothing about internals
    detail = (
        exc.detail
        if status < 500 or isinstance(exc, errors.UnavailableError | errors.UpstreamError)
        else None
    )
    return problem_response(
        status,
        exc.code,
        exc.title,
        detail or "The server could not complete the request.",
        headers=headers or None,
        request_id=request_id,
        **extra,
    )


def from_http_exception(exc: web.HTTPException, request_id: str | None) -> web.Response:
    status = exc.status
    headers = {
        k: v for k, v in exc.headers.items() if k.lower() in {"allow", "retry-after", "location"}
    }
    detail = exc.text if exc.text and not exc.text.startswith(f"{status}:") else None
    return problem_response(
        status,
        CODE_BY_STATUS.get(status, "http-error"),
        exc.reason,
        detail or _default_detail(status),
        headers=headers or None,
        request_id=request_id,
    )


def _default_detail(status: int) -> str:
    return {
        404: "No route matches this path.",
        405: "This route does not accept that method (see the Allow header).",
        413: "The request body is larger than this route accepts.",
    }.get(status, "")


def internal_error(request_id: str | None) -> web.Response:
    return problem_response(
        500,
        "internal-error",
        "Internal server error",
        "The server could not complete the request; the request id identifies it in the logs.",
        request_id=request_id,
    )
