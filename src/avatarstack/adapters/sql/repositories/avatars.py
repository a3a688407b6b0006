"""SQL repository of the avatars context."""

from __future__ import annotations

from collections.abc import Sequence

from avatarstack.adapters.sql.repositories._base import Columns, _Repository
from avatarstack.ports.errors import NotFoundError
from avatarstack.ports.storage import AvatarSession

__all__ = ["SqlAvatarSessionRepository"]


class SqlAvatarSessionRepository(_Repository):
    _COLUMNS = Columns(
        AvatarSession,
        "id, owner_id, provider, provider_session_id, status, started_at, last_activity_at, "
        "expires_at, ended_at, cost_seconds, data",
        json=("data",),
    )

    async def add(self, session: AvatarSession) -> None:
        await self._conn.execute(
            f"INSERT INTO avatar_sessions ({self._COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            *self._COLUMNS.values(session),
        )

    async def get(self, session_id: str) -> AvatarSession | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._COLUMNS} FROM avatar_sessions WHERE id = $1", session_id
        )
        return self._COLUMNS.record(row) if row else None

    async def update(self, session: AvatarSession) -> None:
        changed = await self._conn.execute(
            "UPDATE avatar_sessions SET owner_id = $2, provider = $3, provider_session_id = $4, "
            "status = $5, started_at = $6, last_activity_at = $7, expires_at = $8, "
            "ended_at = $9, cost_seconds = $10, data = $11 WHERE id = $1",
            *self._COLUMNS.values(session),
        )
        if not changed:
            raise NotFoundError(f"avatar session {session.id} does not exist")

    async def list_for_owner(
        self, owner_id: str, *, active_only: bool = False
    ) -> Sequence[AvatarSession]:
        active = "AND ended_at IS NULL " if active_only else ""
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM avatar_sessions WHERE owner_id = $1 {active}"
            "ORDER BY started_at, id",
            owner_id,
        )
        return [self._COLUMNS.record(row) for row in rows]

    async def list_active(self) -> Sequence[AvatarSession]:
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM avatar_sessions WHERE ended_at IS NULL "
            "ORDER BY started_at, id"
        )
        return [self._COLUMNS.record(row) for row in rows]
