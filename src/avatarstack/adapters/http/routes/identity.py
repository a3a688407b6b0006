"""Identity routes: /api/v1/auth, /api/v1/users/me, /api/v1/admin (docs/identity.md,
docs/api.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from avatarstack.adapters.http import cookies, keys, problems
from avatarstack.adapters.http.auth import principal, request_context
from avatarstack.adapters.http.body import (
    Offset,
    RowId,
    model_response,
    path_id,
    read_json,
    read_query,
)
from avatarstack.adapters.http.headers import no_store
from avatarstack.adapters.http.pipeline import REQUEST_ID
from avatarstack.adapters.http.routing import AUTHENTICATED, PUBLIC, Route
from avatarstack.core.identity import IdentityService, OAuthStart, Profile, TokenPair
from avatarstack.ports.errors import (
    AuthenticationError,
    AvatarstackError,
    UnavailableError,
    UpstreamError,
)
from avatarstack.ports.storage import AuditEvent, AuthSession

API = "/api/v1"
AUTH = ("auth",)
USERS = ("users",)
ADMIN = ("admin",)

# ----------------------------------------------------------------------------- models


class IdentityOut(BaseModel):
    id: str
    provider: str
    email: str | None
    created_at: datetime


class UserOut(BaseModel):
    id: str
    email: str
    display_name: str | None
    email_verified: bool
    roles: list[str]
    identities: list[IdentityOut]
    has_password: bool
    created_at: datetime

    @classmethod
    def of(cls, profile: Profile) -> UserOut:
        user = profile.user
        return cls(
            id=user.id,
            email=user.email,
            display_name=user.display_name,
            email_verified=user.email_verified,
            roles=sorted(profile.roles),
            identities=[
                IdentityOut(id=i.id, provider=i.provider, email=i.email, created_at=i.created_at)
                for i in profile.identities
            ],
            has_password=user.password_hash is not None,
            created_at=user.created_at,
        )


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str | None = Field(
        description="The refresh token; null in cookie mode (it is in the HttpOnly cookie)."
    )
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme name
    expires_in: int
    user: UserOut

    @classmethod
    def of(cls, pair: TokenPair) -> TokenOut:
        return cls(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            expires_in=pair.expires_in,
            user=UserOut.of(pair.profile),
        )


class RegisterIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=4096)
    display_name: str | None = Field(None, max_length=1000)


class RegisterOut(BaseModel):
    status: Literal["verification_sent"] = "verification_sent"
    verification_url: str | None = Field(None, description="Development only.")


class TokenIn(BaseModel):
    token: str = Field(min_length=1, max_length=512)


class EmailIn(BaseModel):
    email: str = Field(max_length=320)


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"


class LoginIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=4096)
    refresh_cookie: bool = Field(
        False,
        description="Put the refresh token in an HttpOnly cookie instead of the body "
        "(browsers; needs an Origin header of this site).",
    )


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class LogoutIn(BaseModel):
    refresh_token: str | None = Field(None, max_length=512)


class ResetIn(BaseModel):
    token: str = Field(min_length=1, max_length=512)
    password: str = Field(max_length=4096)


class ResetOut(BaseModel):
    status: Literal["password_reset"] = "password_reset"


class VerifyOut(BaseModel):
    user: UserOut


class VerifyQuery(BaseModel):
    token: str = Field("", max_length=512)


class ProviderOut(BaseModel):
    name: str
    display_name: str
    authorize_url: str


class ProvidersOut(BaseModel):
    password: bool = True
    oauth: list[ProviderOut]


class AuthorizeQuery(BaseModel):
    redirect_to: str | None = Field(None, max_length=2048)


class CallbackQuery(BaseModel):
    code: str | None = Field(None, max_length=2048)
    state: str | None = Field(None, max_length=512)
    error: str | None = Field(None, max_length=256)


class CodeIn(BaseModel):
    code: str = Field(min_length=1, max_length=512)
    refresh_cookie: bool = Field(
        False, description="Put the refresh token in an HttpOnly cookie (see login)."
    )


class LinkIn(BaseModel):
    redirect_to: str | None = Field(None, max_length=2048)


class LinkOut(BaseModel):
    authorize_url: str


class ProfilePatch(BaseModel):
    display_name: str | None = Field(None, max_length=1000)


class SessionOut(BaseModel):
    id: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool

    @classmethod
    def of(cls, session: AuthSession, current_id: str) -> SessionOut:
        return cls(
            id=session.id,
            created_at=session.created_at,
            last_used_at=session.last_used_at,
            expires_at=session.expires_at,
            user_agent=session.user_agent,
            ip=session.ip,
            current=session.id == current_id,
        )


class SessionsOut(BaseModel):
    sessions: list[SessionOut]


class UsersQuery(BaseModel):
    limit: int = Field(50, ge=1, le=200)
    offset: Offset = 0


class UsersOut(BaseModel):
    users: list[UserOut]
    total: int


class RolesIn(BaseModel):
    roles: list[str] = Field(min_length=1, max_length=10)


class AuditQuery(BaseModel):
    limit: int = Field(50, ge=1, le=500)
    before_id: RowId | None = None
    subject_id: str | None = Field(None, max_length=64, pattern=r"^[\x20-\x7e]*$")


class AuditOut(BaseModel):
    events: list[AuditEvent]


# ----------------------------------------------------------------------------- handlers


def _limit(request: web.Request) -> int:
    return request.app[keys.CONFIG].max_body_bytes


async def register(request: web.Request) -> web.Response:
    body = await read_json(request, RegisterIn, max_bytes=_limit(request))
    result = await request.app[keys.IDENTITY].register(
        body.email, body.password, body.display_name, request_context(request)
    )
    return model_response(RegisterOut(verification_url=result.verification_url), 202)


async def verify(request: web.Request) -> web.Response:
    body = await read_json(request, TokenIn, max_bytes=_limit(request))
    profile = await request.app[keys.IDENTITY].verify_email(body.token, request_context(request))
    return model_response(VerifyOut(user=UserOut.of(profile)))


async def verify_link(request: web.Request) -> web.Response:
    """The link in the e-mail: verify, then send the browser to the front end."""
    identity = request.app[keys.IDENTITY]
    try:  # a browser follows this link: every failure lands on the front end, never a problem
        query = read_query(request, VerifyQuery)
        await identity.verify_email(query.token, request_context(request))
    except AvatarstackError as exc:
        raise web.HTTPSeeOther(f"{identity.public_url}/?verify_error={exc.code}") from None
    raise web.HTTPSeeOther(f"{identity.public_url}/?verified=1")


async def resend(request: web.Request) -> web.Response:
    body = await read_json(request, EmailIn, max_bytes=_limit(request))
    await request.app[keys.IDENTITY].resend_verification(body.email, request_context(request))
    return model_response(Accepted(), 202)


#: proof that this browser signed in to the account before (docs/identity.md, "Lockout"); sent
#: only to the auth routes, never readable by scripts
DEVICE_COOKIE = "avatarstack_device"


def _tokens(request: web.Request, pair: TokenPair, in_cookie: bool) -> web.Response:
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
    body = await read_json(request, LoginIn, max_bytes=_limit(request))
    if body.refresh_cookie:
        cookies.check_origin(request)
    identity = request.app[keys.IDENTITY]
    pair = await identity.login(
        body.email,
        body.password,
        request_context(request),
        device=request.cookies.get(DEVICE_COOKIE),
    )
    response = _tokens(request, pair, body.refresh_cookie)
    if pair.device is not None:
        response.set_cookie(
            DEVICE_COOKIE,
            pair.device,
            max_age=int(identity.policy.device_ttl.total_seconds()),
            path=f"{API}/auth",
            httponly=True,
            samesite="Strict",
            secure=identity.public_url.startswith("https://"),
        )
    return response


async def refresh(request: web.Request) -> web.Response:
    body = await read_json(request, RefreshIn, max_bytes=_limit(request))
    pair = await request.app[keys.IDENTITY].refresh(body.refresh_token, request_context(request))
    return _tokens(request, pair, in_cookie=False)


async def cookie_refresh(request: web.Request) -> web.Response:
    """Rotate the refresh token held in the cookie; a missing, invalid or reused one clears
    the cookie (a reused one has also ended its session)."""
    cookies.check_origin(request)
    token = cookies.refresh_cookie(request)
    try:
        if token is None:
            raise AuthenticationError("no refresh cookie; log in again")
        pair = await request.app[keys.IDENTITY].refresh(token, request_context(request))
    except AuthenticationError as exc:
        response = problems.from_error(exc, request.get(REQUEST_ID))
        cookies.clear_refresh_cookie(response, request)
        return no_store(response)
    return _tokens(request, pair, in_cookie=True)


async def cookie_logout(request: web.Request) -> web.Response:
    """End the cookie's session (its refresh-token family) and clear the cookie."""
    cookies.check_origin(request)
    token = cookies.refresh_cookie(request)
    if token is not None:
        await request.app[keys.IDENTITY].logout_refresh(token, request_context(request))
    response = web.Response(status=204)
    cookies.clear_refresh_cookie(response, request)
    return response


async def logout(request: web.Request) -> web.Response:
    if request.can_read_body:
        await read_json(request, LogoutIn, max_bytes=_limit(request))
    await request.app[keys.IDENTITY].logout(principal(request), request_context(request))
    return web.Response(status=204)


async def forgot(request: web.Request) -> web.Response:
    body = await read_json(request, EmailIn, max_bytes=_limit(request))
    await request.app[keys.IDENTITY].forgot_password(body.email, request_context(request))
    return model_response(Accepted(), 202)


async def reset(request: web.Request) -> web.Response:
    body = await read_json(request, ResetIn, max_bytes=_limit(request))
    await request.app[keys.IDENTITY].reset_password(
        body.token, body.password, request_context(request)
    )
    return model_response(ResetOut())


async def providers(request: web.Request) -> web.Response:
    identity = request.app[keys.IDENTITY]
    listed = [
        ProviderOut(
            name=name,
            display_name=provider.display_name,
            authorize_url=f"{identity.public_url}{API}/auth/oauth/{name}/authorize",
        )
        for name, provider in sorted(identity.oauth_providers.items())
    ]
    return model_response(ProvidersOut(oauth=listed))


#: the browser binding of an OAuth login (see IdentityService.begin_oauth)
OAUTH_COOKIE = "avatarstack_oauth"


def _bind_browser(
    response: web.StreamResponse, identity: IdentityService, start: OAuthStart
) -> None:
    response.set_cookie(
        OAUTH_COOKIE,
        start.binding,
        max_age=int(start.max_age.total_seconds()),
        path=f"{API}/auth/oauth/",
        httponly=True,
        samesite="Lax",  # sent on the provider's top-level redirect back to us
        secure=identity.public_url.startswith("https://"),
    )


async def oauth_authorize(request: web.Request) -> web.Response:
    identity = request.app[keys.IDENTITY]
    query = read_query(request, AuthorizeQuery)
    try:
        start = await identity.begin_oauth(
            request.match_info["provider"], query.redirect_to, request_context(request)
        )
    except (UnavailableError, UpstreamError) as exc:
        # a browser navigation: an outage lands on the front end's error page, not a 5xx
        raise web.HTTPFound(identity.complete_url({"error": exc.code})) from None
    redirect = web.HTTPFound(start.url)
    _bind_browser(redirect, identity, start)
    raise redirect


async def oauth_callback(request: web.Request) -> web.Response:
    identity = request.app[keys.IDENTITY]
    query = read_query(request, CallbackQuery)
    if query.error:
        raise web.HTTPFound(identity.complete_url({"error": "provider-denied"}))
    target = await identity.finish_oauth(
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
    body = await read_json(request, CodeIn, max_bytes=_limit(request))
    if body.refresh_cookie:
        cookies.check_origin(request)
    pair = await request.app[keys.IDENTITY].exchange_login_code(body.code, request_context(request))
    return _tokens(request, pair, body.refresh_cookie)


async def oauth_link(request: web.Request) -> web.Response:
    body = await read_json(request, LinkIn, max_bytes=_limit(request))
    identity = request.app[keys.IDENTITY]
    start = await identity.begin_oauth(
        request.match_info["provider"],
        body.redirect_to,
        request_context(request),
        link_user_id=principal(request).user.id,
    )
    response = model_response(LinkOut(authorize_url=start.url))
    _bind_browser(response, identity, start)
    return response


async def me(request: web.Request) -> web.Response:
    return model_response(UserOut.of(principal(request).profile))  # loaded by authentication


async def update_me(request: web.Request) -> web.Response:
    body = await read_json(request, ProfilePatch, max_bytes=_limit(request))
    if "display_name" not in body.model_fields_set:  # a missing field means unchanged
        return model_response(UserOut.of(principal(request).profile))
    profile = await request.app[keys.IDENTITY].update_profile(principal(request), body.display_name)
    return model_response(UserOut.of(profile))


async def my_sessions(request: web.Request) -> web.Response:
    caller = principal(request)
    sessions = await request.app[keys.IDENTITY].list_sessions(caller)
    return model_response(
        SessionsOut(sessions=[SessionOut.of(s, caller.session_id) for s in sessions])
    )


async def revoke_other_sessions(request: web.Request) -> web.Response:
    await request.app[keys.IDENTITY].revoke_other_sessions(
        principal(request), request_context(request)
    )
    return web.Response(status=204)


async def revoke_session(request: web.Request) -> web.Response:
    await request.app[keys.IDENTITY].revoke_session(
        principal(request), path_id(request, "session_id", "session"), request_context(request)
    )
    return web.Response(status=204)


async def unlink_identity(request: web.Request) -> web.Response:
    await request.app[keys.IDENTITY].unlink_identity(
        principal(request), request.match_info["identity_id"], request_context(request)
    )
    return web.Response(status=204)


async def list_users(request: web.Request) -> web.Response:
    query = read_query(request, UsersQuery)
    profiles, total = await request.app[keys.IDENTITY].list_users(
        limit=query.limit, offset=query.offset
    )
    return model_response(UsersOut(users=[UserOut.of(p) for p in profiles], total=total))


async def set_roles(request: web.Request) -> web.Response:
    body = await read_json(request, RolesIn, max_bytes=_limit(request))
    profile = await request.app[keys.IDENTITY].set_roles(
        principal(request),
        path_id(request, "user_id", "user"),
        frozenset(body.roles),
        request_context(request),
    )
    return model_response(UserOut.of(profile))


async def audit(request: web.Request) -> web.Response:
    query = read_query(request, AuditQuery)
    events = await request.app[keys.IDENTITY].audit_log(
        limit=query.limit, before_id=query.before_id, subject_id=query.subject_id
    )
    return model_response(AuditOut(events=events))


# ----------------------------------------------------------------------------- table

_INPUT = {400: "Malformed JSON", 422: "Invalid input", 429: "Too many attempts"}

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
        responses=_INPUT,
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
        responses=_INPUT,
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
            **_INPUT,
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
        responses={401: "Invalid, used or expired refresh token", **_INPUT},
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
        responses=_INPUT,
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
    Route(
        "GET",
        f"{API}/users/me",
        me,
        "profile:read",
        "users_me",
        "Your profile with roles and linked logins.",
        USERS,
        response_model=UserOut,
    ),
    Route(
        "PATCH",
        f"{API}/users/me",
        update_me,
        "profile:write",
        "users_me_update",
        "Change your display name.",
        USERS,
        request_model=ProfilePatch,
        response_model=UserOut,
    ),
    Route(
        "GET",
        f"{API}/users/me/sessions",
        my_sessions,
        "profile:read",
        "users_me_sessions",
        "Your active sessions (devices).",
        USERS,
        response_model=SessionsOut,
    ),
    Route(
        "DELETE",
        f"{API}/users/me/sessions",
        revoke_other_sessions,
        "profile:write",
        "users_me_sessions_revoke_others",
        "End every session except this one.",
        USERS,
        status=204,
    ),
    Route(
        "DELETE",
        f"{API}/users/me/sessions/{{session_id}}",
        revoke_session,
        "profile:write",
        "users_me_session_revoke",
        "End one of your sessions.",
        USERS,
        status=204,
        responses={404: "No such session"},
    ),
    Route(
        "DELETE",
        f"{API}/users/me/identities/{{identity_id}}",
        unlink_identity,
        "profile:write",
        "users_me_identity_unlink",
        "Unlink an external login (never the last way to log in).",
        USERS,
        status=204,
        responses={404: "No such identity", 409: "It is the last login method"},
    ),
    Route(
        "GET",
        f"{API}/admin/users",
        list_users,
        "users:admin",
        "admin_users",
        "All users with their roles.",
        ADMIN,
        query_model=UsersQuery,
        response_model=UsersOut,
    ),
    Route(
        "PUT",
        f"{API}/admin/users/{{user_id}}/roles",
        set_roles,
        "users:admin",
        "admin_user_roles",
        "Replace a user's roles.",
        ADMIN,
        request_model=RolesIn,
        response_model=UserOut,
        responses={404: "No such user", 409: "Last admin"},
    ),
    Route(
        "GET",
        f"{API}/admin/audit",
        audit,
        "audit:read",
        "admin_audit",
        "The audit log, newest first.",
        ADMIN,
        query_model=AuditQuery,
        response_model=AuditOut,
    ),
]
