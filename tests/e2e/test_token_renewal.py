"""The access token lives in the page's memory and expires quickly; the refresh token lives in an
HttpOnly cookie. When the access token has expired the console renews it through the cookie
without the person noticing."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from harness import Server, Servers
from playwright.sync_api import Page, Response, expect
from ui import sign_in

#: seconds an access token lives here (the server verifies with a few seconds of leeway)
TTL = 1
LEEWAY = 5


@pytest.fixture(scope="module")
def server(servers: Servers) -> Iterator[Server]:
    server = servers.new("tokens", AVATARSTACK_AUTH__ACCESS_TOKEN_TTL=str(TTL))
    server.start()
    yield server
    server.stop()


def test_an_expired_access_token_is_renewed_silently_through_the_cookie(
    page: Page, server: Server
) -> None:
    email = server.member("tom")
    sign_in(page, email)

    (cookie,) = [c for c in page.context.cookies() if c["name"] == "avatarstack_refresh"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/api/v1/auth/cookie"
    stored = page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}])")
    assert "eyJ" not in stored, "a token was written to web storage"

    responses: list[Response] = []
    page.on("response", lambda response: responses.append(response))
    time.sleep(TTL + LEEWAY + 1)  # the access token in the page's memory has expired

    page.get_by_role("link", name="Profile").click()
    expect(page).to_have_url(re.compile(r"/profile$"))
    # the list of signed-in devices comes from an API call made with the expired token
    sessions = page.get_by_role("list", name="Sessions")
    expect(sessions).to_contain_text("(this device)")
    expect(page).to_have_url(re.compile(r"/profile$"))  # never sent to /login

    api = [
        (r.request.method, r.url.split("/api/v1", 1)[1], r.status)
        for r in responses
        if "/api/v1/" in r.url
    ]
    assert api[-3:] == [
        ("GET", "/users/me/sessions", 401),
        ("POST", "/auth/cookie/refresh", 200),
        ("GET", "/users/me/sessions", 200),
    ], api
