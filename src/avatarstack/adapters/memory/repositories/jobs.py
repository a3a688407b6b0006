"""In-memory repository of the jobs context."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from avatarstack.adapters.memory.repositories._base import _Repo
from avatarstack.ports.errors import DuplicateError
from avatarstack.ports.storage import Job


class _Jobs(_Repo):
    async def enqueue(self, job: Job) -> None:
        if job.id in self._s.jobs:
            raise DuplicateError("a record with the same key already exists")
        self._s.jobs[job.id] = job

    async def get(self, job_id: str) -> Job | None:
        return self._s.jobs.get(job_id)

    async def claim(
        self,
        worker_id: str,
        now: datetime,
        lease_seconds: float,
        kinds: Sequence[str] | None = None,
    ) -> Job | None:
        runnable = [
            j
            for j in self._s.jobs.values()
            if j.attempts < j.max_attempts
            and (kinds is None or j.kind in kinds)
            and (
                (j.status == "queued" and j.run_at <= now)
                or (
                    j.status == "running"
                    and j.lease_expires_at is not None
                    and j.lease_expires_at < now
                )
            )
        ]
        if not runnable:
            return None
        job = min(runnable, key=lambda j: (j.run_at, j.created_at, j.id))
        claimed = job.model_copy(
            update={
                "status": "running",
                "worker_id": worker_id,
                "lease_expires_at": now + timedelta(seconds=lease_seconds),
                "attempts": job.attempts + 1,
                "error": None,
                "updated_at": now,
            }
        )
        self._s.jobs[job.id] = claimed
        return claimed

    def _held(self, job_id: str, worker_id: str) -> Job | None:
        job = self._s.jobs.get(job_id)
        if job is None or job.worker_id != worker_id or job.status != "running":
            return None
        return job

    async def heartbeat(
        self,
        job_id: str,
        worker_id: str,
        now: datetime,
        lease_seconds: float,
        progress: float | None = None,
    ) -> bool:
        job = self._held(job_id, worker_id)
        if job is None:
            return False
        update: dict[str, Any] = {
            "lease_expires_at": now + timedelta(seconds=lease_seconds),
            "updated_at": now,
        }
        if progress is not None:
            update["progress"] = progress
        self._s.jobs[job_id] = job.model_copy(update=update)
        return True

    async def complete(
        self, job_id: str, worker_id: str, now: datetime, result: Mapping[str, Any] | None = None
    ) -> bool:
        job = self._held(job_id, worker_id)
        if job is None:
            return False
        self._s.jobs[job_id] = job.model_copy(
            update={
                "status": "succeeded",
                "progress": 1.0,
                "result": dict(result or {}),
                "lease_expires_at": None,
                "updated_at": now,
            }
        )
        return True

    async def fail(
        self, job_id: str, worker_id: str, now: datetime, error: str, retry_at: datetime | None
    ) -> bool:
        job = self._held(job_id, worker_id)
        if job is None:
            return False
        update: dict[str, Any] = {"error": error, "lease_expires_at": None, "updated_at": now}
        if retry_at is None or job.attempts >= job.max_attempts:
            update["status"] = "failed"
        else:
            update["status"] = "queued"
        if retry_at is not None:
            update.update(worker_id=None, run_at=retry_at)
        self._s.jobs[job_id] = job.model_copy(update=update)
        return True

    async def fail_exhausted(self, now: datetime) -> int:
        count = 0
        for job in list(self._s.jobs.values()):
            if (
                job.status == "running"
                and job.lease_expires_at is not None
                and job.lease_expires_at < now
                and job.attempts >= job.max_attempts
            ):
                self._s.jobs[job.id] = job.model_copy(
                    update={
                        "status": "failed",
                        "lease_expires_at": None,
                        "updated_at": now,
                        "error": job.error
                        or "the worker stopped responding and no attempts are left",
                    }
                )
                count += 1
        return count

    async def list_for_owner(self, owner_id: str, *, limit: int = 50) -> Sequence[Job]:
        found = [j for j in self._s.jobs.values() if j.owner_id == owner_id]
        found.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return found[:limit]

    async def list_recent(
        self, *, kinds: Sequence[str] | None = None, limit: int = 50
    ) -> Sequence[Job]:
        found = [j for j in self._s.jobs.values() if kinds is None or j.kind in kinds]
        found.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return found[:limit]
