"""What the security tests share: the roles' credentials, a login that picks its own client
address (the server trusts 127.0.0.1 as a proxy, so per-IP limits stay per test), and the
assertion that an answer is a problem document."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp

from avatarstack.core import accounts

API = "/api/v1"
PROBLEM = "application/problem+json"
SECRET_KEY = "s3cr3t-signing-key-for-the-security-suite-" + "x" * 16
ROLES = ("member", "editor", "admin")
#: concurrent refreshes of one token within this many seconds get the same successor (finding 8)
REFRESH_GRACE_SECONDS = 1.0
#: an id that names nothing, for every path parameter
DUMMY = "00000000000000000000000000"

_addresses = itertools.count(1)


def password_of(email: str) -> str:
    return f"correct horse battery staple {email}"


def email_of(role: str) -> str:
    return f"{role}@security.example.com"


def next_ip() -> str:
    """A client address no other login of this session used."""
    n = next(_addresses)
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(http: aiohttp.ClientSession, email: str, password: str | None = None) -> Any:
    """The login response body (access and refresh token) of ``email``."""
    response = await http.post(
        f"{API}/auth/login",
        json={"email": email, "password": password or password_of(email)},
        headers={"X-Forwarded-For": next_ip()},
    )
    body = await response.json()
    assert response.status == 200, body
    return body


async def assert_problem(response: aiohttp.ClientResponse, status: int | set[int]) -> Any:
    """The problem document of ``response``, after checking status and media type."""
    wanted = {status} if isinstance(status, int) else status
    text = await response.text()
    assert response.status in wanted, f"{response.status} (wanted {wanted}): {text[:500]}"
    assert response.content_type == PROBLEM, f"{response.content_type}: {text[:500]}"
    body = await response.json(content_type=None)
    assert body["status"] == response.status
    assert str(body["type"]).startswith("urn:avatarstack:problem:")
    assert "Traceback" not in text
    return body


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """Read until the server closes (10 s at most); its close code."""
    async with asyncio.timeout(10):
        while True:
            message = await ws.receive()
            if message.type in {
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            }:
                return ws.close_code


async def authenticated(
    http: aiohttp.ClientSession, ws_url: str, token: str
) -> aiohttp.ClientWebSocketResponse:
    """A socket past its ``auth`` frame (the ``ready`` frame read)."""
    ws = await http.ws_connect(ws_url, max_msg_size=0)
    await ws.send_json({"type": "auth", "id": "a", "data": {"token": token}})
    ready = await ws.receive_json(timeout=10)
    assert ready["type"] == "ready", ready
    return ws


async def next_frame(ws: aiohttp.ClientWebSocketResponse, *types: str) -> dict[str, Any]:
    """The next frame of one of ``types`` (10 s at most)."""
    async with asyncio.timeout(10):
        while True:
            frame: dict[str, Any] = await ws.receive_json()
            if frame["type"] in types:
                return frame


async def next_error(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    return dict((await next_frame(ws, "error"))["data"])


assert set(ROLES) == set(accounts.ROLES), "a new role needs a column in the route table"
