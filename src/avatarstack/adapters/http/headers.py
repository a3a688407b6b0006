"""Security headers on every response.

Every response says ``nosniff``, sends no referrer, may not be framed and names the server
without a version. API responses get a Content-Security-Policy that allows nothing (they are
data, never documents); the console's routes set their own policy first (see
``adapters.http.console``). Behind an https public URL, browsers are told to stay on https
(HSTS). aiohttp's ``on_response_prepare`` signal runs for every response of the application,
errors and WebSocket handshakes included.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

CSP_HEADER = "Content-Security-Policy"
API_CSP = "default-src 'none'; frame-ancestors 'none'"
SERVER_NAME = "avatarstack"
HSTS = "max-age=31536000; includeSubDomains"
#: what every response carries, whatever its route
BASE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Server": SERVER_NAME,
}

ResponseHook = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


def base_headers(*, https: bool) -> dict[str, str]:
    """The headers every response carries (HSTS when the public URL is https)."""
    headers = dict(BASE_HEADERS)
    if https:
        headers["Strict-Transport-Security"] = HSTS
    return headers


def security_headers(*, https: bool) -> ResponseHook:
    """The ``on_response_prepare`` hook adding the security headers."""
    fixed = base_headers(https=https)

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers.update(fixed)
        if CSP_HEADER not in headers:
            headers[CSP_HEADER] = API_CSP

    return add_headers


R = TypeVar("R", bound=web.StreamResponse)


def no_store(response: R) -> R:
    """Mark a response that carries credentials: no cache may keep it."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
