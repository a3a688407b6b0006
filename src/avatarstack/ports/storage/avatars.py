"""The avatars context: avatar sessions (one live avatar stream each) and their costs."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from pydantic import Field

from avatarstack.ports.storage._base import Record
from avatarstack.ports.storage.uow import Locking, Transaction

__all__ = [
    "AvatarSession",
    "AvatarSessionRepository",
    "AvatarStorage",
    "AvatarUnitOfWork",
]


class AvatarSession(Record):
    id: str
    owner_id: str
    provider: str
    provider_session_id: str | None = None
    status: str = "starting"
    started_at: datetime
    last_activity_at: datetime
    expires_at: datetime | None = None
    ended_at: datetime | None = None
    cost_seconds: float = 0.0
    data: dict[str, Any] = Field(default_factory=dict)


class AvatarSessionRepository(Protocol):
    async def add(self, session: AvatarSession) -> None: ...

    async def get(self, session_id: str) -> AvatarSession | None: ...

    async def update(self, session: AvatarSession) -> None: ...

    async def list_for_owner(
        self, owner_id: str, *, active_only: bool = False
    ) -> Sequence[AvatarSession]: ...

    async def list_active(self) -> Sequence[AvatarSession]:
        """Sessions that have not ended, oldest first."""


@runtime_checkable
class AvatarUnitOfWork(Locking, Transaction, Protocol):
    """A transaction over the avatar-session repository only, with named locks."""

    @property
    def avatar_sessions(self) -> AvatarSessionRepository: ...


class AvatarStorage(Protocol):
    """What a service of this context needs of a storage: its units of work (a full
    :class:`~avatarstack.ports.storage.Storage` is one)."""

    def unit_of_work(self) -> AbstractAsyncContextManager[AvatarUnitOfWork]: ...
