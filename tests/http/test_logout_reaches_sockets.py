"""A logout (or any revocation) reaches the session's open WebSockets at once, on every
instance, through the broadcaster: they close with 4403 within seconds, not at the next
periodic re-check (30 s)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from identity_helpers import fast_hasher, login_as
from ws_helpers import Tab

SECRET = "s" * 48
PUBLIC_URL = "http://avatarstack.test"


async def socket_for(client: Any, token: str) -> Tab:
    tab = Tab(await client.ws_connect("/api/v1/ws"))
    await tab.send("auth", {"token": token})
    assert (await tab.next())["type"] == "ready"
    return tab


async def test_a_logout_closes_the_sessions_socket_at_once(avatarstack_client: Any) -> None:
    client = await avatarstack_client(providers_={"password_hasher": fast_hasher()})
    headers = await login_as(client, "one@sockets.test")
    tab = await socket_for(client, headers["Authorization"].split(" ", 1)[1])
    assert (await client.post("/api/v1/auth/logout", json={}, headers=headers)).status == 204
    assert await tab.closed(timeout=3) == 4403


async def test_revoking_other_sessions_closes_their_sockets_but_not_this_ones(
    avatarstack_client: Any,
) -> None:
    client = await avatarstack_client(providers_={"password_hasher": fast_hasher()})
    here = await login_as(client, "two@sockets.test")
    login = await client.post(
        "/api/v1/auth/login",
        json={"email": "two@sockets.test", "password": "correct horse battery"},
    )
    there_token = (await login.json())["access_token"]
    mine = await socket_for(client, here["Authorization"].split(" ", 1)[1])
    theirs = await socket_for(client, there_token)
    assert (await client.delete("/api/v1/users/me/sessions", headers=here)).status == 204
    assert await theirs.closed(timeout=3) == 4403
    await mine.send("ping", {}, id="still-here")
    assert (await mine.until("pong", within=3))["type"] == "pong"


@pytest.mark.postgres
async def test_a_logout_on_one_instance_closes_the_socket_on_another(
    avatarstack_client: Any, postgres_database: Any
) -> None:
    await postgres_database.truncate()
    shared = {
        "database_url": postgres_database.url,
        "secret_key": SECRET,
        "public_url": PUBLIC_URL,
        "providers_": {"password_hasher": fast_hasher()},
    }
    one = await avatarstack_client(**shared)
    two = await avatarstack_client(**shared)
    headers = await login_as(one, "three@sockets.test")
    tab = await socket_for(two, headers["Authorization"].split(" ", 1)[1])
    await asyncio.sleep(0.2)  # the LISTEN connection of instance two is up
    assert (await one.post("/api/v1/auth/logout", json={}, headers=headers)).status == 204
    assert await tab.closed(timeout=3) == 4403
