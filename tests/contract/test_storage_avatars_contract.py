"""The storage contract of the avatars context (see test_storage_contract.py)."""

from __future__ import annotations

import pytest
from storage_support import at, committed, make_avatar_session

from avatarstack.ports.errors import NotFoundError
from avatarstack.ports.storage import Storage

# --------------------------------------------------------------------------- avatar sessions


async def test_an_avatar_session_round_trips_and_updates(storage: Storage) -> None:
    session = make_avatar_session("owner-1", provider_session_id="p-1", expires_at=at(600))
    async with committed(storage) as uow:
        await uow.avatar_sessions.add(session)
    async with storage.unit_of_work() as uow:
        assert await uow.avatar_sessions.get(session.id) == session
        assert await uow.avatar_sessions.get("missing") is None
    ended = session.model_copy(
        update={
            "status": "ended",
            "last_activity_at": at(100),
            "ended_at": at(120),
            "cost_seconds": 120.5,
            "data": {"reason": "user_left"},
        }
    )
    async with committed(storage) as uow:
        await uow.avatar_sessions.update(ended)
    async with storage.unit_of_work() as uow:
        assert await uow.avatar_sessions.get(session.id) == ended


async def test_updating_a_missing_avatar_session_raises_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        async with storage.unit_of_work() as uow:
            await uow.avatar_sessions.update(make_avatar_session("owner-1"))


async def test_avatar_sessions_are_listed_per_owner_and_by_activity(storage: Storage) -> None:
    second = make_avatar_session("alice", started_at=at(2))
    first = make_avatar_session("alice", started_at=at(1))
    ended = make_avatar_session("alice", started_at=at(0), ended_at=at(5), status="ended")
    bobs = make_avatar_session("bob", started_at=at(3))
    async with committed(storage) as uow:
        for session in (second, first, ended, bobs):
            await uow.avatar_sessions.add(session)
    async with storage.unit_of_work() as uow:
        assert await uow.avatar_sessions.list_for_owner("alice") == [ended, first, second]
        assert await uow.avatar_sessions.list_for_owner("alice", active_only=True) == [
            first,
            second,
        ]
        assert await uow.avatar_sessions.list_for_owner("carol") == []
        assert await uow.avatar_sessions.list_active() == [first, second, bobs]
