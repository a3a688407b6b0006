"""SQL repository of the jobs context."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from avatarstack.adapters.sql.repositories._base import (
    Columns,
    _dump,
    _placeholders,
    _Repository,
)
from avatarstack.ports.storage import Job

__all__ = ["SqlJobRepository"]


class SqlJobRepository(_Repository):
    _COLUMNS = Columns(
        Job,
        "id, kind, payload, status, progress, attempts, max_attempts, run_at, worker_id, "
        "lease_expires_at, error, result, owner_id, created_at, updated_at",
        json=("payload", "result"),
    )

    async def enqueue(self, job: Job) -> None:
        await self._conn.execute(self._COLUMNS.insert("jobs"), *self._COLUMNS.values(job))

    async def get(self, job_id: str) -> Job | None:
        row = await self._conn.fetchrow(f"SELECT {self._COLUMNS} FROM jobs WHERE id = $1", job_id)
        return self._COLUMNS.record(row) if row else None

    async def claim(
        self,
        worker_id: str,
        now: datetime,
        lease_seconds: float,
        kinds: Sequence[str] | None = None,
    ) -> Job | None:
        args: list[Any] = [worker_id, now + timedelta(seconds=lease_seconds), now]
        kind_filter = ""
        if kinds is not None:
            if not kinds:
                return None
            kind_filter = f"AND kind IN ({_placeholders(4, len(kinds))}) "
            args.extend(kinds)
        row = await self._conn.fetchrow(
            "UPDATE jobs SET status = 'running', worker_id = $1, lease_expires_at = $2, "
            "attempts = attempts + 1, error = NULL, updated_at = $3 "
            "WHERE id = (SELECT id FROM jobs WHERE attempts < max_attempts AND ("
            "(status = 'queued' AND run_at <= $3) OR "
            "(status = 'running' AND lease_expires_at < $3)) "
            f"{kind_filter}ORDER BY run_at, created_at, id LIMIT 1 "
            f"{self._conn.dialect.skip_locked}) "
            f"RETURNING {self._COLUMNS}",
            *args,
        )
        return self._COLUMNS.record(row) if row else None

    async def heartbeat(
        self,
        job_id: str,
        worker_id: str,
        now: datetime,
        lease_seconds: float,
        progress: float | None = None,
    ) -> bool:
        return bool(
            await self._conn.execute(
                "UPDATE jobs SET lease_expires_at = $3, updated_at = $4, "
                "progress = COALESCE($5, progress) "
                "WHERE id = $1 AND worker_id = $2 AND status = 'running'",
                job_id,
                worker_id,
                now + timedelta(seconds=lease_seconds),
                now,
                progress,
            )
        )

    async def complete(
        self, job_id: str, worker_id: str, now: datetime, result: Mapping[str, Any] | None = None
    ) -> bool:
        return bool(
            await self._conn.execute(
                "UPDATE jobs SET status = 'succeeded', progress = 1.0, result = $3, "
                "lease_expires_at = NULL, updated_at = $4 "
                "WHERE id = $1 AND worker_id = $2 AND status = 'running'",
                job_id,
                worker_id,
                _dump(result),
                now,
            )
        )

    async def fail(
        self, job_id: str, worker_id: str, now: datetime, error: str, retry_at: datetime | None
    ) -> bool:
        if retry_at is None:
            sql = (
                "UPDATE jobs SET status = 'failed', error = $3, lease_expires_at = NULL, "
                "updated_at = $4 WHERE id = $1 AND worker_id = $2 AND status = 'running'"
            )
            args: tuple[Any, ...] = (job_id, worker_id, error, now)
        else:
            sql = (
                "UPDATE jobs SET status = CASE WHEN attempts < max_attempts THEN 'queued' "
                "ELSE 'failed' END, error = $3, worker_id = NULL, lease_expires_at = NULL, "
                "run_at = $5, updated_at = $4 "
                "WHERE id = $1 AND worker_id = $2 AND status = 'running'"
            )
            args = (job_id, worker_id, error, now, retry_at)
        return bool(await self._conn.execute(sql, *args))

    async def fail_exhausted(self, now: datetime) -> int:
        return await self._conn.execute(
            "UPDATE jobs SET status = 'failed', lease_expires_at = NULL, updated_at = $1, "
            "error = COALESCE(error, 'the worker stopped responding and no attempts are left') "
            "WHERE status = 'running' AND lease_expires_at < $1 AND attempts >= max_attempts",
            now,
        )

    async def list_for_owner(self, owner_id: str, *, limit: int = 50) -> Sequence[Job]:
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM jobs WHERE owner_id = $1 "
            "ORDER BY created_at DESC, id DESC LIMIT $2",
            owner_id,
            limit,
        )
        return [self._COLUMNS.record(row) for row in rows]

    async def list_recent(
        self, *, kinds: Sequence[str] | None = None, limit: int = 50
    ) -> Sequence[Job]:
        args: list[Any] = [limit]
        kind_filter = ""
        if kinds is not None:
            if not kinds:
                return []
            kind_filter = f"WHERE kind IN ({_placeholders(2, len(kinds))}) "
            args.extend(kinds)
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM jobs {kind_filter}"
            "ORDER BY created_at DESC, id DESC LIMIT $1",
            *args,
        )
        return [self._COLUMNS.record(row) for row in rows]
