"""Durable jobs: queue visibility, outcomes, retries with backoff, leases and heartbeats.

Runs the real queue and worker over in-memory storage on a manual clock. Heartbeats wait on an
injected :class:`FakeSleep`, so a test moves the clock and then lets exactly one heartbeat run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from avatarstack.adapters.memory import MemoryStorage
from avatarstack.core.jobs import JobContext, JobHandler, JobQueue, LeaseLost, Worker
from avatarstack.ports.errors import InvalidInputError
from avatarstack.ports.storage import Job
from avatarstack.testkit.clock import ManualClock

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeSleep:
    """An injectable ``sleep``: every call blocks until the test calls :meth:`tick`."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self._waiters: list[asyncio.Future[None]] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    async def wait_for_sleeper(self) -> None:
        deadline = time.monotonic() + 2.0
        while not any(not w.done() for w in self._waiters):
            assert time.monotonic() < deadline, "nobody went to sleep"
            await asyncio.sleep(0.001)

    def wake(self) -> None:
        waiting, self._waiters = self._waiters, []
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)

    async def tick(self) -> None:
        """Wake the sleepers and wait until one sleeps again (its work is done)."""
        await self.wait_for_sleeper()
        self.wake()
        await self.wait_for_sleeper()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def storage() -> AsyncIterator[MemoryStorage]:
    instance = MemoryStorage()
    await instance.start()
    await instance.migrate()
    yield instance
    await instance.close()


@pytest.fixture
def queue(storage: MemoryStorage, clock: ManualClock) -> JobQueue:
    return JobQueue(storage, clock)


def make_worker(
    storage: MemoryStorage,
    clock: ManualClock,
    handlers: Mapping[str, JobHandler],
    **options: Any,
) -> Worker:
    options.setdefault("lease_seconds", 30)
    options.setdefault("heartbeat_seconds", 10)
    options.setdefault("rng", lambda: 0.0)
    return Worker(storage, clock, handlers, **options)


async def stored(queue: JobQueue, job_id: str) -> Job:
    job = await queue.get(job_id)
    assert job is not None
    return job


async def never(ctx: JobContext) -> None:
    await asyncio.Event().wait()


async def test_an_enqueued_job_is_visible_at_once_as_queued(queue: JobQueue) -> None:
    job = await queue.enqueue("ingest", {"document_id": "d-1"}, owner_id="ada", max_attempts=5)
    seen = await stored(queue, job.id)
    assert seen == job
    assert (seen.status, seen.progress, seen.attempts, seen.run_at) == ("queued", 0.0, 0, T0)
    assert seen.owner_id == "ada"
    assert await queue.get("missing") is None


async def test_a_handlers_progress_and_result_are_stored(
    storage: MemoryStorage, clock: ManualClock, queue: JobQueue
) -> None:
    job = await queue.enqueue("ingest", {"n": 3})
    seen_progress: list[float] = []

    async def ingest(ctx: JobContext) -> dict[str, Any]:
        await ctx.progress(0.5, "half way")
        seen_progress.append((await stored(queue, ctx.job.id)).progress)
        await ctx.progress(7.0)
        seen_progress.append((await stored(queue, ctx.job.id)).progress)
        await ctx.progress(-1.0)
        seen_progress.append((await stored(queue, ctx.job.id)).progress)
        return {"chunks": ctx.job.payload["n"]}

    worker = make_worker(storage, clock, {"ingest": ingest})
    assert await worker.run_once() is True
    assert seen_progress == [0.5, 1.0, 0.0]
    done = await stored(queue, job.id)
    assert (done.status, done.progress, done.result, done.attempts) == (
        "succeeded",
        1.0,
        {"chunks": 3},
        1,
    )
    assert await worker.run_once() is False


async def test_a_failing_job_is_retried_with_growing_backoff_then_fails_for_good(
    storage: MemoryStorage, clock: ManualClock, queue: JobQueue
) -> None:
    job = await queue.enqueue("ingest", max_attempts=3)

    async def broken(ctx: JobContext) -> None:
        raise RuntimeError("vendor said\nno " + "x" * 2000)

    worker = make_worker(storage, clock, {"ingest": broken}, backoff_base=5.0)
    delays: list[float] = []
    for _ in range(2):
        assert await worker.run_once() is True
        failed = await stored(queue, job.id)
        assert failed.status == "queued"
        assert failed.error is not None
        assert failed.error.startswith("RuntimeError: vendor said no xxx")
        assert len(failed.error) <= 500
        assert "\n" not in failed.error
        delays.append((failed.run_at - clock.now()).total_seconds())
        assert await worker.run_once() is False  # not due yet
        clock.set(failed.run_at)
    assert delays == [5.0, 10.0]
    assert await worker.run_once() is True
    final = await stored(queue, job.id)
    assert (final.status, final.attempts) == ("failed", 3)
    assert final.error is not None
    assert final.error.startswith("RuntimeError: vendor said")
    clock.advance(3600)
    assert await worker.run_once() is False


def test_backoff_is_exponential_with_bounded_jitter_and_capped() -> None:
    storage = MemoryStorage()
    clock = ManualClock(T0)
    worker = Worker(storage, clock, {}, backoff_base=5.0, backoff_max=300.0)
    for attempt, base in [(1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0)]:
        for _ in range(20):
            assert base <= worker.backoff(attempt) <= base * 1.25
    assert worker.backoff(30) == 300.0


async def test_invalid_input_fails_at_once_without_retry(
    storage: MemoryStorage, clock: ManualClock, queue: JobQueue
) -> None:
    job = await queue.enqueue("ingest", max_attempts=5)

    async def unparsable(ctx: JobContext) -> None:
        raise InvalidInputError("the file cannot be parsed as PDF")

    worker = make_worker(storage, clock, {"ingest": unparsable})
    assert await worker.run_once() is True
    final = await stored(queue, job.id)
    assert (final.status, final.attempts) == ("failed", 1)
    assert final.error == "InvalidInputError: the file cannot be parsed as PDF"
    clock.advance(3600)
    assert await worker.run_once() is False


async def test_a_job_of_a_dead_worker_is_finished_by_another_after_the_lease(
    storage: MemoryStorage, clock: ManualClock, queue: JobQueue
) -> None:
    job = await queue.enqueue("ingest")

    async def ingest(ctx: JobContext) -> dict[str, Any]:
        return {"by": "w2"}

    dead = make_worker(storage, clock, {"ingest": ingest}, worker_id="w1")
    assert await dead.claim() is not None  # ... and then the process dies
    survivor = make_worker(storage, clock, {"ingest": ingest}, worker_id="w2")
    clock.advance(29)
    assert await survivor.run_once() is False
    clock.advance(2)
    assert await survivor.run_once() is True
    final = await stored(queue, job.id)
    assert (final.status, final.attempts, final.result) == ("succeeded", 2, {"by": "w2"})


async def test_heartbeats_keep_a_long_jobs_lease_alive(
    storage: MemoryStorage, clock: ManualClock, queue: JobQueue
) -> None:
    job = await queue.enqueue("ingest")
    release = asyncio.Event()

    async def slow(ctx: JobContext) -> dict[str, Any]:
        await release.wait()
        return {"ok": True}

    sleep = FakeSleep()
    worker = make_worker(storage, clock, {"ingest": slow}, worker_id="w1", sleep=sleep)
    rival = make_worker(storage, clock, {"ingest": slow}, worker_id="w2")
    running = asyncio.create_task(worker.run_once())
    for _ in range(6):  # 60 s in all, twice the lease
        clock.advance(10)
        await sleep.tick()
        assert await rival.claim() is None
        assert (await stored(queue, job.id)).lease_expires_at == clock.now() + timedelta(seconds=30)
    assert sleep.calls
    assert set(sleep.calls) == {10}
    release.set()
    assert await asyncio.wait_for(running, 2) is True
    final = await stored(queue, job.id)
    assert (final.status, final.attempts) == ("succeeded", 1)


async def test_a_lost_lease_makes_progress_raise_lease_lost(
    storage: MemoryStorage, clock: ManualClock, queue: JobQueue
) -> None:
    job = await queue.enqueue("ingest")
    go = asyncio.Event()
    outcome: list[str] = []

    async def stalled(ctx: JobContext) -> None:
        await go.wait()
        try:
            await ctx.progress(0.5)
        except LeaseLost:
            outcome.append(f"lost, cancelled={ctx.cancelled}")
            raise
        outcome.append("still held")

    worker = make_worker(storage, clock, {"ingest": stalled}, worker_id="w1", sleep=FakeSleep())
    rival = make_worker(storage, clock, {"ingest": stalled}, worker_id="w2")
    running = asyncio.create_task(worker.run_once())
    await asyncio.sleep(0.01)
    clock.advance(31)  # w1 stalled past its lease
    taken = await rival.claim()
    assert taken is not None
    go.set()
    assert await asyncio.wait_for(running, 2) is True
    assert outcome == ["lost, cancelled=True"]
    now_held = await stored(queue, job.id)
    assert (now_held.status, now_held.worker_id, now_held.attempts) == ("running", "w2", 2)
    assert now_held.progress == 0.0


async def test_a_heartbeat_that_finds_the_lease_lost_stops_the_handler(
    storage: MemoryStorage, clock: ManualClock, queue: JobQueue
) -> None:
    job = await queue.enqueue("ingest")
    sleep = FakeSleep()
    worker = make_worker(storage, clock, {"ingest": never}, worker_id="w1", sleep=sleep)
    rival = make_worker(storage, clock, {"ingest": never}, worker_id="w2")
    running = asyncio.create_task(worker.run_once())
    await sleep.wait_for_sleeper()
    clock.advance(31)
    assert await rival.claim() is not None
    sleep.wake()  # the next heartbeat finds the job taken and cancels the handler
    assert await asyncio.wait_for(running, 2) is True
    held = await stored(queue, job.id)
    assert (held.status, held.worker_id) == ("running", "w2")


async def test_unknown_kinds_are_left_for_other_workers(
    storage: MemoryStorage, clock: ManualClock, queue: JobQueue
) -> None:
    video = await queue.enqueue("video")

    async def ingest(ctx: JobContext) -> None:
        return None

    worker = make_worker(storage, clock, {"ingest": ingest})
    assert await worker.run_once() is False
    assert (await stored(queue, video.id)).status == "queued"
    mine = await queue.enqueue("ingest")
    assert await worker.run_once() is True
    assert (await stored(queue, mine.id)).status == "succeeded"
    assert (await stored(queue, video.id)).status == "queued"


async def wait_until(predicate: Any) -> None:
    deadline = time.monotonic() + 5.0
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_run_processes_jobs_concurrently_sweeps_exhausted_ones_and_stops(
    storage: MemoryStorage, clock: ManualClock, queue: JobQueue
) -> None:
    orphan = await queue.enqueue("ingest", max_attempts=1)
    dead = make_worker(storage, clock, {"ingest": never}, worker_id="dead")
    assert await dead.claim() is not None
    clock.advance(31)  # its lease expired with no attempts left

    in_flight = 0
    peak = 0

    async def ingest(ctx: JobContext) -> dict[str, Any]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return {"id": ctx.job.id}

    jobs = [await queue.enqueue("ingest") for _ in range(6)]
    worker = make_worker(storage, clock, {"ingest": ingest}, concurrency=3, poll_seconds=0.01)
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run(stop))

    async def all_done() -> bool:
        states = [(await stored(queue, job.id)).status for job in jobs]
        return all(state == "succeeded" for state in states)

    await wait_until(all_done)
    stop.set()
    await asyncio.wait_for(loop, 2)
    assert 1 < peak <= 3
    swept = await stored(queue, orphan.id)
    assert swept.status == "failed"
    assert swept.error


async def test_on_stop_a_job_that_overruns_the_grace_period_is_abandoned_with_its_lease(
    storage: MemoryStorage, clock: ManualClock, queue: JobQueue
) -> None:
    job = await queue.enqueue("ingest")
    started = asyncio.Event()

    async def endless(ctx: JobContext) -> None:
        started.set()
        await asyncio.Event().wait()

    worker = make_worker(
        storage, clock, {"ingest": endless}, worker_id="w1", grace_seconds=0.05, poll_seconds=0.01
    )
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(started.wait(), 2)
    stop.set()
    await asyncio.wait_for(loop, 2)
    held = await stored(queue, job.id)
    assert (held.status, held.worker_id) == ("running", "w1")

    async def finish(ctx: JobContext) -> None:
        return None

    other = make_worker(storage, clock, {"ingest": finish}, worker_id="w2")
    assert await other.run_once() is False
    clock.advance(31)
    assert await other.run_once() is True
    assert (await stored(queue, job.id)).status == "succeeded"


async def test_run_stops_promptly_when_idle(storage: MemoryStorage, clock: ManualClock) -> None:
    worker = make_worker(storage, clock, {"ingest": never}, poll_seconds=60)
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run(stop))
    await asyncio.sleep(0.02)
    assert not loop.done()
    stop.set()
    await asyncio.wait_for(loop, 1)


def test_a_heartbeat_must_be_shorter_than_the_lease() -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        Worker(MemoryStorage(), ManualClock(T0), {}, lease_seconds=10, heartbeat_seconds=10)


async def test_with_progress_seconds_quick_steps_are_told_but_stored_once_a_period(
    storage: MemoryStorage, clock: ManualClock, queue: JobQueue
) -> None:
    job = await queue.enqueue("ingest", {})
    told: list[tuple[str, float]] = []
    stored_progress: list[float] = []

    async def ingest(ctx: JobContext) -> None:
        await ctx.progress(0.2)  # right after the claim: told only
        stored_progress.append((await stored(queue, ctx.job.id)).progress)
        clock.advance(1)
        await ctx.progress(0.6)  # a period later: stored
        stored_progress.append((await stored(queue, ctx.job.id)).progress)
        await ctx.progress(0.8)  # told only again
        stored_progress.append((await stored(queue, ctx.job.id)).progress)

    worker = make_worker(
        storage,
        clock,
        {"ingest": ingest},
        progress_seconds=1.0,
        listener=lambda _job, status, value, _error: told.append((status, value)),
    )
    assert await worker.run_once()

    assert stored_progress == [0.0, 0.6, 0.6]
    assert told == [("running", 0.2), ("running", 0.6), ("running", 0.8), ("succeeded", 1.0)]
    assert (await stored(queue, job.id)).status == "succeeded"
