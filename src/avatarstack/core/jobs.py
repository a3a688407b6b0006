"""Durable background jobs: a queue over the storage port and a worker that runs them.

A job is a row in storage (:class:`~avatarstack.ports.storage.Job`), visible as ``queued`` from
the moment :meth:`JobQueue.enqueue` returns. A :class:`Worker` claims one job at a time under a
lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several workers share one queue), runs the
handler registered for its kind and records the outcome:

* while the handler runs, a heartbeat extends the lease every ``heartbeat_seconds``; handlers
  report progress through :meth:`JobContext.progress`, which is a heartbeat too;
* a worker that dies stops heartbeating: once its lease expires another worker claims the job
  (the claim counts an attempt), and :meth:`Worker.run` periodically marks failed the jobs
  whose lease expired with no attempts left;
* a handler that raises is retried with exponential backoff plus jitter while attempts remain,
  then fails for good; bad input (:class:`~avatarstack.ports.errors.InvalidInputError` and the
  other "the content itself is wrong" errors in :data:`PERMANENT_ERRORS`) fails at once;
* a worker whose lease was taken over (it stalled past the lease, another worker claimed the
  job) stops the handler: :meth:`JobContext.progress` raises :class:`LeaseLost`, and the
  heartbeat cancels the handler. The outcome then belongs to the new holder.

Wake-ups: a worker polls the queue every ``poll_seconds`` when it is idle, but a queued job does
not wait for that. Whoever commits a job announces it afterwards on the broadcaster's
:data:`JOBS_TOPIC` (:func:`announce_job`, or a :class:`JobAnnouncer` as a service's job
listener): in-process on SQLite, through ``NOTIFY`` to every instance on PostgreSQL. A worker
given the broadcaster subscribes before its first claim and claims at once when a job of a kind
it handles is announced, or when the broadcaster says notices may have been lost (a resync
notice). Polling stays as the fallback (a lost notice, a job whose ``run_at`` is later).

Timing is injectable for tests: the clock (a ManualClock) gives the timestamps stored, and the
``sleep`` callable (default :func:`asyncio.sleep`) is what the heartbeat and the poll loop wait
on, so a test can drive heartbeats one tick at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog

from avatarstack.ports.broadcast import Broadcaster, Subscription
from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import (
    AvatarstackError,
    InvalidInputError,
    MalformedRequestError,
    UnsupportedMediaTypeError,
)
from avatarstack.ports.storage import Job, JobStorage, new_id

__all__ = [
    "JOBS_TOPIC",
    "PERMANENT_ERRORS",
    "JobAnnouncer",
    "JobContext",
    "JobHandler",
    "JobListener",
    "JobQueue",
    "LeaseLost",
    "Sleep",
    "Worker",
    "announce_job",
    "describe_error",
    "new_job",
]

log = structlog.get_logger("avatarstack.jobs")

#: errors that say the job's input is wrong: retrying cannot help, the job fails at once
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    InvalidInputError,
    MalformedRequestError,
    UnsupportedMediaTypeError,
)
#: the stored error message is cut to this many characters
MAX_ERROR_LENGTH = 500
#: the broadcaster topic on which committed jobs are announced: ``{"kind": job.kind}``
JOBS_TOPIC = "jobs"

Sleep = Callable[[float], Awaitable[None]]
#: told about every change a worker makes to a job: ``(job, status, progress, error)``
JobListener = Callable[[Job, str, float, str | None], None]


class LeaseLost(Exception):
    """This worker no longer holds the job (its lease expired and another worker claimed it).

    Raised by :meth:`JobContext.progress` and :meth:`JobContext.check`; a handler should let it
    propagate. The worker then records nothing: the job belongs to its new holder.
    """


def _permanent(exc: BaseException) -> bool:
    return isinstance(exc, PERMANENT_ERRORS)


def describe_error(exc: BaseException, limit: int = MAX_ERROR_LENGTH) -> str:
    """A short readable message for the job's ``error``: class name and message, one line, no
    traceback, at most ``limit`` characters."""
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


class JobContext:
    """What a handler gets: the job, progress reporting (a heartbeat) and a lease check."""

    def __init__(
        self,
        job: Job,
        *,
        storage: JobStorage,
        clock: Clock,
        worker_id: str,
        lease_seconds: float,
        listener: JobListener | None = None,
        progress_seconds: float = 0.0,
    ) -> None:
        self._job = job
        self._listener = listener
        self._progress_seconds = progress_seconds
        #: when the lease was last extended (the claim did it)
        self._stored_at = clock.now()
        self._storage = storage
        self._clock = clock
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds
        self._lost = False
        self._progress = job.progress

    @property
    def job(self) -> Job:
        """The job as claimed (status ``running``, ``attempts`` counts this run)."""
        return self._job

    @property
    def cancelled(self) -> bool:
        """True once the lease is known to be lost; the handler should stop."""
        return self._lost

    @property
    def last_progress(self) -> float:
        return self._progress

    def fails_for_good(self, exc: BaseException) -> bool:
        """Whether the worker will record ``exc`` as this job's final failure (bad input, or no
        attempt left) rather than retry it; False once the lease is lost (the job is another
        worker's then). Handlers use it to settle what the job was about (a version, a
        generation, an answer) before the failure is recorded."""
        if self._lost:
            return False
        return _permanent(exc) or self._job.attempts >= self._job.max_attempts

    def check(self) -> None:
        """Raise :class:`LeaseLost` when the lease is known to be lost."""
        if self._lost:
            raise LeaseLost(f"job {self._job.id} is no longer held by {self._worker_id}")

    async def progress(self, fraction: float, note: str | None = None) -> None:
        """Store progress (clamped to 0..1) and extend the lease, and tell the listener.

        With ``progress_seconds``, progress reported sooner than that after the last write
        (the claim, a heartbeat or an earlier progress) is only told to the listener: a short
        job does not write a unit of work per step, and the heartbeat keeps the lease.
        ``note`` is logged (the job record has no field for it). Raises :class:`LeaseLost`
        when another worker holds the job now.
        """
        self.check()
        value = min(1.0, max(0.0, float(fraction)))
        recent = (self._clock.now() - self._stored_at).total_seconds() < self._progress_seconds
        if not recent and not await self.heartbeat(progress=value):
            self.check()
        self._progress = value
        if self._listener is not None:
            with contextlib.suppress(Exception):  # a listener must not fail the job
                self._listener(self._job, "running", value, None)
        log.debug(
            "job.progress", job_id=self._job.id, kind=self._job.kind, progress=value, note=note
        )

    async def heartbeat(self, progress: float | None = None) -> bool:
        """Extend the lease; False (and :attr:`cancelled` set) when it was lost."""
        async with self._storage.unit_of_work() as uow:
            held = await uow.jobs.heartbeat(
                self._job.id, self._worker_id, self._clock.now(), self._lease_seconds, progress
            )
            await uow.commit()
        if not held:
            self._lost = True
        else:
            self._stored_at = self._clock.now()
        return held


JobHandler = Callable[[JobContext], Awaitable[Mapping[str, Any] | None]]


def new_job(
    kind: str,
    payload: Mapping[str, Any] | None,
    now: datetime,
    *,
    owner_id: str | None = None,
    max_attempts: int = 3,
    run_at: datetime | None = None,
) -> Job:
    """A queued job record; enqueue it with ``uow.jobs.enqueue`` in the unit of work that
    writes the rows it refers to, so both commit together."""
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    return Job(
        id=new_id(),
        kind=kind,
        payload=dict(payload or {}),
        max_attempts=max_attempts,
        run_at=run_at or now,
        owner_id=owner_id,
        created_at=now,
        updated_at=now,
    )


async def announce_job(broadcaster: Broadcaster, job: Job) -> None:
    """Wake the workers (on every instance) that handle ``job``'s kind. Call it only after the
    unit of work that queued the job has committed: a woken worker must find it. Best effort: a
    notice that cannot be sent is logged, and the job waits for the next poll."""
    try:
        await broadcaster.publish(JOBS_TOPIC, {"kind": job.kind})
    except AvatarstackError as exc:
        log.warning("job.announce_failed", job_id=job.id, kind=job.kind, error=exc.code)


class JobAnnouncer:
    """A job listener (``on_job_queued``) that announces each committed job on the broadcaster
    (:func:`announce_job`) without making the caller wait for the notice."""

    def __init__(self, broadcaster: Broadcaster) -> None:
        self._broadcaster = broadcaster
        self._pending: set[asyncio.Task[None]] = set()

    def __call__(self, job: Job) -> None:
        task = asyncio.get_running_loop().create_task(announce_job(self._broadcaster, job))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for the notices still being sent."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


class JobQueue:
    """Enqueue jobs and read their status; with a broadcaster, each enqueued job is announced
    to the workers once it is committed."""

    def __init__(
        self, storage: JobStorage, clock: Clock, *, broadcaster: Broadcaster | None = None
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._broadcaster = broadcaster

    async def enqueue(
        self,
        kind: str,
        payload: Mapping[str, Any] | None = None,
        *,
        owner_id: str | None = None,
        max_attempts: int = 3,
        run_at: datetime | None = None,
    ) -> Job:
        """Store a queued job (committed: visible at once) and return it."""
        job = new_job(
            kind,
            payload,
            self._clock.now(),
            owner_id=owner_id,
            max_attempts=max_attempts,
            run_at=run_at,
        )
        async with self._storage.unit_of_work() as uow:
            await uow.jobs.enqueue(job)
            await uow.commit()
        log.info("job.enqueued", job_id=job.id, kind=kind, owner_id=owner_id)
        if self._broadcaster is not None:
            await announce_job(self._broadcaster, job)
        return job

    async def get(self, job_id: str) -> Job | None:
        async with self._storage.unit_of_work() as uow:
            return await uow.jobs.get(job_id)


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
        permanent = _permanent(exc)
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
