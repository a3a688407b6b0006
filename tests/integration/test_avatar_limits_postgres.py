"""Avatar session limits hold when starts race on PostgreSQL (several instances, one database)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from avatarstack.adapters.postgres import PostgresStorage
from avatarstack.adapters.textavatar import TextAvatarProvider
from avatarstack.core.avatars import AvatarPolicy, AvatarService
from avatarstack.ports.avatar import SessionRequest
from avatarstack.ports.errors import RateLimitedError
from avatarstack.testkit.clock import ManualClock

pytestmark = pytest.mark.postgres


@pytest.fixture
async def instances(postgres_database: Any) -> AsyncIterator[list[AvatarService]]:
    """Three service instances (separate pools) over one database, like three servers."""
    await postgres_database.truncate()
    clock = ManualClock()
    provider = TextAvatarProvider(clock=clock, speech_time_scale=0)
    storages = [PostgresStorage(postgres_database.url) for _ in range(3)]
    for storage in storages:
        await storage.start()
    policy = AvatarPolicy(per_user=1, total=3)
    try:
        yield [
            AvatarService(storage=s, provider=provider, clock=clock, policy=policy)
            for s in storages
        ]
    finally:
        for storage in storages:
            await storage.close()
        await provider.close()


async def test_concurrent_starts_by_one_user_on_several_instances_start_one_session(
    instances: list[AvatarService],
) -> None:
    results = await asyncio.gather(
        *(instances[i % 3].start("ada", SessionRequest()) for i in range(6)),
        return_exceptions=True,
    )
    started = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, RateLimitedError)]
    assert len(started) == 1
    assert len(refused) == 5


async def test_concurrent_starts_by_many_users_respect_the_total_limit(
    instances: list[AvatarService],
) -> None:
    results = await asyncio.gather(
        *(instances[i % 3].start(f"user-{i}", SessionRequest()) for i in range(8)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 3
    assert all(isinstance(r, RateLimitedError) for r in results if isinstance(r, BaseException))
    live = await instances[0].provider.active_sessions()
    assert len(live) == 3
