"""``kill -9`` of the server in the middle of an ingestion and of an index build, then a
restart on the same data: the job resumes once its lease runs out, and nothing half-done is ever
visible (the documents list shows whole versions; search answers from the previous generation
until the new one is complete)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fault_kit import (
    API,
    EDITOR,
    PASSWORD,
    bearer,
    job,
    job_finishes,
    job_reaches,
    login,
    upload,
    words_document,
)

from avatarstack.testkit.serve import ServedApp

LEASE_SECONDS = 5.0
#: a resumed job must finish within this after the restart (lease + the work itself, generous)
RESUME_CEILING_SECONDS = 60.0


@pytest.fixture
def app(tmp_path: Path) -> Iterator[ServedApp]:
    served = ServedApp(
        tmp_path,
        settings={"AVATARSTACK_KB__JOB_LEASE_SECONDS": str(LEASE_SECONDS)},
    )
    served.start()
    try:
        served.create_user(EDITOR, PASSWORD, "editor")
        yield served
    finally:
        served.stop()


@pytest.fixture
async def http(app: ServedApp) -> AsyncIterator[aiohttp.ClientSession]:
    # a new connection per request: a killed server leaves dead keep-alive connections behind
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(app.url, connector=connector) as session:
        yield session


async def versions(http: aiohttp.ClientSession, token: str, document_id: str) -> list[Any]:
    response = await http.get(f"{API}/kb/documents/{document_id}/versions", headers=bearer(token))
    assert response.status == 200, await response.text()
    return list((await response.json())["versions"])


async def search(http: aiohttp.ClientSession, token: str, query: str) -> Any:
    response = await http.post(
        f"{API}/kb/search", json={"query": query, "k": 5}, headers=bearer(token)
    )
    assert response.status == 200, await response.text()
    return await response.json()


async def build(http: aiohttp.ClientSession, token: str) -> Any:
    response = await http.post(
        f"{API}/kb/generations", json={"activate": "yes"}, headers=bearer(token)
    )
    assert response.status == 202, await response.text()
    return await response.json()


async def test_a_kill_during_ingestion_resumes_after_the_lease_and_shows_no_half_version(
    app: ServedApp, http: aiohttp.ClientSession
) -> None:
    token = await login(http)
    created = await upload(http, token, "big.txt", words_document(1, 2500, "okapi"))
    seen = await job_reaches(http, token, created["job_id"], progress=0.5)
    assert seen["status"] == "running", f"the ingestion ended before the kill: {seen}"
    app.kill()
    killed_at = time.monotonic()
    app.restart()
    token = await login(http)
    for version in await versions(http, token, created["document_id"]):
        # the interrupted version is not ready, or it is whole
        assert version["status"] != "ready" or version["chunks"] > 0, version
    done = await job_finishes(http, token, created["job_id"], RESUME_CEILING_SECONDS)
    resumed_after = time.monotonic() - killed_at
    assert done["status"] == "succeeded", done
    assert done["attempts"] >= 2, "the job ran again after the kill"
    assert resumed_after >= LEASE_SECONDS - 1, "resumed before the lease ran out"
    [version] = await versions(http, token, created["document_id"])
    assert version["status"] == "ready"
    assert version["chunks"] == done["result"]["chunks"] > 0
    # the chunks are stored once: a build indexes exactly the version's chunks
    generation = await build(http, token)
    built = await job_finishes(http, token, generation["job_id"], 60)
    assert built["status"] == "succeeded", built
    detail = await (
        await http.get(f"{API}/kb/generations/{generation['generation_id']}", headers=bearer(token))
    ).json()
    assert detail["chunk_count"] == version["chunks"]
    hits = await search(http, token, "okapi")
    assert hits["results"][0]["document_id"] == created["document_id"]
    print(f"ingestion resumed and finished {resumed_after:.1f} s after the kill")


async def test_a_kill_during_a_build_never_serves_the_half_built_generation(
    app: ServedApp, http: aiohttp.ClientSession
) -> None:
    token = await login(http)
    first = await upload(http, token, "first.txt", words_document(2, 20, "aardvark"))
    assert (await job_finishes(http, token, first["job_id"], 60))["status"] == "succeeded"
    old = await build(http, token)
    assert (await job_finishes(http, token, old["job_id"], 60))["status"] == "succeeded"
    second = await upload(http, token, "second.txt", words_document(3, 3000, "zebrafish"))
    assert (await job_finishes(http, token, second["job_id"], 120))["status"] == "succeeded"

    new = await build(http, token)
    seen = await job_reaches(http, token, new["job_id"], progress=0.1)
    assert seen["status"] == "running", f"the build ended before the kill: {seen}"
    app.kill()
    killed_at = time.monotonic()
    app.restart()
    token = await login(http)

    # until the resumed build is complete, every search answers from the old generation
    while True:
        answer = await search(http, token, "zebrafish")
        state = await job(http, token, new["job_id"])
        if state["status"] in {"succeeded", "failed"}:
            break
        assert answer["generation_id"] == old["generation_id"], answer["generation_id"]
        assert all(r["document_id"] != second["document_id"] for r in answer["results"])
        assert time.monotonic() - killed_at < RESUME_CEILING_SECONDS, "the build did not resume"
    resumed_after = time.monotonic() - killed_at
    assert state["status"] == "succeeded", state
    assert state["attempts"] >= 2
    answer = await search(http, token, "zebrafish")
    assert answer["generation_id"] == new["generation_id"]
    assert answer["results"][0]["document_id"] == second["document_id"]
    generations = (await (await http.get(f"{API}/kb/generations", headers=bearer(token))).json())[
        "generations"
    ]
    assert [g["generation_id"] for g in generations if g["active"]] == [new["generation_id"]]
    print(f"build resumed and finished {resumed_after:.1f} s after the kill")
