"""Several workers (separate pools, like separate servers) share one PostgreSQL job queue.

Claims use ``FOR UPDATE SKIP LOCKED``: every job must run exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from avatarstack.adapters.postgres import PostgresStorage
from avatarstack.core.jobs import JobContext, JobQueue, Worker
from avatarstack.testkit.clock import ManualClock

pytestmark = pytest.mark.postgres


@pytest.fixture
async def storages(postgres_database: Any) -> AsyncIterator[list[PostgresStorage]]:
    await postgres_database.truncate()
    instances = [PostgresStorage(postgres_database.url) for _ in range(3)]
    for instance in instances:
        await instance.start()
    try:
        yield instances
    finally:
        for instance in instances:
            await instance.close()


async def test_three_workers_run_each_of_thirty_jobs_exactly_once(
    storages: list[PostgresStorage],
) -> None:
    clock = ManualClock()
    queue = JobQueue(storages[0], clock)
    jobs = [await queue.enqueue("ingest", {"n": n}) for n in range(30)]
    ran: list[str] = []

    async def ingest(ctx: JobContext) -> dict[str, Any]:
        ran.append(ctx.job.id)
        await ctx.progress(0.5)
        await asyncio.sleep(0.005)
        return {"n": ctx.job.payload["n"], "worker": ctx.job.worker_id}

    workers = [
        Worker(
            storage,
            clock,
            {"ingest": ingest},
            worker_id=f"w{i}",
            concurrency=3,
            poll_seconds=0.01,
        )
        for i, storage in enumerate(storages)
    ]
    stop = asyncio.Event()
    loops = [asyncio.create_task(worker.run(stop)) for worker in workers]

    async def all_succeeded() -> bool:
        for job in jobs:
            current = await queue.get(job.id)
            if current is None or current.status != "succeeded":
                return False
        return True

    deadline = time.monotonic() + 10
    try:
        while not await all_succeeded():
            assert time.monotonic() < deadline, f"only {len(ran)} of {len(jobs)} ran"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*loops), 5)

    assert len(ran) == len(set(ran)) == len(jobs)
    assert sorted(ran) == sorted(job.id for job in jobs)
    finished = [await queue.get(job.id) for job in jobs]
    assert all(job is not None and job.status == "succeeded" for job in finished)
    assert all(job is not None and job.attempts == 1 for job in finished)
    assert {job.result["n"] for job in finished if job is not None} == set(range(30))
    workers_used = {job.result["worker"] for job in finished if job is not None}
    assert len(workers_used) > 1
