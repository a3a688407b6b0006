"""The security suite runs against one real ``avatarstack serve`` process for the session
(SQLite in a temporary data directory), with a user of every role created through the CLI.

Settings that make the attacks quick to run: a known signing secret (so the tests can forge
tokens that differ from a real one in exactly one way), 127.0.0.1 trusted as a proxy (so each
test logs in from its own X-Forwarded-For address), a 1 s WebSocket auth timeout and a short
parse timeout for hostile uploads.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pytest
from security_kit import REFRESH_GRACE_SECONDS, ROLES, SECRET_KEY, email_of, next_ip, password_of

from avatarstack.testkit.serve import ServedApp

SETTINGS = {
    "AVATARSTACK_SECRET_KEY": SECRET_KEY,
    "AVATARSTACK_HTTP__TRUSTED_PROXIES": '["127.0.0.1"]',
    "AVATARSTACK_REALTIME__AUTH_TIMEOUT_SECONDS": "1",
    "AVATARSTACK_AUTH__REFRESH_REUSE_GRACE_SECONDS": str(REFRESH_GRACE_SECONDS),
    "AVATARSTACK_KB__PARSE_TIMEOUT_SECONDS": "10",
    "AVATARSTACK_KB__PARSE_MEMORY_MB": "256",
    "AVATARSTACK_LOG_LEVEL": "info",
}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    app = ServedApp(Path(tmp_path_factory.mktemp("security")), settings=SETTINGS)
    app.start()
    try:
        # one CLI process per user, side by side (each takes a few seconds to start)
        with ThreadPoolExecutor(len(ROLES)) as pool:
            created = [
                pool.submit(app.create_user, email_of(role), password_of(email_of(role)), role)
                for role in ROLES
            ]
            for future in created:
                future.result()
        yield app
    finally:
        app.stop()


@pytest.fixture
async def http(server: ServedApp) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(server.url) as session:
        yield session


@pytest.fixture(scope="session")
def tokens(server: ServedApp) -> dict[str, str]:
    """An access token of every role, logged in once per session (a test that ends a login
    session logs in on its own, or uses its own user)."""
    return {role: login_sync(server, email_of(role))["access_token"] for role in ROLES}


def login_sync(server: ServedApp, email: str) -> dict[str, str]:
    request = urllib.request.Request(
        f"{server.url}/api/v1/auth/login",
        data=json.dumps({"email": email, "password": password_of(email)}).encode(),
        headers={"Content-Type": "application/json", "X-Forwarded-For": next_ip()},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body: dict[str, str] = json.loads(response.read())
    return body
