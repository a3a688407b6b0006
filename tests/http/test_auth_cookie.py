"""Cookie mode of the auth API (the browser console): the refresh token lives in an HttpOnly,
SameSite=Strict cookie limited to the cookie routes, every cookie request must come from this
site's Origin, and token responses are never cached."""

from __future__ import annotations

from typing import Any

import pytest
from identity_helpers import API

from avatarstack.adapters.http.cookies import COOKIE_PATH, REFRESH_COOKIE
from avatarstack.bootstrap.app import CONTAINER
from avatarstack.core.identity import RequestContext

EMAIL = "cookie@example.org"
PASSWORD = "correct horse battery"


def origin_of(client: Any) -> dict[str, str]:
    return {"Origin": f"http://{client.host}:{client.port}"}


async def make_user(client: Any) -> None:
    identity = client.server.app[CONTAINER].identity()
    await identity.admin.create_user(EMAIL, PASSWORD, frozenset({"member"}), RequestContext())


async def cookie_login(client: Any) -> Any:
    response = await client.post(
        f"{API}/auth/login",
        json={"email": EMAIL, "password": PASSWORD, "refresh_cookie": True},
        headers=origin_of(client),
    )
    assert response.status == 200, await response.text()
    return response


def set_cookie_header(response: Any) -> str:
    headers = [h for h in response.headers.getall("Set-Cookie", []) if REFRESH_COOKIE in h]
    assert len(headers) == 1, response.headers
    return headers[0]


def put_cookie(client: Any, value: str | None) -> None:
    """The browser's jar holds ``value`` as the refresh cookie (as the server set it)."""
    client.session.cookie_jar.clear()
    url = client.make_url(f"{COOKIE_PATH}/refresh")
    client.session.cookie_jar.update_cookies({REFRESH_COOKIE: value}, response_url=url)


def jar_value(client: Any) -> str | None:
    for cookie in client.session.cookie_jar:
        if cookie.key == REFRESH_COOKIE:
            return str(cookie.value)
    return None


async def test_a_cookie_login_puts_the_refresh_token_in_a_strict_httponly_cookie(
    client: Any,
) -> None:
    await make_user(client)
    response = await cookie_login(client)
    body = await response.json()
    assert body["refresh_token"] is None
    assert body["access_token"]
    header = set_cookie_header(response)
    assert "HttpOnly" in header
    assert "SameSite=Strict" in header
    assert f"Path={COOKIE_PATH}" in header
    assert "Max-Age=2592000" in header
    assert "Secure" not in header
    assert response.headers["Cache-Control"] == "no-store"


async def test_behind_an_https_public_url_its_origin_logs_in_and_the_cookie_is_secure(
    avatarstack_client: Any,
) -> None:
    client = await avatarstack_client(public_url="https://avatars.example.org")
    await make_user(client)
    response = await client.post(
        f"{API}/auth/login",
        json={"email": EMAIL, "password": PASSWORD, "refresh_cookie": True},
        headers={"Origin": "https://avatars.example.org"},
    )
    assert response.status == 200, await response.text()
    assert "Secure" in set_cookie_header(response)


async def test_json_mode_is_unchanged_and_never_cached(client: Any) -> None:
    await make_user(client)
    response = await client.post(f"{API}/auth/login", json={"email": EMAIL, "password": PASSWORD})
    body = await response.json()
    assert body["refresh_token"]
    # no refresh cookie (the device cookie that proves an earlier sign-in is another matter)
    assert not [h for h in response.headers.getall("Set-Cookie", []) if REFRESH_COOKIE in h]
    assert response.headers["Cache-Control"] == "no-store"
    again = await client.post(f"{API}/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert again.status == 200
    assert again.headers["Cache-Control"] == "no-store"


async def test_the_cookie_refresh_rotates_the_cookie_and_answers_a_new_access_token(
    client: Any,
) -> None:
    await make_user(client)
    await cookie_login(client)
    first = jar_value(client)
    response = await client.post(f"{API}/auth/cookie/refresh", headers=origin_of(client))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["refresh_token"] is None
    assert body["user"]["email"] == EMAIL
    assert response.headers["Cache-Control"] == "no-store"
    assert jar_value(client) not in (None, first)
    me = await client.get(
        f"{API}/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status == 200


@pytest.mark.parametrize(
    "origin", [None, "http://evil.example", "null", "http://127.0.0.1.evil.example"]
)
async def test_cookie_routes_refuse_a_missing_or_foreign_origin(
    client: Any, origin: str | None
) -> None:
    await make_user(client)
    await cookie_login(client)
    headers = {"Origin": origin} if origin else {}
    for path in ("/auth/cookie/refresh", "/auth/cookie/logout"):
        response = await client.post(f"{API}{path}", headers=headers)
        assert response.status == 403, path
        assert response.headers["Content-Type"].startswith("application/problem+json")
    login = await client.post(
        f"{API}/auth/login",
        json={"email": EMAIL, "password": PASSWORD, "refresh_cookie": True},
        headers=headers,
    )
    assert login.status == 403
    assert not [h for h in login.headers.getall("Set-Cookie", []) if REFRESH_COOKIE in h]
    # the session was not touched by the refused requests
    assert (await client.post(f"{API}/auth/cookie/refresh", headers=origin_of(client))).ok


async def test_a_missing_cookie_is_a_401_problem(client: Any) -> None:
    response = await client.post(f"{API}/auth/cookie/refresh", headers=origin_of(client))
    assert response.status == 401
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert "Max-Age=0" in set_cookie_header(response)


async def test_a_reused_cookie_is_a_401_that_clears_the_cookie_and_ends_the_session(
    avatarstack_client: Any,
) -> None:
    # no grace window: a reuse at once is a theft (tabs refreshing together within the window
    # get the same successor: tests/http/test_concurrent_refresh.py)
    client = await avatarstack_client(auth={"refresh_reuse_grace_seconds": 0})
    await make_user(client)
    await cookie_login(client)
    stolen = jar_value(client)
    assert (await client.post(f"{API}/auth/cookie/refresh", headers=origin_of(client))).ok
    rotated = jar_value(client)
    put_cookie(client, stolen)
    reused = await client.post(f"{API}/auth/cookie/refresh", headers=origin_of(client))
    assert reused.status == 401
    assert "Max-Age=0" in set_cookie_header(reused)
    assert not jar_value(client)
    # the rotated token of the same family stopped working too: the whole family ended
    put_cookie(client, rotated)
    after = await client.post(f"{API}/auth/cookie/refresh", headers=origin_of(client))
    assert after.status == 401


async def test_cookie_logout_revokes_the_session_and_clears_the_cookie(client: Any) -> None:
    await make_user(client)
    login = await (await cookie_login(client)).json()
    held = jar_value(client)
    response = await client.post(f"{API}/auth/cookie/logout", headers=origin_of(client))
    assert response.status == 204
    assert "Max-Age=0" in set_cookie_header(response)
    me = await client.get(
        f"{API}/users/me", headers={"Authorization": f"Bearer {login['access_token']}"}
    )
    assert me.status == 401
    put_cookie(client, held)
    again = await client.post(f"{API}/auth/cookie/refresh", headers=origin_of(client))
    assert again.status == 401


async def test_an_oauth_exchange_can_use_cookie_mode(client: Any) -> None:
    identity = client.server.app[CONTAINER].identity()
    assert hasattr(identity.oauth, "exchange_login_code")
    response = await client.post(
        f"{API}/auth/oauth/exchange",
        json={"code": "not-a-code", "refresh_cookie": True},
        headers={"Origin": "http://evil.example"},
    )
    assert response.status == 403
    response = await client.post(
        f"{API}/auth/oauth/exchange",
        json={"code": "not-a-code", "refresh_cookie": True},
        headers=origin_of(client),
    )
    assert response.status == 400


async def test_the_openapi_document_lists_the_cookie_routes(client: Any) -> None:
    document = await (await client.get(f"{API}/openapi.json")).json()
    assert "post" in document["paths"][f"{API}/auth/cookie/refresh"]
    assert "post" in document["paths"][f"{API}/auth/cookie/logout"]
    assert f"{API}/console/config" in document["paths"]
