"""The knowledge base's durable jobs (``kb.ingest``, ``kb.build``): making them with the
configured attempts, telling listeners once one is committed, and listing them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from avatarstack.core.jobs import new_job
from avatarstack.core.knowledge.models import BUILD_JOB, INGEST_JOB
from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import NotFoundError
from avatarstack.ports.storage import Job, JobStorage

__all__ = ["KnowledgeJobs"]


class KnowledgeJobs:
    """The jobs of the knowledge base. The services that queue one enqueue it in their own
    transaction and call :meth:`queued` after the commit."""

    def __init__(self, storage: JobStorage, clock: Clock, *, attempts: int) -> None:
        self._storage = storage
        self._clock = clock
        self._attempts = attempts
        self._listeners: list[Callable[[Job], None]] = []

    def new(self, kind: str, payload: dict[str, Any], owner_id: str | None) -> Job:
        """A job to enqueue, tried at most the configured number of times."""
        return new_job(
            kind, payload, self._clock.now(), owner_id=owner_id, max_attempts=self._attempts
        )

    def on_job_queued(self, listener: Callable[[Job], None]) -> None:
        """Call ``listener`` after a knowledge service queued a job (e.g. to wake a worker)."""
        self._listeners.append(listener)

    def queued(self, job: Job) -> None:
        """Tell the listeners that ``job`` is committed."""
        for listener in self._listeners:
            listener(job)

    async def get_job(self, job_id: str) -> Job:
        async with self._storage.unit_of_work() as uow:
            job = await uow.jobs.get(job_id)
        if job is None or job.kind not in {INGEST_JOB, BUILD_JOB}:
            raise NotFoundError("job not found")
        return job

    async def list_jobs(self, *, limit: int = 50) -> Sequence[Job]:
        """The most recent ingestion and build jobs of every owner, newest first."""
        async with self._storage.unit_of_work() as uow:
            return await uow.jobs.list_recent(kinds=(INGEST_JOB, BUILD_JOB), limit=limit)
