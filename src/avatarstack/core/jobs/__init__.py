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

from avatarstack.core.jobs.queue import (
    JOBS_TOPIC,
    PERMANENT_ERRORS,
    JobAnnouncer,
    JobContext,
    JobHandler,
    JobListener,
    JobQueue,
    LeaseLost,
    Sleep,
    announce_job,
    describe_error,
    new_job,
)
from avatarstack.core.jobs.worker import Worker

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
