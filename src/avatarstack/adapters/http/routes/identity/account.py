"""The caller's account (/api/v1/users/me) and administration (/api/v1/admin); docs/identity.md."""

from __future__ import annotations

from aiohttp import web

from avatarstack.adapters.http import keys
from avatarstack.adapters.http.auth import principal, request_context
from avatarstack.adapters.http.body import (
    fields_in,
    model_response,
    path_id,
    read_json,
    read_query,
)
from avatarstack.adapters.http.routes.identity.models import (
    ADMIN,
    API,
    USERS,
    AuditOut,
    AuditQuery,
    ProfilePatch,
    RolesIn,
    SessionOut,
    SessionsOut,
    UserOut,
    UsersOut,
    UsersQuery,
    body_limit,
)
from avatarstack.adapters.http.routing import Route


async def me(request: web.Request) -> web.Response:
    return model_response(UserOut.of(principal(request).profile))  # loaded by authentication


async def update_me(request: web.Request) -> web.Response:
    body = await read_json(request, ProfilePatch, max_bytes=body_limit(request))
    if "display_name" not in body.model_fields_set:  # a missing field means unchanged
        return model_response(UserOut.of(principal(request).profile))
    with fields_in("body"):
        profile = await request.app[keys.IDENTITY].admin.update_profile(
            principal(request), body.display_name
        )
    return model_response(UserOut.of(profile))


async def my_sessions(request: web.Request) -> web.Response:
    caller = principal(request)
    sessions = await request.app[keys.IDENTITY].sessions.list_sessions(caller)
    return model_response(
        SessionsOut(sessions=[SessionOut.of(s, caller.session_id) for s in sessions])
    )


async def revoke_other_sessions(request: web.Request) -> web.Response:
    await request.app[keys.IDENTITY].sessions.revoke_other_sessions(
        principal(request), request_context(request)
    )
    return web.Response(status=204)


async def revoke_session(request: web.Request) -> web.Response:
    await request.app[keys.IDENTITY].sessions.revoke_session(
        principal(request), path_id(request, "session_id", "session"), request_context(request)
    )
    return web.Response(status=204)


async def unlink_identity(request: web.Request) -> web.Response:
    await request.app[keys.IDENTITY].oauth.unlink_identity(
        principal(request), request.match_info["identity_id"], request_context(request)
    )
    return web.Response(status=204)


async def list_users(request: web.Request) -> web.Response:
    query = read_query(request, UsersQuery)
    profiles, total = await request.app[keys.IDENTITY].admin.list_users(
        limit=query.limit, offset=query.offset
    )
    return model_response(UsersOut(users=[UserOut.of(p) for p in profiles], total=total))


async def set_roles(request: web.Request) -> web.Response:
    body = await read_json(request, RolesIn, max_bytes=body_limit(request))
    user_id = path_id(request, "user_id", "user")
    with fields_in("body"):
        profile = await request.app[keys.IDENTITY].admin.set_roles(
            principal(request), user_id, frozenset(body.roles), request_context(request)
        )
    return model_response(UserOut.of(profile))


async def audit(request: web.Request) -> web.Response:
    query = read_query(request, AuditQuery)
    events = await request.app[keys.IDENTITY].admin.audit_log(
        limit=query.limit, before_id=query.before_id, subject_id=query.subject_id
    )
    return model_response(AuditOut(events=events))


# ----------------------------------------------------------------------------- table

ROUTES = [
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
