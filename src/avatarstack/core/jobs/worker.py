"""The worker side of durable jobs: :class:`Worker` claims jobs under a lease, runs their
handlers with a heartbeat, and records the outcome (see :mod:`avatarstack.core.jobs`)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from avatarstack.core.jobs.queue import (
    JOBS_TOPIC,
    JobContext,
    JobHandler,
    JobListener,
    LeaseLost,
    Sleep,
    describe_error,
    is_permanent,
    log,
)
from avatarstack.ports.broadcast import Broadcaster, Subscription
from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import AvatarstackError
from avatarstack.ports.storage import Job, JobStorage, new_id

__all__ = ["Worker"]


class Worker:
    """Claims jobs of the kinds it has handlers for and runs them.

    ``lease_seconds`` is how long a claim holds without a heartbeat; ``heartbeat_seconds``
    (below the lease) is the heartbeat cadence; ``poll_seconds`` is the wait when the queue is
    empty; ``sweep_seconds`` (default: the lease) is how often :meth:`run` fails exhausted jobs;
    ``grace_seconds`` is how long :meth:`run` lets running jobs finish after ``stop`` before it
    cancels them (a cancelled job keeps its lease; another worker retries it after expiry).
    ``progress_seconds`` (default 0: every call) is how often a handler's progress is written
    (:meth:`JobContext.progress`).
    ``sleep`` is awaited for the heartbeat and poll waits (inject a fake in tests); ``rng``
    gives the jitter in [0, 1). With a ``broadcaster``, :meth:`run` also claims at once when a
    job of one of its kinds is announced on :data:`JOBS_TOPIC` (module docstring).
    """

    def __init__(
        self,
        storage: JobStorage,
        clock: Clock,
        handlers: Mapping[str, JobHandler],
        *,
        worker_id: str | None = None,
        lease_seconds: float = 60,
        heartbeat_seconds: float = 20,
        poll_seconds: float = 1.0,
        concurrency: int = 1,
        backoff_base: float = 5.0,
        backoff_max: float = 300.0,
        jitter: float = 0.25,
        sweep_seconds: float | None = None,
        grace_seconds: float = 30.0,
        sleep: Sleep = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        listener: JobListener | None = None,
        on_start: Callable[[Job, datetime], None] | None = None,
        broadcaster: Broadcaster | None = None,
        progress_seconds: float = 0.0,
    ) -> None:
        if lease_seconds <= 0 or heartbeat_seconds <= 0:
            raise ValueError("lease_seconds and heartbeat_seconds must be positive")
        if heartbeat_seconds >= lease_seconds:
            raise ValueError("heartbeat_seconds must be shorter than lease_seconds")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._storage = storage
        self._clock = clock
        self._handlers = dict(handlers)
        self.worker_id = worker_id or f"worker-{new_id()}"
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.poll_seconds = poll_seconds
        self.concurrency = concurrency
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.jitter = jitter
        self.sweep_seconds = lease_seconds if sweep_seconds is None else sweep_seconds
        self.grace_seconds = grace_seconds
        self._sleep = sleep
        self._rng = rng
        self._log = log.bind(worker_id=self.worker_id)
        self._woken = asyncio.Event()
        self._listener = listener
        #: told (job, now) when a claimed job starts (metrics: how long it waited)
        self._on_start = on_start
        self._broadcaster = broadcaster
        self.progress_seconds = progress_seconds

    # ------------------------------------------------------------------ policy

    def backoff(self, attempt: int) -> float:
        """Seconds before retry number ``attempt`` (1 after the first failure): exponential,
        plus up to ``jitter`` of itself at random, capped at ``backoff_max``."""
        delay = self.backoff_base * 2 ** max(0, attempt - 1)
        delay *= 1 + self.jitter * self._rng()
        return float(min(self.backoff_max, delay))

    # ------------------------------------------------------------------ one job

    async def claim(self) -> Job | None:
        """Claim one due job of a kind this worker handles (None when there is none)."""
        async with self._storage.unit_of_work() as uow:
            job = await uow.jobs.claim(
                self.worker_id, self._clock.now(), self.lease_seconds, sorted(self._handlers)
            )
            await uow.commit()
        return job

    async def run_once(self) -> bool:
        """Claim one job and run it to the end; False when there was nothing to do."""
        job = await self.claim()
        if job is None:
            return False
        await self.execute(job)
        return True

    async def execute(self, job: Job) -> None:
        """Run a claimed job's handler with heartbeats and record the outcome."""
        jlog = self._log.bind(job_id=job.id, kind=job.kind, attempt=job.attempts)
        context = JobContext(
            job,
            storage=self._storage,
            clock=self._clock,
            worker_id=self.worker_id,
            lease_seconds=self.lease_seconds,
            listener=self._listener,
            progress_seconds=self.progress_seconds,
        )
        handler = self._handlers[job.kind]
        jlog.info("job.started")
        if self._on_start is not None:
            with contextlib.suppress(Exception):  # monitoring must not fail the job
                self._on_start(job, self._clock.now())
        work: asyncio.Future[Mapping[str, Any] | None] = asyncio.ensure_future(handler(context))
        beat = asyncio.create_task(self._heartbeat(context, work))
        try:
            try:
                result = await work
            finally:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat
        except LeaseLost:
            jlog.warning("job.lease_lost")
            return
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if context.cancelled and (current is None or current.cancelling() == 0):
                jlog.warning("job.lease_lost")
                return
            jlog.warning("job.cancelled")  # keeps its lease: retried after it expires
            raise
        except Exception as exc:
            await self._record_failure(job, exc, jlog)
            return
        async with self._storage.unit_of_work() as uow:
            done = await uow.jobs.complete(
                job.id, self.worker_id, self._clock.now(), dict(result or {})
            )
            await uow.commit()
        if done:
            jlog.info("job.succeeded")
            self._tell(
                job.model_copy(update={"result": dict(result or {})}), "succeeded", 1.0, None
            )
        else:
            jlog.warning("job.lease_lost", stage="complete")

    async def _heartbeat(self, context: JobContext, work: asyncio.Future[Any]) -> None:
        while not work.done():
            await self._sleep(self.heartbeat_seconds)
            if work.done():
                return
            try:
                held = await context.heartbeat()
            except Exception as exc:  # storage hiccup: try again next beat, the lease may hold
                self._log.warning(
                    "job.heartbeat_failed", job_id=context.job.id, error=describe_error(exc)
                )
                continue
            if not held:
                work.cancel()
                return

    async def _record_failure(self, job: Job, exc: Exception, jlog: Any) -> None:
        error = describe_error(exc)
        now = self._clock.now()
        permanent = is_permanent(exc)
        retry_at: datetime | None = None
        if not permanent and job.attempts < job.max_attempts:
            retry_at = now + timedelta(seconds=self.backoff(job.attempts))
        async with self._storage.unit_of_work() as uow:
            recorded = await uow.jobs.fail(job.id, self.worker_id, now, error, retry_at)
            await uow.commit()
        if not recorded:
            jlog.warning("job.lease_lost", stage="fail")
        elif retry_at is None:
            jlog.warning("job.failed", error=error, permanent=permanent)
            self._tell(job, "failed", job.progress, error)
        else:
            jlog.info("job.retry_scheduled", error=error, retry_at=retry_at.isoformat())

    def _tell(self, job: Job, status: str, progress: float, error: str | None) -> None:
        if self._listener is not None:
            try:
                self._listener(job, status, progress, error)
            except Exception as exc:  # a listener must not change the job's outcome
                self._log.warning("job.listener_failed", error=describe_error(exc))

    # ------------------------------------------------------------------ the loop

    async def sweep(self) -> int:
        """Fail the jobs whose lease expired with no attempts left; returns how many."""
        async with self._storage.unit_of_work() as uow:
            count = await uow.jobs.fail_exhausted(self._clock.now())
            await uow.commit()
        if count:
            self._log.warning("job.exhausted", count=count)
        return count

    async def run(self, stop: asyncio.Event) -> None:
        """Poll and run up to ``concurrency`` jobs at once until ``stop`` is set.

        Storage errors are logged and retried after ``poll_seconds``. On stop, running jobs get
        ``grace_seconds`` to finish, then are cancelled (they keep their lease).
        """
        running: set[asyncio.Task[None]] = set()
        last_sweep: datetime | None = None
        # subscribed before the first claim: a job committed after that claim is announced
        listening = self._listen()
        self._log.info("worker.started", kinds=sorted(self._handlers))
        try:
            while not stop.is_set():
                idle = True
                try:
                    now = self._clock.now()
                    if last_sweep is None or (now - last_sweep).total_seconds() >= (
                        self.sweep_seconds
                    ):
                        last_sweep = now
                        await self.sweep()
                    while len(running) < self.concurrency and not stop.is_set():
                        job = await self.claim()
                        if job is None:
                            break
                        idle = False
                        task = asyncio.create_task(self.execute(job))
                        task.add_done_callback(self._report)
                        running.add(task)
                        task.add_done_callback(running.discard)
                except Exception as exc:
                    self._log.error("worker.poll_failed", error=describe_error(exc))
                if len(running) >= self.concurrency:
                    await self._wait_any(running, stop)
                elif idle:
                    await self._wait_sleep(stop)
        finally:
            if listening is not None:
                listening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listening
            await self._drain(running)
            self._log.info("worker.stopped")

    def _listen(self) -> asyncio.Task[None] | None:
        if self._broadcaster is None:
            return None
        try:
            subscription = self._broadcaster.subscribe(JOBS_TOPIC)
        except AvatarstackError as exc:  # polling still finds every job
            self._log.warning("worker.announcements_unavailable", error=exc.code)
            return None
        return asyncio.create_task(
            self._wake_on_announcements(subscription), name=f"{self.worker_id}-wakeups"
        )

    async def _wake_on_announcements(self, subscription: Subscription) -> None:
        async with subscription:
            async for notice in subscription:
                if notice.resync or notice.payload.get("kind") in self._handlers:
                    self.wake()

    def _report(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._log.error("job.outcome_not_recorded", error=describe_error(exc))

    async def _wait_any(self, running: set[asyncio.Task[None]], stop: asyncio.Event) -> None:
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({*running, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()

    def wake(self) -> None:
        """Poll now instead of after ``poll_seconds`` (what an announcement on
        :data:`JOBS_TOPIC` does)."""
        self._woken.set()

    async def _wait_sleep(self, stop: asyncio.Event) -> None:
        stopper = asyncio.create_task(stop.wait())
        waker = asyncio.create_task(self._woken.wait())
        sleeper = asyncio.ensure_future(self._sleep(self.poll_seconds))
        try:
            await asyncio.wait({sleeper, stopper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._woken.clear()
            stopper.cancel()
            waker.cancel()
            sleeper.cancel()

    async def _drain(self, running: set[asyncio.Task[None]]) -> None:
        if not running:
            return
        pending = set(running)
        _, still = await asyncio.wait(pending, timeout=self.grace_seconds)
        for task in still:
            task.cancel()
        if still:
            self._log.warning("worker.jobs_abandoned", count=len(still))
            await asyncio.gather(*still, return_exceptions=True)
