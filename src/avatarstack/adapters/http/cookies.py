"""The refresh-token cookie of the browser console (cookie mode of the auth API).

The cookie is ``HttpOnly`` (scripts never see it), ``SameSite=Strict``, ``Secure`` when the
public URL is https, and its ``Path`` is the two cookie routes, so it travels nowhere else.
Requests that use it must also carry an ``Origin`` header naming this site (the public URL's
origin, or the request's own ``scheme://host``): SameSite plus the Origin check is the CSRF
defence.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from avatarstack.adapters.http import keys
from avatarstack.ports.errors import PermissionDeniedError

REFRESH_COOKIE = "avatarstack_refresh"
COOKIE_PATH = "/api/v1/auth/cookie"


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _secure(request: web.Request) -> bool:
    return request.app[keys.CONFIG].public_url.lower().startswith("https://")


def check_origin(request: web.Request) -> None:
    """Refuse (403) a cookie request whose ``Origin`` is missing or another site's."""
    origin = request.headers.get("Origin", "").strip().lower()
    allowed = {
        _origin_of(request.app[keys.CONFIG].public_url),
        f"{request.scheme}://{request.host}".lower(),
    }
    if not origin or origin == "null" or origin not in allowed:
        raise PermissionDeniedError(
            "cookie requests need an Origin header naming this site (cross-site requests are "
            "refused)"
        )


def refresh_cookie(request: web.Request) -> str | None:
    value = request.cookies.get(REFRESH_COOKIE)
    return value if value and len(value) <= 512 else None


def set_refresh_cookie(
    response: web.StreamResponse, request: web.Request, token: str, *, max_age: int
) -> None:
    response.set_cookie(
        REFRESH_COOKIE,
        token,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=_secure(request),
        httponly=True,
        samesite="Strict",
    )


def clear_refresh_cookie(response: web.StreamResponse, request: web.Request) -> None:
    response.set_cookie(
        REFRESH_COOKIE,
        "",
        max_age=0,
        expires="Thu, 01 Jan 1970 00:00:00 GMT",
        path=COOKIE_PATH,
        secure=_secure(request),
        httponly=True,
        samesite="Strict",
    )
