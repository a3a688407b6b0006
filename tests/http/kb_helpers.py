"""Helpers for the knowledge-base HTTP tests: users with roles, multipart uploads, job polling."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import identity_helpers

from avatarstack.testkit.pdf import text_pdf

KB = "/api/v1/kb"


fast_hasher = identity_helpers.fast_hasher
login = identity_helpers.login_as


def form(
    data: bytes,
    filename: str = "guide.pdf",
    content_type: str = "application/pdf",
    title: str | None = None,
) -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("file", data, filename=filename, content_type=content_type)
    if title is not None:
        body.add_field("title", title)
    return body


async def upload(client: Any, auth: dict[str, str], data: bytes, **kw: Any) -> Any:
    return await client.post(f"{KB}/documents", data=form(data, **kw), headers=auth)


async def wait_job(client: Any, auth: dict[str, str], job_id: str, timeout: float = 60) -> dict:  # noqa: ASYNC109
    """Poll the job until it ends; its progress never goes down on the way."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = 0.0
    while True:
        response = await client.get(f"{KB}/jobs/{job_id}", headers=auth)
        assert response.status == 200, await response.text()
        job = await response.json()
        assert job["progress"] >= last - 1e-9
        last = job["progress"]
        if job["status"] in {"succeeded", "failed"}:
            return dict(job)
        assert loop.time() < deadline, f"job {job_id} still {job['status']}"
        await asyncio.sleep(0.05)


async def ingest(client: Any, auth: dict[str, str], data: bytes, **kw: Any) -> dict:
    response = await upload(client, auth, data, **kw)
    assert response.status == 202, await response.text()
    body = await response.json()
    job = await wait_job(client, auth, body["job_id"])
    assert job["status"] == "succeeded", job
    return dict(body)


async def build(client: Any, auth: dict[str, str], activate: str = "yes") -> dict:
    response = await client.post(f"{KB}/generations", json={"activate": activate}, headers=auth)
    assert response.status == 202, await response.text()
    body = await response.json()
    job = await wait_job(client, auth, body["job_id"])
    assert job["status"] == "succeeded", job
    return dict(body)


async def search(client: Any, auth: dict[str, str], query: str, k: int = 5) -> dict:
    response = await client.post(f"{KB}/search", json={"query": query, "k": k}, headers=auth)
    assert response.status == 200, await response.text()
    return dict(await response.json())


MANUAL_V1 = text_pdf(
    "The espresso machine needs descaling every three months.",
    "Warranty claims are handled by the Oslo service centre.",
    "Grind size for espresso is fine, like table salt.",
)
MANUAL_V2 = text_pdf(
    "The espresso machine needs descaling every six weeks with citric acid.",
    "Warranty claims are handled by the Bergen service centre.",
    "Grind size for espresso is fine, like table salt.",
)
