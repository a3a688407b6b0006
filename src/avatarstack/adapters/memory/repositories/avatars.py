"""In-memory repository of the avatars context."""

from __future__ import annotations

from collections.abc import Sequence

from avatarstack.adapters.memory.repositories._base import _Repo
from avatarstack.ports.errors import DuplicateError, NotFoundError
from avatarstack.ports.storage import AvatarSession


class _AvatarSessions(_Repo):
    async def add(self, session: AvatarSession) -> None:
        if session.id in self._s.avatar_sessions:
            raise DuplicateError("a record with the same key already exists")
        self._s.avatar_sessions[session.id] = session

    async def get(self, session_id: str) -> AvatarSession | None:
        return self._s.avatar_sessions.get(session_id)

    async def update(self, session: AvatarSession) -> None:
        if session.id not in self._s.avatar_sessions:
            raise NotFoundError(f"avatar session {session.id} does not exist")
        self._s.avatar_sessions[session.id] = session

    async def list_for_owner(
        self, owner_id: str, *, active_only: bool = False
    ) -> Sequence[AvatarSession]:
        found = [
            s
            for s in self._s.avatar_sessions.values()
            if s.owner_id == owner_id and (not active_only or s.ended_at is None)
        ]
        return sorted(found, key=lambda s: (s.started_at, s.id))

    async def list_active(self) -> Sequence[AvatarSession]:
        found = [s for s in self._s.avatar_sessions.values() if s.ended_at is None]
        return sorted(found, key=lambda s: (s.started_at, s.id))
