"""Role-based access over HTTP: every route declares who may call it, and the declaration holds
for every role — deny by default, roles read on every request."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from avatarstack import hookimpl
from avatarstack.adapters.argon2 import Argon2PasswordHasher
from avatarstack.adapters.http import keys
from avatarstack.adapters.http.routing import AUTHENTICATED, PUBLIC, Route
from avatarstack.bootstrap.app import CONTAINER
from avatarstack.core import accounts
from avatarstack.core.identity import RequestContext

API = "/api/v1"
PROBLEM = "application/problem+json"
PASSWORD = "correct horse battery staple"
ANONYMOUS = "anonymous"
CALLERS = (ANONYMOUS, *sorted(accounts.ROLES))
#: a path parameter of any route: an id that names nothing
DUMMY = "00000000000000000000000000"


async def secret(request: web.Request) -> web.Response:
    return web.json_response({"secret": True})


class UnknownPermissionRoute:
    """A plugin route guarded by a permission that no role grants."""

    @hookimpl
    def register_routes(self, register: Callable[[Route], None]) -> None:
        register(Route("GET", "/test/nobody", secret, "reports:read", "nobody", "Nobody."))


@pytest.fixture
async def client(avatarstack_client: Any) -> Any:
    return await avatarstack_client(
        plugins=(("test-routes", UnknownPermissionRoute()),),
        providers_={
            "password_hasher": Argon2PasswordHasher(memory_cost=1024, time_cost=1, parallelism=1)
        },
        public_url="http://app.test",
        # a fresh login per request below; the login limits are tested elsewhere
        auth={"rate_limits": False},
    )


@dataclass(frozen=True)
class Caller:
    role: str
    email: str
    user_id: str


async def create_callers(client: Any) -> dict[str, Caller]:
    identity = client.server.app[CONTAINER].identity()
    callers = {}
    for role in accounts.ROLES:
        email = f"{role}@example.com"
        profile = await identity.admin.create_user(
            email, PASSWORD, frozenset({role}), RequestContext()
        )
        callers[role] = Caller(role, email, profile.user.id)
    return callers


async def login(client: Any, caller: Caller) -> str:
    response = await client.post(
        f"{API}/auth/login", json={"email": caller.email, "password": PASSWORD}
    )
    assert response.status == 200, await response.text()
    return (await response.json())["access_token"]


def declared_routes(client: Any) -> list[Route]:
    return list(client.server.app[keys.ROUTES].routes)


def concrete_path(route: Route) -> str:
    return re.sub(r"\{[^}]+\}", DUMMY, route.path)


async def call(client: Any, route: Route, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body: dict[str, Any] = {}
    if route.method in {"POST", "PUT", "PATCH"}:
        body["json"] = {}
    return await client.request(
        route.method, concrete_path(route), headers=headers, allow_redirects=False, **body
    )


async def problem_type(response: Any) -> str:
    assert response.content_type == PROBLEM, await response.text()
    body = await response.json()
    assert body["status"] == response.status
    return str(body["type"])


def allowed(route: Route, role: str) -> bool:
    if role == ANONYMOUS:
        return False
    return route.access == AUTHENTICATED or route.access in accounts.PERMISSIONS_BY_ROLE[role]


# =========================================================================== declarations


async def test_every_route_declares_public_authenticated_or_a_known_permission(
    avatarstack_client: Any,
) -> None:
    client = await avatarstack_client()  # the assembled app without test plugins
    valid = {PUBLIC, AUTHENTICATED} | accounts.ALL_PERMISSIONS
    offenders = [
        f"{r.method} {r.path} → {r.access!r}"
        for r in declared_routes(client)
        if r.access not in valid
    ]
    assert offenders == [], "routes with an unknown access rule:\n" + "\n".join(offenders)
    assert client.server.app[keys.ROUTES].undeclared(client.server.app) == []


def test_the_roles_form_a_ladder_and_every_permission_is_granted_to_someone() -> None:
    member, editor, admin = (accounts.PERMISSIONS_BY_ROLE[r] for r in ("member", "editor", "admin"))
    assert member < editor < admin
    assert admin == accounts.ALL_PERMISSIONS
    assert {"kb:write"} <= editor - member
    assert {"users:admin", "audit:read"} <= admin - editor


async def test_the_admin_routes_are_for_admins_only(avatarstack_client: Any) -> None:
    client = await avatarstack_client()
    admin_routes = [r for r in declared_routes(client) if r.path.startswith(f"{API}/admin/")]
    assert admin_routes, "no admin routes found"
    for route in admin_routes:
        assert [role for role in accounts.ROLES if allowed(route, role)] == ["admin"], route.path


# =========================================================================== the matrix


async def test_every_protected_route_answers_every_caller_as_its_declaration_says(
    client: Any,
) -> None:
    callers = await create_callers(client)
    protected = [r for r in declared_routes(client) if r.access != PUBLIC]
    assert len(protected) >= 10
    failures: list[str] = []
    for route in protected:
        for who in CALLERS:
            token = None if who == ANONYMOUS else await login(client, callers[who])
            response = await call(client, route, token)
            label = f"{who:9} {route.method} {route.path} ({route.access}) → {response.status}"
            if response.status >= 500:
                failures.append(f"{label}: a server error")
            elif who == ANONYMOUS:
                if response.status != 401 or not (await problem_type(response)).endswith(
                    "unauthenticated"
                ):
                    failures.append(f"{label}: expected a 401 problem")
            elif not allowed(route, who):
                if response.status != 403 or not (await problem_type(response)).endswith(
                    "forbidden"
                ):
                    failures.append(f"{label}: expected a 403 problem")
            elif response.status in {401, 403}:
                failures.append(f"{label}: refused although the role has {route.access!r}")
    assert failures == [], "\n".join(failures)


async def test_a_bad_or_missing_bearer_token_is_a_401_problem(client: Any) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer not-a-jwt"},
    ):
        response = await client.get(f"{API}/admin/users", headers=headers)
        assert response.status == 401, headers
        assert (await problem_type(response)).endswith("unauthenticated")


async def test_a_permission_no_role_grants_is_denied_even_to_admins(client: Any) -> None:
    callers = await create_callers(client)
    response = await client.get("/test/nobody")
    assert response.status == 401
    for role in accounts.ROLES:
        token = await login(client, callers[role])
        response = await client.get("/test/nobody", headers={"Authorization": f"Bearer {token}"})
        assert response.status == 403, role
        assert (await problem_type(response)).endswith("forbidden")


# =========================================================================== role changes


async def test_new_roles_apply_to_the_next_request_with_the_same_access_token(client: Any) -> None:
    callers = await create_callers(client)
    admin = {"Authorization": f"Bearer {await login(client, callers['admin'])}"}
    member_id = callers["member"].user_id
    member = {"Authorization": f"Bearer {await login(client, callers['member'])}"}

    response = await client.get(f"{API}/admin/users", headers=member)
    assert response.status == 403

    response = await client.put(
        f"{API}/admin/users/{member_id}/roles", json={"roles": ["member", "admin"]}, headers=admin
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["roles"] == ["admin", "member"]

    response = await client.get(f"{API}/admin/users", headers=member)  # same token as before
    assert response.status == 200, await response.text()
    response = await client.get(f"{API}/users/me", headers=member)
    assert (await response.json())["roles"] == ["admin", "member"]

    response = await client.put(
        f"{API}/admin/users/{member_id}/roles", json={"roles": ["member"]}, headers=admin
    )
    assert response.status == 200
    response = await client.get(f"{API}/admin/users", headers=member)  # and taken away again
    assert response.status == 403

    response = await client.get(
        f"{API}/admin/audit", params={"subject_id": member_id}, headers=admin
    )
    assert response.status == 200
    changes = [e for e in (await response.json())["events"] if e["action"] == "roles_changed"]
    # newest first
    assert [(e["data"]["before"], e["data"]["after"]) for e in changes] == [
        (["admin", "member"], ["member"]),
        (["member"], ["admin", "member"]),
    ]
    assert {e["actor_id"] for e in changes} == {callers["admin"].user_id}
    assert {e["subject_id"] for e in changes} == {member_id}


async def test_roles_are_validated_and_the_last_admin_keeps_the_role(client: Any) -> None:
    callers = await create_callers(client)
    admin_id = callers["admin"].user_id
    admin = {"Authorization": f"Bearer {await login(client, callers['admin'])}"}
    response = await client.put(
        f"{API}/admin/users/{callers['member'].user_id}/roles",
        json={"roles": ["superuser"]},
        headers=admin,
    )
    assert response.status == 422
    assert (await problem_type(response)).endswith("validation-error")
    response = await client.put(
        f"{API}/admin/users/{admin_id}/roles", json={"roles": ["member"]}, headers=admin
    )
    assert response.status == 409
    assert (await problem_type(response)).endswith("conflict")
    response = await client.put(
        f"{API}/admin/users/{DUMMY}/roles", json={"roles": ["member"]}, headers=admin
    )
    assert response.status == 404
