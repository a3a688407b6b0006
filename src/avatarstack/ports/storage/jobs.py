"""The jobs context: durable background jobs, claimed by one worker at a time under a lease."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import Field

from avatarstack.ports.storage._base import Record
from avatarstack.ports.storage.uow import Transaction

__all__ = [
    "Job",
    "JobRepository",
    "JobStatus",
    "JobStorage",
    "JobUnitOfWork",
]


JobStatus = Literal["queued", "running", "succeeded", "failed"]


class Job(Record):
    """A durable background job, claimed by one worker at a time under a lease."""

    id: str
    kind: str
    payload: dict[str, Any] = Field(default_factory=dict)
    status: JobStatus = "queued"
    progress: float = 0.0
    attempts: int = 0
    max_attempts: int = 3
    run_at: datetime
    worker_id: str | None = None
    lease_expires_at: datetime | None = None
    error: str | None = None
    result: dict[str, Any] = Field(default_factory=dict)
    owner_id: str | None = None
    created_at: datetime
    updated_at: datetime


class JobRepository(Protocol):
    async def enqueue(self, job: Job) -> None: ...

    async def get(self, job_id: str) -> Job | None: ...

    async def claim(
        self,
        worker_id: str,
        now: datetime,
        lease_seconds: float,
        kinds: Sequence[str] | None = None,
    ) -> Job | None:
        """Take the oldest runnable job: queued and due, or running with an expired lease.

        The claim increments ``attempts``; jobs whose attempts are exhausted are not claimed.
        Concurrent workers never receive the same job.
        """

    async def heartbeat(
        self,
        job_id: str,
        worker_id: str,
        now: datetime,
        lease_seconds: float,
        progress: float | None = None,
    ) -> bool:
        """Extend the lease; False when the job is no longer held by this worker."""

    async def complete(
        self, job_id: str, worker_id: str, now: datetime, result: Mapping[str, Any] | None = None
    ) -> bool: ...

    async def fail(
        self, job_id: str, worker_id: str, now: datetime, error: str, retry_at: datetime | None
    ) -> bool:
        """Record a failure; requeue at ``retry_at`` or fail for good when it is None."""

    async def fail_exhausted(self, now: datetime) -> int:
        """Mark failed the jobs whose lease expired with no attempts left; returns the count."""

    async def list_for_owner(self, owner_id: str, *, limit: int = 50) -> Sequence[Job]:
        """The owner's jobs, newest (``created_at``, then ``id``) first."""

    async def list_recent(
        self, *, kinds: Sequence[str] | None = None, limit: int = 50
    ) -> Sequence[Job]:
        """Jobs of any owner, optionally only of ``kinds``, newest first."""


@runtime_checkable
class JobUnitOfWork(Transaction, Protocol):
    """A transaction over the job repository only."""

    @property
    def jobs(self) -> JobRepository: ...


class JobStorage(Protocol):
    """What a service of this context needs of a storage: its units of work (a full
    :class:`~avatarstack.ports.storage.Storage` is one)."""

    def unit_of_work(self) -> AbstractAsyncContextManager[JobUnitOfWork]: ...
