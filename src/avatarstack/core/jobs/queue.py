"""The queue side of durable jobs: the job record's helpers, the context a handler runs in, the
announcements that wake workers, and :class:`JobQueue` (see :mod:`avatarstack.core.jobs`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import structlog

from avatarstack.ports.broadcast import Broadcaster
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
    "announce_job",
    "describe_error",
    "is_permanent",
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


def is_permanent(exc: BaseException) -> bool:
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
        return is_permanent(exc) or self._job.attempts >= self._job.max_attempts

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
