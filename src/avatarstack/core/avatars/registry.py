"""The registry of avatar sessions: the ``avatar_sessions`` rows and how they change.

Several instances (and, on one instance, a user's stop racing with the maintenance pass) act
on one row, so every change is a compare-and-set under the row's lock: it applies only while
the row is still in the state the caller saw, and a row ends once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import structlog

from avatarstack.core.avatars.vendor import AvatarStats
from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import ConflictError, NoAvatarViewError
from avatarstack.ports.storage import AvatarSession, AvatarStorage, AvatarUnitOfWork

log = structlog.get_logger("avatarstack.avatars")

STARTING = "starting"
ACTIVE = "active"
STOPPED = "stopped"
FAILED = "failed"
LIVE = (STARTING, ACTIVE)


class SessionRegistry:
    """The session rows every avatar use case reads and changes; ended sessions count in the
    figures (``stats``)."""

    def __init__(self, storage: AvatarStorage, clock: Clock, stats: AvatarStats) -> None:
        self._storage = storage
        self._clock = clock
        self._stats = stats

    async def live(self) -> list[AvatarSession]:
        """Every live session (all owners, all instances)."""
        async with self._storage.unit_of_work() as uow:
            return list(await uow.avatar_sessions.list_active())

    async def change(
        self,
        session_id: str,
        *,
        expect_status: str | None = ACTIVE,
        expect_provider_id: str | None = None,
        unclaimed_at: datetime | None = None,
        data: dict[str, Any] | None = None,
        **fields: Any,
    ) -> AvatarSession | None:
        """Compare-and-set under the session's lock: apply the change only while the row is in
        the expected state (status, vendor session, and with ``unclaimed_at`` no live renewal
        claim). Returns the new row, or None when the row moved on."""
        async with self._storage.unit_of_work() as uow:
            current = await _locked_live(uow, session_id, expect_status, expect_provider_id)
            if current is None:
                return None
            if unclaimed_at is not None:
                claim = when(current.data.get("renewing_until"))
                if claim is not None and claim > unclaimed_at:
                    return None
            update = dict(fields)
            if data:
                update["data"] = {**current.data, **data}
            changed = current.model_copy(update=update)
            await uow.avatar_sessions.update(changed)
            await uow.commit()
        return changed

    async def update(self, session_id: str, **changes: Any) -> None:
        """Activity bookkeeping on a live session (ignored once it has ended)."""
        await self.change(session_id, expect_status=None, **changes)

    async def end(
        self,
        session_id: str,
        status: str,
        reason: str,
        *,
        expect_status: str | None = None,
        expect_provider_id: str | None = None,
    ) -> AvatarSession | None:
        """End the row (once); returns the row as it was, or None if it had already ended or
        moved on from what the caller saw."""
        now = self._clock.now()
        async with self._storage.unit_of_work() as uow:
            current = await _locked_live(uow, session_id, expect_status, expect_provider_id)
            if current is None:
                return None
            cost = (
                (now - current.started_at).total_seconds() if current.provider_session_id else 0.0
            )
            await uow.avatar_sessions.update(
                current.model_copy(
                    update={
                        "status": status,
                        "ended_at": now,
                        "cost_seconds": max(cost, 0.0),
                        "data": {**current.data, "end_reason": reason},
                    }
                )
            )
            await uow.commit()
        self._stats.session_seconds += max(cost, 0.0)
        self._stats.open_sessions = max(self._stats.open_sessions - 1, 0)
        log.info("avatar_session_ended", session_id=session_id, status=status, reason=reason)
        return current

    @asynccontextmanager
    async def closed_by_vendor(self, session: AvatarSession) -> AsyncIterator[None]:
        """A ConflictError from the vendor means it closed the session: end the row too, so it
        stops counting against the limits."""
        try:
            yield
        except NoAvatarViewError:
            raise  # the session runs; only no browser carries its commands now
        except ConflictError:
            await self.end(
                session.id,
                STOPPED,
                "closed_by_provider",
                expect_provider_id=session.provider_session_id,
            )
            raise


async def _locked_live(
    uow: AvatarUnitOfWork,
    session_id: str,
    expect_status: str | None,
    expect_provider_id: str | None,
) -> AvatarSession | None:
    """The session row under its lock, if it has not ended and is in the expected state."""
    await uow.lock(f"avatar-session:{session_id}")
    current = await uow.avatar_sessions.get(session_id)
    if current is None or current.ended_at is not None:
        return None
    if expect_status is not None and current.status != expect_status:
        return None
    if expect_provider_id is not None and current.provider_session_id != expect_provider_id:
        return None
    return current


def when(value: object) -> datetime | None:
    """A moment kept in a row's ``data`` (ISO text), or None."""
    return datetime.fromisoformat(value) if isinstance(value, str) else None
