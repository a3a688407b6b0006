"""A queued job wakes an idle worker at once, on SQLite (in-process broadcaster) and on
PostgreSQL (LISTEN/NOTIFY between two instances: two storages, two broadcasters).

The workers here poll every 30 s, and their ``sleep`` never returns: a worker that was not
woken by the announcement would never claim the job. So the tests assert on what happened (the
job ran, the announcement came after the commit), not on how fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from avatarstack.adapters.broadcast import LocalBroadcaster
from avatarstack.adapters.postgres import PostgresStorage
from avatarstack.adapters.postgres.broadcast import PostgresBroadcaster, PostgresBroadcastOptions
from avatarstack.adapters.sqlite import SqliteStorage
from avatarstack.core.jobs import JOBS_TOPIC, JobAnnouncer, JobContext, JobQueue, Worker, new_job
from avatarstack.ports.broadcast import Broadcaster
from avatarstack.ports.storage import Storage
from avatarstack.testkit.clock import ManualClock

#: far longer than any test waits: a job found by polling would fail the test
POLL_SECONDS = 30.0
#: how long a test waits for what should happen at once (only reached when it fails)
WAIT = 10.0


@dataclass
class Instance:
    storage: Storage
    broadcaster: Broadcaster


@dataclass
class Cluster:
    name: str
    #: where jobs are queued
    a: Instance
    #: where the worker runs (the same instance on SQLite: one process owns the file)
    b: Instance


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with open_cluster(request.param, request, tmp_path) as opened:
        yield opened


@pytest.fixture
async def postgres_cluster(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Cluster]:
    async with open_cluster("postgres", request, tmp_path) as opened:
        yield opened


@contextlib.asynccontextmanager
async def open_cluster(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Cluster]:
    closing: list[Callable[[], Any]] = []
    try:
        if kind == "sqlite":
            storage: Storage = SqliteStorage(tmp_path / "avatarstack.db")
            await storage.start()
            closing.append(storage.close)
            await storage.migrate()
            local = LocalBroadcaster()
            await local.start()
            closing.append(local.close)
            one = Instance(storage, local)
            yield Cluster("sqlite", one, one)
            return
        database: Any = request.getfixturevalue("postgres_database")
        await database.truncate()
        options = PostgresBroadcastOptions(
            channel=f"avs_test_{secrets.token_hex(4)}",
            connect_timeout=2.0,
            startup_timeout=2.0,
            reconnect_initial_delay=0.01,
            reconnect_max_delay=0.05,
        )
        instances = []
        for _ in range(2):
            pg = PostgresStorage(database.url)
            await pg.start()
            closing.append(pg.close)
            broadcaster = PostgresBroadcaster(database.url, options)
            await broadcaster.start()
            closing.append(broadcaster.close)
            instances.append(Instance(pg, broadcaster))
        yield Cluster("postgres", instances[0], instances[1])
    finally:
        for close in reversed(closing):
            await close()


class NeverSleeps:
    """A worker's ``sleep`` that never returns (no poll, no heartbeat) and tells when the
    worker went idle."""

    def __init__(self) -> None:
        self.idle = asyncio.Event()
        self.polls = 0

    async def __call__(self, seconds: float) -> None:
        if seconds == POLL_SECONDS:
            self.polls += 1
            self.idle.set()
        await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def idle_worker(
    instance: Instance, handlers: dict[str, Any], *, broadcaster: bool = True
) -> AsyncIterator[NeverSleeps]:
    """A worker on ``instance`` that has looked at the empty queue once and now waits."""
    sleep = NeverSleeps()
    worker = Worker(
        instance.storage,
        ManualClock(),
        handlers,
        poll_seconds=POLL_SECONDS,
        sleep=sleep,
        broadcaster=instance.broadcaster if broadcaster else None,
    )
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(sleep.idle.wait(), WAIT)
        yield sleep
    finally:
        stop.set()
        await asyncio.wait_for(loop, WAIT)


def recording(ran: list[str], done: asyncio.Event) -> Any:
    async def handler(ctx: JobContext) -> dict[str, Any]:
        ran.append(ctx.job.id)
        done.set()
        return {}

    return handler


async def test_a_job_queued_on_one_instance_wakes_the_idle_worker_of_another_at_once(
    cluster: Cluster,
) -> None:
    ran: list[str] = []
    done = asyncio.Event()
    async with idle_worker(cluster.b, {"ingest": recording(ran, done)}) as sleep:
        queue = JobQueue(cluster.a.storage, ManualClock(), broadcaster=cluster.a.broadcaster)
        job = await queue.enqueue("ingest", {"n": 1})
        await asyncio.wait_for(done.wait(), WAIT)
        assert ran == [job.id]
        assert sleep.polls >= 1  # it was idle, waiting 30 s, when the job came


async def test_a_service_listener_announces_a_job_that_is_already_committed(
    cluster: Cluster,
) -> None:
    clock = ManualClock()
    announcer = JobAnnouncer(cluster.a.broadcaster)
    seen: list[str | None] = []
    async with cluster.b.broadcaster.subscribe(JOBS_TOPIC) as subscription:
        job = new_job("kb.ingest", {"n": 2}, clock.now())
        async with cluster.a.storage.unit_of_work() as uow:
            await uow.jobs.enqueue(job)
            await uow.commit()
        announcer(job)  # what KnowledgeJobs and ConversationService call after commit
        notice = await asyncio.wait_for(anext(aiter(subscription)), WAIT)
        async with cluster.b.storage.unit_of_work() as uow:
            stored = await uow.jobs.get(job.id)
        seen.append(stored.status if stored else None)
    await announcer.drain()
    assert notice.payload == {"kind": "kb.ingest"}
    assert seen == ["queued"]


async def test_without_a_broadcaster_a_queued_job_waits_for_the_poll(cluster: Cluster) -> None:
    ran: list[str] = []
    done = asyncio.Event()
    async with idle_worker(cluster.b, {"ingest": recording(ran, done)}, broadcaster=False):
        queue = JobQueue(cluster.a.storage, ManualClock(), broadcaster=cluster.a.broadcaster)
        await queue.enqueue("ingest", {})
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.5)
    assert ran == []


@pytest.mark.postgres
async def test_a_worker_looks_at_the_queue_when_its_listen_connection_comes_back(
    postgres_cluster: Cluster, postgres_url: str
) -> None:
    """Notices sent while LISTEN was down are lost; the reconnect's resync notice makes the
    worker look at the queue instead of waiting for the poll."""
    cluster = postgres_cluster
    ran: list[str] = []
    done = asyncio.Event()
    async with idle_worker(cluster.b, {"ingest": recording(ran, done)}):
        silent = JobQueue(cluster.a.storage, ManualClock())  # queues without announcing
        job = await silent.enqueue("ingest", {})
        listener = cluster.b.broadcaster
        assert isinstance(listener, PostgresBroadcaster)
        pid = listener.listener_pid
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await conn.close()
        await asyncio.wait_for(done.wait(), WAIT)
        assert ran == [job.id]
