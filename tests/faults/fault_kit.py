"""What the fault tests share: an operator's view of a served app (log in, upload, wait for a
job, search), and a clock for recovery times."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

API = "/api/v1"
PROBLEM = "application/problem+json"
PASSWORD = "correct horse battery staple"
EDITOR = "editor@faults.example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def words_document(seed: int, paragraphs: int, marker: str = "") -> bytes:
    """A plain-text document of ``paragraphs`` paragraphs (about 1 KB each); ``marker`` is a
    word that appears in it and in no other document."""
    rng = random.Random(seed)
    vocabulary = ["alpha", "beta", "gamma", "delta", "kappa", "omega", "sigma", "theta"]
    body = [" ".join(rng.choice(vocabulary) for _ in range(150)) + "." for _ in range(paragraphs)]
    if marker:
        body[len(body) // 2] += f" {marker} {marker}."
    return "\n\n".join(body).encode()


async def login(http: aiohttp.ClientSession, email: str = EDITOR) -> str:
    response = await http.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    body = await response.json()
    assert response.status == 200, body
    return str(body["access_token"])


async def upload(http: aiohttp.ClientSession, token: str, name: str, data: bytes) -> Any:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name, content_type="text/plain")
    response = await http.post(f"{API}/kb/documents", data=form, headers=bearer(token))
    assert response.status == 202, await response.text()
    return await response.json()


async def job(http: aiohttp.ClientSession, token: str, job_id: str) -> dict[str, Any]:
    response = await http.get(f"{API}/kb/jobs/{job_id}", headers=bearer(token))
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def wait_for(
    check: Callable[[], Awaitable[bool]], *, within: float, what: str, every: float = 0.1
) -> float:
    """Poll ``check`` until it holds; the seconds it took (AssertionError after ``within``)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            if await check():
                return time.monotonic() - started
        except (TimeoutError, aiohttp.ClientError):
            pass
        await asyncio.sleep(every)
    raise AssertionError(f"{what}: not within {within} s")


async def job_reaches(
    http: aiohttp.ClientSession, token: str, job_id: str, *, progress: float = 0.0
) -> dict[str, Any]:
    """Wait until the job runs with at least ``progress`` (or has ended)."""
    seen: dict[str, Any] = {}

    async def check() -> bool:
        seen.update(await job(http, token, job_id))
        return bool(
            seen["status"] in {"succeeded", "failed"}
            or (seen["status"] == "running" and seen["progress"] >= progress)
        )

    await wait_for(check, within=60, what=f"job {job_id} running", every=0.05)
    return seen


async def job_finishes(http: aiohttp.ClientSession, token: str, job_id: str, within: float) -> Any:
    seen: dict[str, Any] = {}

    async def check() -> bool:
        seen.update(await job(http, token, job_id))
        return seen["status"] in {"succeeded", "failed"}

    await wait_for(check, within=within, what=f"job {job_id} finished", every=0.2)
    return seen
