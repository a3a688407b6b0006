"""PostgreSQL stopped, and PostgreSQL frozen (SIGSTOP: TCP accepted, nothing answers), under a
real ``avatarstack serve``: every request ends within the configured timeouts with a 503
``storage-unavailable`` problem and ``Retry-After``, and service comes back on its own once the
database answers again; the recovery time is measured and held to a generous ceiling.

The cluster is a throwaway one the test starts (the ``throwaway_postgres`` fixture), never the
shared server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from fault_kit import API, PASSWORD, PROBLEM, bearer

from avatarstack.testkit.postgres import PostgresCluster
from avatarstack.testkit.serve import ServedApp

TIMEOUT = 2.0
#: the longest a request may take during an outage: acquire + command timeouts, plus slack
REQUEST_BOUND = 2 * TIMEOUT + 2.0
#: service must be back this soon after the database answers again (generous on a busy machine)
RECOVERY_CEILING = 20.0
OWNER = "owner@pg-faults.example.com"


@pytest.fixture
def app(throwaway_postgres: PostgresCluster, tmp_path: Path) -> Iterator[ServedApp]:
    served = ServedApp(
        tmp_path,
        settings={
            "AVATARSTACK_DATABASE_URL": throwaway_postgres.url,
            "AVATARSTACK_DATABASE__COMMAND_TIMEOUT": str(TIMEOUT),
            "AVATARSTACK_DATABASE__ACQUIRE_TIMEOUT": str(TIMEOUT),
            "AVATARSTACK_DATABASE__CONNECT_TIMEOUT": str(TIMEOUT),
            # principals are read from the database on every request
            "AVATARSTACK_AUTH__PRINCIPAL_CACHE_SECONDS": "0",
        },
    )
    served.start()
    try:
        served.create_user(OWNER, PASSWORD, "editor")
        yield served
    finally:
        throwaway_postgres.thaw()
        served.stop()


async def outage_answer(http: aiohttp.ClientSession, path: str, token: str) -> float:
    """Asserts the outage answer of ``path``; the seconds it took."""
    began = time.monotonic()
    async with http.get(path, headers=bearer(token)) as response:
        body = await response.text()
        elapsed = time.monotonic() - began
        assert response.status == 503, body
        assert response.content_type == PROBLEM
        assert "storage-unavailable" in body
        assert response.headers.get("Retry-After")
        assert "Error" not in body, "no driver exception class names"
    assert elapsed < REQUEST_BOUND, f"{path} took {elapsed:.1f} s"
    return elapsed


FAULTS = [
    pytest.param("stop", id="stopped"),
    pytest.param("freeze", id="frozen"),
]


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_database_outage_answers_503_within_the_bound_and_recovers(
    fault: str, throwaway_postgres: PostgresCluster, app: ServedApp
) -> None:
    cluster = throwaway_postgres
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(app.url, timeout=timeout) as http:
        login = await http.post(f"{API}/auth/login", json={"email": OWNER, "password": PASSWORD})
        assert login.status == 200, await login.text()
        token = (await login.json())["access_token"]
        assert (await http.get(f"{API}/kb/documents", headers=bearer(token))).status == 200
        # finding 9: a value PostgreSQL refuses (a NUL character) names no driver class
        nul = {"questions": [{"question": "nul\u0000question", "expected_phrase": "x"}]}
        async with http.put(f"{API}/kb/golden-set", json=nul, headers=bearer(token)) as refused:
            body = await refused.text()
            assert 400 <= refused.status < 500, body
            assert refused.content_type == PROBLEM
            assert "Error" not in body, body

        cluster.stop() if fault == "stop" else cluster.freeze()
        paths = [f"{API}/kb/documents", f"{API}/users/me", f"{API}/conversations", f"{API}/info"]
        slowest = max(await asyncio.gather(*(outage_answer(http, p, token) for p in paths)))
        began = time.monotonic()
        async with http.get("/readyz") as ready:
            assert ready.status == 503
        readyz = time.monotonic() - began
        assert readyz < 2.0 + 1.5, f"/readyz took {readyz:.1f} s"

        cluster.start() if fault == "stop" else cluster.thaw()
        back = time.monotonic()
        while True:
            async with http.get(f"{API}/kb/documents", headers=bearer(token)) as response:
                if response.status == 200:
                    break
            recovery = time.monotonic() - back
            assert recovery < RECOVERY_CEILING, f"no recovery {recovery:.1f} s after the {fault}"
            await asyncio.sleep(0.1)
        recovery = time.monotonic() - back
    print(
        f"PostgreSQL {fault}: slowest 503 {slowest:.2f} s, /readyz {readyz:.2f} s, "
        f"recovered {recovery:.2f} s after the database answered again"
    )
    assert "unhandled_error" not in app.output()
