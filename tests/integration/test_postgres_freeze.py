"""A frozen PostgreSQL (it accepts TCP but never answers: SIGSTOP on the postmaster and its
children) against a real ``avatarstack serve``: requests end within the configured timeouts with
a 503 ``storage-unavailable`` and ``Retry-After``, ``/readyz`` within its 2 s bound, and service
comes back within seconds of the database answering again.

The cluster is a throwaway one the test starts itself, never the shared server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from avatarstack.testkit.postgres import PostgresCluster
from avatarstack.testkit.serve import ServedApp

COMMAND_TIMEOUT = 2.0
ACQUIRE_TIMEOUT = 2.0
#: a request may wait for a connection, then for one query: both timeouts, plus scheduling
REQUEST_BOUND = COMMAND_TIMEOUT + ACQUIRE_TIMEOUT + 1.5
#: /readyz: 2 s per check (docs/operators.md), plus scheduling
READYZ_BOUND = 2.0 + 1.0
RECOVERY_CEILING = 10.0


@pytest.fixture
def server(throwaway_postgres: PostgresCluster, tmp_path: Path) -> Iterator[ServedApp]:
    app = ServedApp(
        tmp_path,
        settings={
            "AVATARSTACK_DATABASE_URL": throwaway_postgres.url,
            "AVATARSTACK_DATABASE__COMMAND_TIMEOUT": str(COMMAND_TIMEOUT),
            "AVATARSTACK_DATABASE__ACQUIRE_TIMEOUT": str(ACQUIRE_TIMEOUT),
            "AVATARSTACK_DATABASE__CONNECT_TIMEOUT": "2",
            "AVATARSTACK_DATABASE__POOL_MAX_SIZE": "4",
        },
    )
    app.start()
    app.create_user("owner@freeze.test", "correct horse battery staple", "admin")
    try:
        yield app
    finally:
        throwaway_postgres.thaw()
        app.stop(timeout=10)


async def timed(
    http: aiohttp.ClientSession, method: str, path: str, **options: object
) -> tuple[float, int, str, dict[str, str]]:
    began = time.monotonic()
    async with http.request(method, path, **options) as response:  # type: ignore[arg-type]
        body = await response.text()
        return time.monotonic() - began, response.status, body, dict(response.headers)


async def test_a_frozen_database_gives_bounded_503s_and_service_resumes_after_it_thaws(
    throwaway_postgres: PostgresCluster, server: ServedApp
) -> None:
    login = {"email": "owner@freeze.test", "password": "correct horse battery staple"}
    async with aiohttp.ClientSession(server.url, timeout=aiohttp.ClientTimeout(total=60)) as http:
        assert (await timed(http, "GET", "/readyz"))[1] == 200
        assert (await timed(http, "POST", "/api/v1/auth/login", json=login))[1] == 200

        throwaway_postgres.freeze()
        answers = await asyncio.gather(
            timed(http, "GET", "/api/v1/info"),
            timed(http, "POST", "/api/v1/auth/login", json=login),
            timed(http, "POST", "/api/v1/auth/login", json=login),
            timed(http, "GET", "/api/v1/info"),
        )
        for elapsed, status, body, headers in answers:
            assert status == 503, body
            assert "storage-unavailable" in body
            assert headers.get("Retry-After")
            assert elapsed < REQUEST_BOUND, f"{elapsed:.1f} s"
            assert "Error" not in body, body  # no driver exception class names

        elapsed, status, body, _ = await timed(http, "GET", "/readyz")
        assert status == 503, body
        assert elapsed < READYZ_BOUND, f"/readyz took {elapsed:.1f} s: {body}"

        # a second wave, with the pool's connections already given up, is bounded too
        elapsed, status, body, _ = await timed(http, "POST", "/api/v1/auth/login", json=login)
        assert (status, elapsed < REQUEST_BOUND) == (503, True), (elapsed, body)

        throwaway_postgres.thaw()
        thawed = time.monotonic()
        while True:
            _, ready, _, _ = await timed(http, "GET", "/readyz")
            _, logged_in, _, _ = await timed(http, "POST", "/api/v1/auth/login", json=login)
            if (ready, logged_in) == (200, 200):
                break
            assert time.monotonic() - thawed < RECOVERY_CEILING, "no recovery after the thaw"
            await asyncio.sleep(0.2)
    assert "unhandled_error" not in server.output()
