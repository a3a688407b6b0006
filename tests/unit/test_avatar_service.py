"""The avatar session registry: limits, speech, idle stop, keep-alive, renewal, reconciliation.

Runs the real service over in-memory storage and the offline text provider, on a manual clock;
the vendor adapters are covered by their own suites against the fake servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from avatarstack.adapters.memory import MemoryStorage
from avatarstack.adapters.textavatar import TextAvatarProvider
from avatarstack.core.avatars import AvatarMaintenance, AvatarPolicy, AvatarService
from avatarstack.ports.avatar import SessionRequest
from avatarstack.ports.errors import ConflictError, NotFoundError, RateLimitedError
from avatarstack.testkit.clock import ManualClock

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def provider(clock: ManualClock) -> AsyncIterator[TextAvatarProvider]:
    text = TextAvatarProvider(clock=clock, speech_time_scale=0, max_duration_seconds=600)
    yield text
    await text.close()


async def service_over(
    provider: TextAvatarProvider, clock: ManualClock, policy: AvatarPolicy
) -> AvatarService:
    """The service over fresh in-memory storage."""
    storage = MemoryStorage()
    await storage.start()
    return AvatarService(storage=storage, provider=provider, clock=clock, policy=policy)


@pytest.fixture
async def service(clock: ManualClock, provider: TextAvatarProvider) -> AvatarService:
    return await service_over(
        provider,
        clock,
        AvatarPolicy(
            per_user=1,
            total=2,
            keep_alive_every=timedelta(seconds=60),
            stop_idle_after=timedelta(minutes=5),
            renew_before=timedelta(seconds=90),
        ),
    )


@pytest.fixture
def maintenance(service: AvatarService) -> AvatarMaintenance:
    return AvatarMaintenance(service)


async def test_a_started_session_is_registered_as_active_with_its_expiry(
    service: AvatarService, provider: TextAvatarProvider
) -> None:
    started = await service.start("ada", SessionRequest())
    session = started.session
    assert session.status == "active"
    assert session.owner_id == "ada"
    assert session.expires_at == T0 + timedelta(seconds=600)
    assert session.provider_session_id in await provider.active_sessions()
    assert [s.id for s in await service.list_sessions("ada")] == [session.id]


async def test_one_user_cannot_exceed_the_per_user_limit(service: AvatarService) -> None:
    await service.start("ada", SessionRequest())
    with pytest.raises(RateLimitedError, match="already have 1"):
        await service.start("ada", SessionRequest())


async def test_the_deployment_cannot_exceed_the_total_limit(service: AvatarService) -> None:
    await service.start("ada", SessionRequest())
    await service.start("bob", SessionRequest())
    with pytest.raises(RateLimitedError, match="all avatar sessions are in use"):
        await service.start("cyd", SessionRequest())


async def test_a_failed_start_frees_its_reservation(
    service: AvatarService, provider: TextAvatarProvider
) -> None:
    with pytest.raises(NotFoundError):
        await service.start("ada", SessionRequest(avatar_id="no-such-avatar"))
    (failed,) = await service.list_sessions("ada")
    assert failed.status == "failed"
    assert (await service.start("ada", SessionRequest())).session.status == "active"


async def test_long_text_is_spoken_sentence_by_sentence_within_the_provider_limit(
    service: AvatarService, provider: TextAvatarProvider
) -> None:
    session = (await service.start("ada", SessionRequest())).session
    sentence = "This sentence is about sixty characters long, more or less. "
    text = sentence * (provider.max_text_length // len(sentence) + 5)
    tasks = await service.speak("ada", session.id, text, "repeat")
    assert len(tasks) > 1


async def test_only_the_owner_can_drive_a_session(service: AvatarService) -> None:
    session = (await service.start("ada", SessionRequest())).session
    with pytest.raises(NotFoundError):
        await service.speak("mallory", session.id, "hello", "repeat")
    with pytest.raises(NotFoundError):
        await service.stop("mallory", session.id)


async def test_a_stopped_session_records_its_cost_and_refuses_speech(
    service: AvatarService, provider: TextAvatarProvider, clock: ManualClock
) -> None:
    session = (await service.start("ada", SessionRequest())).session
    clock.advance(seconds=42)
    await service.stop("ada", session.id)
    await service.stop("ada", session.id)  # twice is fine
    stopped = await service.get("ada", session.id)
    assert stopped.status == "stopped"
    assert stopped.cost_seconds == 42
    assert session.provider_session_id not in await provider.active_sessions()
    with pytest.raises(ConflictError):
        await service.speak("ada", session.id, "hello", "repeat")


async def test_a_session_nobody_uses_is_stopped_by_maintenance(
    service: AvatarService,
    maintenance: AvatarMaintenance,
    provider: TextAvatarProvider,
    clock: ManualClock,
) -> None:
    session = (await service.start("ada", SessionRequest())).session
    clock.advance(minutes=4)
    await service.speak("ada", session.id, "still here", "repeat")
    clock.advance(minutes=4)
    await maintenance.tick()
    assert (await service.get("ada", session.id)).status == "active"  # activity 4 min ago
    clock.advance(minutes=1, seconds=1)
    await maintenance.tick()
    idle = await service.get("ada", session.id)
    assert idle.status == "stopped"
    assert idle.data["end_reason"] == "idle"
    assert session.provider_session_id not in await provider.active_sessions()


async def test_sessions_in_use_get_keep_alives(
    service: AvatarService, maintenance: AvatarMaintenance, clock: ManualClock
) -> None:
    session = (await service.start("ada", SessionRequest())).session
    clock.advance(seconds=61)
    await service.touch("ada", session.id)
    await maintenance.tick()
    kept = await service.get("ada", session.id)
    assert kept.data["keep_alive_at"] == (T0 + timedelta(seconds=61)).isoformat()


async def test_a_session_closed_by_the_vendor_is_ended_at_the_next_keep_alive(
    service: AvatarService,
    maintenance: AvatarMaintenance,
    provider: TextAvatarProvider,
    clock: ManualClock,
) -> None:
    session = (await service.start("ada", SessionRequest())).session
    assert session.provider_session_id is not None
    await provider.stop(session.provider_session_id)  # e.g. the vendor's idle timeout
    clock.advance(seconds=61)
    await service.touch("ada", session.id)
    await maintenance.tick()
    ended = await service.get("ada", session.id)
    assert ended.status == "stopped"
    assert ended.data["end_reason"] == "closed_by_provider"


async def test_a_session_is_renewed_before_the_duration_cap_between_utterances(
    service: AvatarService,
    maintenance: AvatarMaintenance,
    provider: TextAvatarProvider,
    clock: ManualClock,
) -> None:
    session = (await service.start("ada", SessionRequest())).session
    old = session.provider_session_id
    clock.advance(seconds=515)  # 85 s before the cap: time to renew
    # a long answer is being spoken: renewal waits for the end of the utterance
    await service.speak("ada", session.id, "word " * 100, "repeat")  # about 40 s of speech
    assert await maintenance.tick() == []
    clock.advance(seconds=41)
    await service.touch("ada", session.id)
    (renewal,) = await maintenance.tick()
    assert renewal.session_id == session.id
    assert renewal.old_provider_session_id == old
    renewed = await service.get("ada", session.id)
    assert renewed.provider_session_id == renewal.new_provider_session_id != old
    assert renewed.expires_at == clock.now() + timedelta(seconds=600)
    assert renewed.data["renewals"] == 1
    running = await provider.active_sessions()
    assert old not in running
    assert renewal.new_provider_session_id in running
    await service.speak("ada", session.id, "the conversation goes on", "repeat")


async def test_reconciliation_stops_orphans_and_ends_lost_sessions(
    service: AvatarService, maintenance: AvatarMaintenance, provider: TextAvatarProvider
) -> None:
    orphan = await provider.start_session(SessionRequest())  # left by a crashed instance
    lost = (await service.start("ada", SessionRequest())).session
    assert lost.provider_session_id is not None
    await provider.stop(lost.provider_session_id)  # gone at the vendor meanwhile
    assert await maintenance.reconcile() == (1, 1)
    assert orphan.provider_session_id not in await provider.active_sessions()
    assert (await service.get("ada", lost.id)).data["end_reason"] == "lost"


async def test_keep_alives_come_at_least_twice_per_vendor_idle_timeout(
    clock: ManualClock,
) -> None:
    provider = TextAvatarProvider(clock=clock, speech_time_scale=0, idle_timeout_seconds=60)
    service = await service_over(
        provider, clock, AvatarPolicy(keep_alive_every=timedelta(minutes=10))
    )
    session = (await service.start("ada", SessionRequest())).session
    clock.advance(seconds=31)
    await service.touch("ada", session.id)
    await AvatarMaintenance(service).tick()
    kept = await service.get("ada", session.id)
    assert kept.data["keep_alive_at"] == clock.now().isoformat()
    await provider.close()


async def test_session_events_follow_speech_and_continue_across_a_renewal(
    service: AvatarService, maintenance: AvatarMaintenance, clock: ManualClock
) -> None:
    session = (await service.start("ada", SessionRequest())).session
    seen: list[str] = []

    async def follow() -> None:
        async for event in service.events("ada", session.id):
            seen.append(event.type)

    reader = asyncio.create_task(follow())
    await asyncio.sleep(0)
    await service.speak("ada", session.id, "Before the renewal.", "repeat")
    await asyncio.sleep(0.01)
    clock.advance(seconds=515)
    await service.touch("ada", session.id)
    assert len(await maintenance.tick()) == 1  # renewed while idle
    await asyncio.sleep(0.01)
    await service.speak("ada", session.id, "After the renewal.", "repeat")
    await asyncio.sleep(0.01)
    await service.stop("ada", session.id)
    await asyncio.wait_for(reader, 2)
    assert seen == ["speaking", "idle", "speaking", "idle", "closed"]


async def test_a_session_replaced_while_still_speaking_ends_its_utterance_with_idle(
    clock: ManualClock,
) -> None:
    """The renewal waits for the end of our estimate of an utterance, but the vendor may still
    be speaking (a longer utterance, or one of its own): the replaced session's events end with
    ``idle`` for it, so a page waiting for the end of the utterance moves to the new room."""
    slow = TextAvatarProvider(clock=clock, speech_time_scale=1000, max_duration_seconds=600)
    service = await service_over(slow, clock, AvatarPolicy(renew_before=timedelta(seconds=90)))
    session = (await service.start("ada", SessionRequest())).session
    seen: list[tuple[str, str | None, str]] = []

    async def follow() -> None:
        async for event in service.events("ada", session.id):
            seen.append((event.type, event.task_id, event.provider_session_id))

    reader = asyncio.create_task(follow())
    await asyncio.sleep(0)
    old = session.provider_session_id
    (task,) = await service.speak("ada", session.id, "A sentence that takes its time.", "repeat")
    await asyncio.sleep(0.01)
    clock.advance(seconds=515)  # past our estimate, but the provider is still speaking
    await service.touch("ada", session.id)
    (renewal,) = await AvatarMaintenance(service).tick()
    await asyncio.sleep(0.01)
    await service.stop("ada", session.id)
    await asyncio.wait_for(reader, 2)
    await slow.close()
    assert seen[:2] == [("speaking", task, old), ("idle", task, old)]
    assert seen[2:] == [("closed", None, renewal.new_provider_session_id)]


class _PluginBeforeVoices:
    """A vendor plugin written before the port had voices: everything but list_voices and
    list_languages (here borrowed from the text provider)."""

    def __init__(self, inner: TextAvatarProvider) -> None:
        self._inner = inner
        self.name = "older-plugin"
        self.max_text_length = inner.max_text_length

    def __getattr__(self, name: str) -> object:
        if name in ("list_voices", "list_languages"):
            raise AttributeError(name)
        return getattr(self._inner, name)


async def test_a_provider_without_voices_offers_no_voice_and_no_language(
    clock: ManualClock, provider: TextAvatarProvider
) -> None:
    storage = MemoryStorage()
    await storage.start()
    service = AvatarService(
        storage=storage,
        provider=_PluginBeforeVoices(provider),  # type: ignore[arg-type]
        clock=clock,
    )

    assert await service.list_voices() == ([], [])
    assert await service.list_avatars() == await provider.list_avatars()
