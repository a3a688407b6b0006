"""External logins: /api/v1/auth/oauth (authorize, callback, exchange, link); docs/identity.md."""

from __future__ import annotations

from aiohttp import web

from avatarstack.adapters.http import cookies, keys
from avatarstack.adapters.http.auth import principal, request_context
from avatarstack.adapters.http.body import fields_in, model_response, read_json, read_query
from avatarstack.adapters.http.routes.identity.auth import token_response
from avatarstack.adapters.http.routes.identity.models import (
    API,
    AUTH,
    AuthorizeQuery,
    CallbackQuery,
    CodeIn,
    LinkIn,
    LinkOut,
    TokenOut,
    body_limit,
)
from avatarstack.adapters.http.routing import PUBLIC, Route
from avatarstack.core.identity import OAuthStart
from avatarstack.ports.errors import UnavailableError, UpstreamError

#: the browser binding of an OAuth login (see OAuthService.begin_oauth)
OAUTH_COOKIE = "avatarstack_oauth"


def _bind_browser(response: web.StreamResponse, request: web.Request, start: OAuthStart) -> None:
    response.set_cookie(
        OAUTH_COOKIE,
        start.binding,
        max_age=int(start.max_age.total_seconds()),
        path=f"{API}/auth/oauth/",
        httponly=True,
        samesite="Lax",  # sent on the provider's top-level redirect back to us
        secure=request.app[keys.CONFIG].public_url.startswith("https://"),
    )


async def oauth_authorize(request: web.Request) -> web.Response:
    oauth = request.app[keys.IDENTITY].oauth
    query = read_query(request, AuthorizeQuery)
    try:
        with fields_in("query"):
            start = await oauth.begin_oauth(
                request.match_info["provider"], query.redirect_to, request_context(request)
            )
    except (UnavailableError, UpstreamError) as exc:
        # a browser navigation: an outage lands on the front end's error page, not a 5xx
        raise web.HTTPFound(oauth.failure_url(exc.code)) from None
    redirect = web.HTTPFound(start.url)
    _bind_browser(redirect, request, start)
    raise redirect


async def oauth_callback(request: web.Request) -> web.Response:
    oauth = request.app[keys.IDENTITY].oauth
    query = read_query(request, CallbackQuery)
    if query.error:
        raise web.HTTPFound(oauth.failure_url("provider-denied"))
    target = await oauth.finish_oauth(
        request.match_info["provider"],
        query.code,
        query.state,
        request.cookies.get(OAUTH_COOKIE),
        request_context(request),
    )
    # the cookie is left to expire: it is useless without its (now used) state, and deleting it
    # on a forged callback would let an attacker break a login in progress
    raise web.HTTPFound(target)


async def oauth_exchange(request: web.Request) -> web.Response:
    body = await read_json(request, CodeIn, max_bytes=body_limit(request))
    if body.refresh_cookie:
        cookies.check_origin(request)
    pair = await request.app[keys.IDENTITY].oauth.exchange_login_code(
        body.code, request_context(request)
    )
    return token_response(request, pair, body.refresh_cookie)


async def oauth_link(request: web.Request) -> web.Response:
    body = await read_json(request, LinkIn, max_bytes=body_limit(request))
    with fields_in("body"):
        start = await request.app[keys.IDENTITY].oauth.begin_oauth(
            request.match_info["provider"],
            body.redirect_to,
            request_context(request),
            link_user_id=principal(request).user.id,
        )
    response = model_response(LinkOut(authorize_url=start.url))
    _bind_browser(response, request, start)
    return response


ROUTES = [
    Route(
        "GET",
        f"{API}/auth/oauth/{{provider}}/authorize",
        oauth_authorize,
        PUBLIC,
        "auth_oauth_authorize",
        "Start an external login (302 to the provider).",
        AUTH,
        query_model=AuthorizeQuery,
        status=302,
        responses={404: "Unknown provider"},
    ),
    Route(
        "GET",
        f"{API}/auth/oauth/{{provider}}/callback",
        oauth_callback,
        PUBLIC,
        "auth_oauth_callback",
        "The provider's redirect; 302 to PUBLIC_URL/oauth/complete#code=… or #error=…",
        AUTH,
        query_model=CallbackQuery,
        status=302,
    ),
    Route(
        "POST",
        f"{API}/auth/oauth/exchange",
        oauth_exchange,
        PUBLIC,
        "auth_oauth_exchange",
        "Trade the one-time login code (≤ 60 s) for a token pair.",
        AUTH,
        request_model=CodeIn,
        response_model=TokenOut,
        responses={400: "Invalid, used or expired code"},
    ),
    Route(
        "POST",
        f"{API}/auth/oauth/{{provider}}/link",
        oauth_link,
        "profile:write",
        "auth_oauth_link",
        "Start linking an external login to your account.",
        AUTH,
        request_model=LinkIn,
        response_model=LinkOut,
    ),
]
