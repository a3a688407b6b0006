"""Accounts and sessions: /api/v1/auth (register, verification, login, refresh, cookie mode,
logout, password reset, the login methods); docs/identity.md."""

from __future__ import annotations

from aiohttp import web

from avatarstack.adapters.http import cookies, keys, problems
from avatarstack.adapters.http.auth import principal, request_context
from avatarstack.adapters.http.body import fields_in, model_response, read_json, read_query
from avatarstack.adapters.http.headers import no_store
from avatarstack.adapters.http.pipeline import REQUEST_ID
from avatarstack.adapters.http.routes.identity.models import (
    API,
    AUTH,
    INPUT,
    Accepted,
    EmailIn,
    LoginIn,
    LogoutIn,
    ProviderOut,
    ProvidersOut,
    RefreshIn,
    RegisterIn,
    RegisterOut,
    ResetIn,
    ResetOut,
    TokenIn,
    TokenOut,
    UserOut,
    VerifyOut,
    VerifyQuery,
    body_limit,
)
from avatarstack.adapters.http.routing import AUTHENTICATED, PUBLIC, Route
from avatarstack.core.identity import TokenPair
from avatarstack.ports.errors import AuthenticationError, AvatarstackError


async def register(request: web.Request) -> web.Response:
    body = await read_json(request, RegisterIn, max_bytes=body_limit(request))
    with fields_in("body"):
        result = await request.app[keys.IDENTITY].registration.register(
            body.email, body.password, body.display_name, request_context(request)
        )
    return model_response(RegisterOut(verification_url=result.verification_url), 202)


async def verify(request: web.Request) -> web.Response:
    body = await read_json(request, TokenIn, max_bytes=body_limit(request))
    profile = await request.app[keys.IDENTITY].registration.verify_email(
        body.token, request_context(request)
    )
    return model_response(VerifyOut(user=UserOut.of(profile)))


async def verify_link(request: web.Request) -> web.Response:
    """The link in the e-mail: verify, then send the browser to the front end."""
    site = request.app[keys.CONFIG].public_url
    try:  # a browser follows this link: every failure lands on the front end, never a problem
        query = read_query(request, VerifyQuery)
        await request.app[keys.IDENTITY].registration.verify_email(
            query.token, request_context(request)
        )
    except AvatarstackError as exc:
        raise web.HTTPSeeOther(f"{site}/?verify_error={exc.code}") from None
    raise web.HTTPSeeOther(f"{site}/?verified=1")


async def resend(request: web.Request) -> web.Response:
    body = await read_json(request, EmailIn, max_bytes=body_limit(request))
    await request.app[keys.IDENTITY].registration.resend_verification(
        body.email, request_context(request)
    )
    return model_response(Accepted(), 202)


#: proof that this browser signed in to the account before (docs/identity.md, "Lockout"); sent
#: only to the auth routes, never readable by scripts
DEVICE_COOKIE = "avatarstack_device"


def token_response(request: web.Request, pair: TokenPair, in_cookie: bool) -> web.Response:
    """A token pair response (never cached); in cookie mode the refresh token travels in the
    HttpOnly cookie only."""
    if not in_cookie:
        return no_store(model_response(TokenOut.of(pair)))
    out = TokenOut.of(pair)
    out.refresh_token = None
    response = no_store(model_response(out))
    cookies.set_refresh_cookie(
        response,
        request,
        pair.refresh_token,
        max_age=int(request.app[keys.IDENTITY].policy.refresh_ttl.total_seconds()),
    )
    return response


async def login(request: web.Request) -> web.Response:
    body = await read_json(request, LoginIn, max_bytes=body_limit(request))
    if body.refresh_cookie:
        cookies.check_origin(request)
    identity = request.app[keys.IDENTITY]
    pair = await identity.sessions.login(
        body.email,
        body.password,
        request_context(request),
        device=request.cookies.get(DEVICE_COOKIE),
    )
    response = token_response(request, pair, body.refresh_cookie)
    if pair.device is not None:
        response.set_cookie(
            DEVICE_COOKIE,
            pair.device,
            max_age=int(identity.policy.device_ttl.total_seconds()),
            path=f"{API}/auth",
            httponly=True,
            samesite="Strict",
            secure=request.app[keys.CONFIG].public_url.startswith("https://"),
        )
    return response


async def refresh(request: web.Request) -> web.Response:
    body = await read_json(request, RefreshIn, max_bytes=body_limit(request))
    pair = await request.app[keys.IDENTITY].sessions.refresh(
        body.refresh_token, request_context(request)
    )
    return token_response(request, pair, in_cookie=False)


async def cookie_refresh(request: web.Request) -> web.Response:
    """Rotate the refresh token held in the cookie; a missing, invalid or reused one clears
    the cookie (a reused one has also ended its session)."""
    cookies.check_origin(request)
    token = cookies.refresh_cookie(request)
    try:
        if token is None:
            raise AuthenticationError("no refresh cookie; log in again")
        pair = await request.app[keys.IDENTITY].sessions.refresh(token, request_context(request))
    except AuthenticationError as exc:
        response = problems.from_error(exc, request.get(REQUEST_ID))
        cookies.clear_refresh_cookie(response, request)
        return no_store(response)
    return token_response(request, pair, in_cookie=True)


async def cookie_logout(request: web.Request) -> web.Response:
    """End the cookie's session (its refresh-token family) and clear the cookie."""
    cookies.check_origin(request)
    token = cookies.refresh_cookie(request)
    if token is not None:
        await request.app[keys.IDENTITY].sessions.logout_refresh(token, request_context(request))
    response = web.Response(status=204)
    cookies.clear_refresh_cookie(response, request)
    return response


async def logout(request: web.Request) -> web.Response:
    if request.can_read_body:
        await read_json(request, LogoutIn, max_bytes=body_limit(request))
    await request.app[keys.IDENTITY].sessions.logout(principal(request), request_context(request))
    return web.Response(status=204)


async def forgot(request: web.Request) -> web.Response:
    body = await read_json(request, EmailIn, max_bytes=body_limit(request))
    await request.app[keys.IDENTITY].passwords.forgot_password(body.email, request_context(request))
    return model_response(Accepted(), 202)


async def reset(request: web.Request) -> web.Response:
    body = await read_json(request, ResetIn, max_bytes=body_limit(request))
    with fields_in("body"):
        await request.app[keys.IDENTITY].passwords.reset_password(
            body.token, body.password, request_context(request)
        )
    return model_response(ResetOut())


async def providers(request: web.Request) -> web.Response:
    site = request.app[keys.CONFIG].public_url
    listed = [
        ProviderOut(
            name=name,
            display_name=provider.display_name,
            authorize_url=f"{site}{API}/auth/oauth/{name}/authorize",
        )
        for name, provider in sorted(request.app[keys.IDENTITY].oauth.providers.items())
    ]
    return model_response(ProvidersOut(oauth=listed))


ROUTES = [
    Route(
        "POST",
        f"{API}/auth/register",
        register,
        PUBLIC,
        "auth_register",
        "Create an account; answers the same for new and existing e-mails.",
        AUTH,
        request_model=RegisterIn,
        response_model=RegisterOut,
        status=202,
        responses=INPUT,
    ),
    Route(
        "POST",
        f"{API}/auth/verify",
        verify,
        PUBLIC,
        "auth_verify",
        "Confirm an e-mail address with the token from the message.",
        AUTH,
        request_model=TokenIn,
        response_model=VerifyOut,
        responses={400: "Invalid, used or expired token"},
    ),
    Route(
        "GET",
        f"{API}/auth/verify",
        verify_link,
        PUBLIC,
        "auth_verify_link",
        "The e-mail link: verifies and redirects (303) to the site.",
        AUTH,
        query_model=VerifyQuery,
        status=303,
    ),
    Route(
        "POST",
        f"{API}/auth/verify/resend",
        resend,
        PUBLIC,
        "auth_verify_resend",
        "Send the verification message again (always 202, throttled).",
        AUTH,
        request_model=EmailIn,
        response_model=Accepted,
        status=202,
        responses=INPUT,
    ),
    Route(
        "POST",
        f"{API}/auth/login",
        login,
        PUBLIC,
        "auth_login",
        "Log in with e-mail and password.",
        AUTH,
        request_model=LoginIn,
        response_model=TokenOut,
        responses={
            401: "Wrong e-mail or password",
            403: "E-mail not verified, or (cookie mode) a missing or foreign Origin header",
            **INPUT,
        },
    ),
    Route(
        "POST",
        f"{API}/auth/refresh",
        refresh,
        PUBLIC,
        "auth_refresh",
        "Exchange a refresh token (single use) for a new token pair.",
        AUTH,
        request_model=RefreshIn,
        response_model=TokenOut,
        responses={401: "Invalid, used or expired refresh token", **INPUT},
    ),
    Route(
        "POST",
        f"{API}/auth/cookie/refresh",
        cookie_refresh,
        PUBLIC,
        "auth_cookie_refresh",
        "Cookie mode: rotate the refresh token held in the HttpOnly cookie (no body; the "
        "Origin header must be this site's) for a new access token; the cookie is re-set.",
        AUTH,
        response_model=TokenOut,
        responses={
            401: "Missing, invalid, used or expired refresh cookie (the cookie is cleared)",
            403: "Missing or foreign Origin header",
        },
    ),
    Route(
        "POST",
        f"{API}/auth/cookie/logout",
        cookie_logout,
        PUBLIC,
        "auth_cookie_logout",
        "Cookie mode: end the cookie's session (its refresh tokens stop working) and clear "
        "the cookie (the Origin header must be this site's).",
        AUTH,
        status=204,
        responses={403: "Missing or foreign Origin header"},
    ),
    Route(
        "POST",
        f"{API}/auth/logout",
        logout,
        AUTHENTICATED,
        "auth_logout",
        "End the current session (its refresh tokens stop working).",
        AUTH,
        status=204,
    ),
    Route(
        "POST",
        f"{API}/auth/password/forgot",
        forgot,
        PUBLIC,
        "auth_password_forgot",
        "Mail a password-reset link (always 202).",
        AUTH,
        request_model=EmailIn,
        response_model=Accepted,
        status=202,
        responses=INPUT,
    ),
    Route(
        "POST",
        f"{API}/auth/password/reset",
        reset,
        PUBLIC,
        "auth_password_reset",
        "Set a new password with the reset token; ends every session.",
        AUTH,
        request_model=ResetIn,
        response_model=ResetOut,
        responses={400: "Invalid, used or expired token"},
    ),
    Route(
        "GET",
        f"{API}/auth/providers",
        providers,
        PUBLIC,
        "auth_providers",
        "The login methods available.",
        AUTH,
        response_model=ProvidersOut,
    ),
]
