"""Every route of the OpenAPI document, called as nobody, a member, an editor and an admin.

:data:`EXPECTED` states, for each (method, path template), the status every caller gets when
the path parameters name nothing (:data:`DUMMY`) and a JSON body is ``{}``. A route the server
describes that is missing here fails the suite: decide who may call it and add it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import aiohttp
import pytest
from security_kit import API, DUMMY, PROBLEM, ROLES, assert_problem, bearer, login, password_of

from avatarstack.adapters.http.console import PAGES as CONSOLE_PAGES
from avatarstack.testkit.serve import ServedApp


class Expect(NamedTuple):
    anonymous: int
    member: int
    editor: int
    admin: int


def everyone(status: int) -> Expect:
    return Expect(status, status, status, status)


def signed_in(status: int) -> Expect:
    return Expect(401, status, status, status)


def editors(status: int) -> Expect:
    return Expect(401, 403, status, status)


def admins(status: int) -> Expect:
    return Expect(401, 403, 403, status)


EXPECTED: dict[tuple[str, str], Expect] = {
    # operations
    ("GET", "/healthz"): everyone(200),
    ("GET", "/readyz"): everyone(200),
    ("GET", "/metrics"): everyone(200),
    ("GET", f"{API}/openapi.json"): everyone(200),
    ("GET", f"{API}/info"): everyone(200),
    # the WebSocket authenticates in-band (see test_websocket.py); a plain GET is refused
    ("GET", f"{API}/ws"): everyone(400),
    # identity: public routes validate their body first
    ("POST", f"{API}/auth/register"): everyone(422),
    ("POST", f"{API}/auth/login"): everyone(422),
    ("POST", f"{API}/auth/refresh"): everyone(422),
    ("POST", f"{API}/auth/verify"): everyone(422),
    ("GET", f"{API}/auth/verify"): everyone(303),
    ("POST", f"{API}/auth/verify/resend"): everyone(422),
    ("POST", f"{API}/auth/password/forgot"): everyone(422),
    ("POST", f"{API}/auth/password/reset"): everyone(422),
    ("GET", f"{API}/auth/providers"): everyone(200),
    ("POST", f"{API}/auth/oauth/exchange"): everyone(422),
    # no provider is configured here: an unknown provider is a 404 (the callback redirects to
    # the console with the error)
    ("GET", f"{API}/auth/oauth/{{provider}}/authorize"): everyone(404),
    ("GET", f"{API}/auth/oauth/{{provider}}/callback"): everyone(302),
    ("POST", f"{API}/auth/oauth/{{provider}}/link"): signed_in(404),
    ("POST", f"{API}/auth/logout"): signed_in(204),
    # the caller's own account
    ("GET", f"{API}/users/me"): signed_in(200),
    ("PATCH", f"{API}/users/me"): signed_in(200),
    ("GET", f"{API}/users/me/sessions"): signed_in(200),
    ("DELETE", f"{API}/users/me/sessions"): signed_in(204),
    ("DELETE", f"{API}/users/me/sessions/{{session_id}}"): signed_in(404),
    ("DELETE", f"{API}/users/me/identities/{{identity_id}}"): signed_in(404),
    # administration
    ("GET", f"{API}/admin/users"): admins(200),
    ("PUT", f"{API}/admin/users/{{user_id}}/roles"): admins(422),
    ("GET", f"{API}/admin/audit"): admins(200),
    # avatars
    ("GET", f"{API}/avatar/avatars"): signed_in(200),
    ("GET", f"{API}/avatar/sessions"): signed_in(200),
    ("POST", f"{API}/avatar/sessions"): signed_in(201),
    ("DELETE", f"{API}/avatar/sessions/{{session_id}}"): signed_in(404),
    ("POST", f"{API}/avatar/sessions/{{session_id}}/interrupt"): signed_in(404),
    ("POST", f"{API}/avatar/sessions/{{session_id}}/speak"): signed_in(422),
    # conversations
    ("GET", f"{API}/conversations"): signed_in(200),
    ("GET", f"{API}/conversations/{{conversation_id}}/events"): signed_in(404),
    # knowledge base: members read, editors write (uploads are multipart: JSON is a 415)
    ("GET", f"{API}/kb/documents"): signed_in(200),
    ("POST", f"{API}/kb/documents"): editors(415),
    ("GET", f"{API}/kb/documents/{{document_id}}"): signed_in(404),
    ("PUT", f"{API}/kb/documents/{{document_id}}"): editors(415),
    ("DELETE", f"{API}/kb/documents/{{document_id}}"): editors(404),
    ("GET", f"{API}/kb/documents/{{document_id}}/versions"): signed_in(404),
    ("POST", f"{API}/kb/documents/{{document_id}}/versions/{{version}}/restore"): editors(404),
    ("POST", f"{API}/kb/search"): signed_in(422),
    ("GET", f"{API}/kb/generations"): signed_in(200),
    ("POST", f"{API}/kb/generations"): editors(409),
    ("GET", f"{API}/kb/generations/{{generation_id}}"): signed_in(404),
    ("POST", f"{API}/kb/generations/{{generation_id}}/activate"): editors(404),
    ("POST", f"{API}/kb/generations/{{generation_id}}/evaluate"): editors(404),
    ("GET", f"{API}/kb/golden-set"): editors(200),
    ("PUT", f"{API}/kb/golden-set"): editors(422),
    ("GET", f"{API}/kb/jobs"): editors(200),
    ("GET", f"{API}/kb/jobs/{{job_id}}"): editors(404),
    ("GET", f"{API}/avatar/voices"): signed_in(200),
    # the browser's refresh cookie: without this site's Origin every caller is refused (CSRF)
    ("POST", f"{API}/auth/cookie/refresh"): everyone(403),
    ("POST", f"{API}/auth/cookie/logout"): everyone(403),
    # the web console: its pages are the same public shell (the API decides what each role
    # sees), its assets are public files, and its configuration is public
    ("GET", f"{API}/console/config"): everyone(200),
    ("GET", "/console/{tail}"): everyone(404),
    **{("GET", page): everyone(200) for page in CONSOLE_PAGES},
}

#: routes that end the caller's login session(s): the caller logs in again after them
ENDS_SESSION = {("POST", f"{API}/auth/logout"), ("DELETE", f"{API}/users/me/sessions")}
#: values for path parameters that are not ids
PATH_VALUES = {"provider": "google", "version": "1"}


def concrete(path: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: PATH_VALUES.get(m.group(1), DUMMY), path)


def described_routes(server: ServedApp) -> list[tuple[str, str]]:
    paths = server.openapi()["paths"]
    assert isinstance(paths, dict)
    return sorted(
        (method.upper(), path)
        for path, operations in paths.items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    )


def test_every_route_the_server_describes_is_in_the_table(server: ServedApp) -> None:
    described = described_routes(server)
    missing = [f"{method} {path}" for method, path in described if (method, path) not in EXPECTED]
    assert missing == [], (
        "routes in GET /api/v1/openapi.json that the route-by-role table does not list; add "
        "each to EXPECTED in tests/security/test_route_walk.py with the status every caller "
        "gets:\n" + "\n".join(missing)
    )
    gone = sorted(set(EXPECTED) - set(described))
    assert gone == [], f"the table lists routes the server no longer has: {gone}"


async def test_every_route_answers_every_caller_as_the_table_says(
    server: ServedApp, http: aiohttp.ClientSession
) -> None:
    # users of its own: the walk ends its callers' login sessions (logout, "sign out everywhere")
    walkers = {role: f"walker-{role}@security.example.com" for role in ROLES}
    for role, email in walkers.items():
        server.create_user(email, password_of(email), role)
    tokens = {role: (await login(http, email))["access_token"] for role, email in walkers.items()}
    failures: list[str] = []
    for method, path in described_routes(server):
        expected = EXPECTED.get((method, path))
        if expected is None:
            continue  # reported by the test above
        for caller, status in zip(("anonymous", *ROLES), expected, strict=True):
            headers: dict[str, str] = {}
            if caller != "anonymous":
                headers = bearer(tokens[caller])
            body = {"json": {}} if method in {"POST", "PUT", "PATCH"} else {}
            response = await http.request(
                method, concrete(path), headers=headers, allow_redirects=False, **body
            )
            label = f"{caller:9} {method} {path} → {response.status}"
            if response.status != status:
                failures.append(f"{label}, expected {status}: {(await response.text())[:200]}")
            elif status >= 400:
                try:
                    await assert_problem(response, status)
                except AssertionError as exc:
                    failures.append(f"{label}: not a problem document ({exc})")
            if response.status >= 500:
                failures.append(f"{label}: a server error")
            if (method, path) in ENDS_SESSION and caller != "anonymous":
                tokens[caller] = (await login(http, walkers[caller]))["access_token"]
            if response.status == 201 and path.endswith("/avatar/sessions"):  # free the capacity
                session_id = (await response.json())["session_id"]
                await http.delete(f"{API}/avatar/sessions/{session_id}", headers=headers)
    assert failures == [], "\n".join(failures)


@pytest.mark.parametrize("caller", ["anonymous", *ROLES])
async def test_an_unknown_path_and_a_wrong_method_are_problems(
    caller: str, http: aiohttp.ClientSession, tokens: dict[str, str]
) -> None:
    headers = {} if caller == "anonymous" else bearer(tokens[caller])
    await assert_problem(await http.get(f"{API}/nothing-here", headers=headers), 404)
    response = await http.request("PATCH", f"{API}/kb/generations", headers=headers)
    await assert_problem(response, 405)
    assert "GET" in response.headers["Allow"]
    assert response.content_type == PROBLEM
