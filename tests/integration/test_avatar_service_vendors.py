"""The avatar session registry (``AvatarService``, tended by ``AvatarMaintenance``) over the real
LiveAvatar and legacy HeyGen providers, against their fake servers on 127.0.0.1.

The unit suite proves the registry's rules over the offline text avatar; this one proves they hold
when a vendor is on the other side: renewal before the vendor's duration cap, idle stop, sessions
the vendor closes on its own, reconciliation after a crash, the vendor's concurrency limit, 5xx
answers and a bad API key. Service, provider and fake share one ManualClock, so the vendor's idle
timeout and duration cap happen when a test advances it. Storage is in memory. LiveAvatar's FULL
speech travels on the fake's stand-in for the LiveKit data channel (``fake.commands``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

from avatarstack.adapters.heygen import HeyGenAvatarProvider
from avatarstack.adapters.liveavatar import LiveAvatarProvider
from avatarstack.adapters.memory import MemoryStorage
from avatarstack.core.avatars import AvatarMaintenance, AvatarPolicy, AvatarService
from avatarstack.ports.avatar import AvatarProvider, SessionRequest
from avatarstack.ports.errors import (
    ConflictError,
    RateLimitedError,
    UnavailableError,
    UpstreamError,
)
from avatarstack.testkit.clock import ManualClock
from avatarstack.testkit.heygen import FakeHeyGen
from avatarstack.testkit.liveavatar import FakeLiveAvatar

T0 = datetime(2026, 1, 1, tzinfo=UTC)
#: a duration cap short enough to reach in a test (both fakes default to 10 or 20 minutes)
CAP = 240
POLICY = AvatarPolicy(
    per_user=1,
    total=3,
    keep_alive_every=timedelta(seconds=60),
    stop_idle_after=timedelta(minutes=10),
    renew_before=timedelta(seconds=90),
)
WRONG_KEY = "wrong-key-6b1f0c9e2d7a"

Step = Literal["mint", "start"]


# =========================================================================== the vendors


@dataclass
class Vendor:
    """One real provider and its fake server, seen through the same questions."""

    name: str
    fake: FakeLiveAvatar | FakeHeyGen
    clock: ManualClock
    #: the setting that holds the API key (errors name it)
    api_key_setting: str
    #: an avatar the vendor has
    avatar_id: str
    make: Callable[..., AvatarProvider]
    _made: list[AvatarProvider]

    def provider(self, **options: Any) -> AvatarProvider:
        """A provider instance (one per server process: a new one knows no session)."""
        made = self.make(**options)
        self._made.append(made)
        return made

    @property
    def request(self) -> SessionRequest:
        # 300 s of vendor idleness everywhere: LiveAvatar's fixed value, asked of HeyGen
        return SessionRequest(avatar_id=self.avatar_id, idle_timeout_seconds=300)

    async def advance(self, seconds: float) -> None:
        """Move the shared clock; the fake applies idle timeouts and duration caps."""
        await self.fake.advance(seconds)

    def cap_sessions_at(self, seconds: int) -> None:
        if isinstance(self.fake, FakeLiveAvatar):
            self.fake.tier_max_session_duration = seconds
        else:
            self.fake.session_duration_limit = seconds

    def limit_concurrency(self, sessions: int) -> None:
        self.fake.max_concurrent = sessions

    def running(self) -> set[str]:
        """Sessions running at the vendor, by its own bookkeeping."""
        if isinstance(self.fake, FakeLiveAvatar):
            return set(self.fake.active_session_ids)
        return {s.session_id for s in self.fake.open_sessions()}

    def known(self) -> set[str]:
        """Every session the vendor ever created (minted ones included)."""
        return set(self.fake.sessions)

    def saw_stop(self, session_id: str) -> bool:
        if isinstance(self.fake, FakeLiveAvatar):
            return self.fake.saw_stop(session_id)
        return session_id in self.fake.stop_calls

    def keep_alives(self, session_id: str) -> int:
        return self.fake.sessions[session_id].keep_alives

    def heard(self, session_id: str) -> list[str]:
        """What the vendor session was told to say (data-channel commands or REST tasks)."""
        if isinstance(self.fake, FakeLiveAvatar):
            return [
                c.payload["text"]
                for c in self.fake.session(session_id).commands
                if c.event_type == "avatar.speak_text"
            ]
        return [t.text for t in self.fake.session(session_id).tasks if t.task_type == "repeat"]

    def fail_next(self, step: Step) -> None:
        """The vendor answers 500 to the next session mint (nothing created) or start (a session
        was created first and must be stopped)."""
        if isinstance(self.fake, FakeLiveAvatar):
            self.fake.inject("token" if step == "mint" else "start", status=500, times=1)
        else:
            self.fake.fail("new" if step == "mint" else "start", status=500)

    def delay_next_start(self, seconds: float) -> None:
        """The next session start answers normally, after ``seconds`` of real time."""
        if isinstance(self.fake, FakeLiveAvatar):
            self.fake.inject("start", delay=seconds, times=1)
        else:
            self.fake.fail("start", delay=seconds)

    def start_requests(self) -> int:
        """How many session starts reached the vendor."""
        if isinstance(self.fake, FakeLiveAvatar):
            return self.fake.calls["start"]
        return self.fake.calls("start")

    async def close_on_its_own(self, session_id: str) -> None:
        """The vendor ends a session nobody told it to stop."""
        if isinstance(self.fake, FakeLiveAvatar):
            await self.fake.close_session(session_id, "SERVER_ERROR")
        else:  # HeyGen's only way: its idle timeout, made short for this one session
            self.fake.session(session_id).activity_idle_timeout = 30
            await self.fake.advance(31)


@asynccontextmanager
async def _liveavatar(clock: ManualClock) -> AsyncIterator[Vendor]:
    async with FakeLiveAvatar(clock=clock) as fake:

        def make(**options: Any) -> AvatarProvider:
            api_key = options.pop("api_key", fake.api_key)
            values = {"speech_time_scale": 0, "backoff": 0.01, "timeout": 2.0, **options}
            return LiveAvatarProvider(
                api_key, fake.base_url, commands=fake.commands, clock=clock, **values
            )

        yield Vendor(
            name="liveavatar",
            fake=fake,
            clock=clock,
            api_key_setting="AVATARSTACK_AVATAR__LIVEAVATAR__API_KEY",
            avatar_id=fake.active_avatar_ids[0],
            make=make,
            _made=[],
        )


@asynccontextmanager
async def _heygen(clock: ManualClock) -> AsyncIterator[Vendor]:
    async with FakeHeyGen(clock=clock) as fake:

        def make(**options: Any) -> AvatarProvider:
            api_key = options.pop("api_key", fake.api_key)
            values = {"speech_time_scale": 0.0, "backoff": 0.01, "timeout": 2.0, **options}
            return HeyGenAvatarProvider(api_key, fake.base_url, clock=clock, **values)

        yield Vendor(
            name="heygen",
            fake=fake,
            clock=clock,
            api_key_setting="AVATARSTACK_AVATAR__HEYGEN__API_KEY",
            avatar_id=fake.avatar_ids[0],
            make=make,
            _made=[],
        )


_VENDORS = {"liveavatar": _liveavatar, "heygen": _heygen}


@pytest.fixture(params=list(_VENDORS))
async def vendor(request: pytest.FixtureRequest) -> AsyncIterator[Vendor]:
    async with _VENDORS[request.param](ManualClock(T0)) as found:
        try:
            yield found
        finally:
            for provider in found._made:
                await provider.close()


@pytest.fixture
async def storage() -> AsyncIterator[MemoryStorage]:
    memory = MemoryStorage()
    await memory.start()
    yield memory
    await memory.close()


@pytest.fixture
def make_service(vendor: Vendor, storage: MemoryStorage) -> Callable[..., AvatarService]:
    """An AvatarService over the shared storage: one per (simulated) server process."""

    def make(
        provider: AvatarProvider | None = None, policy: AvatarPolicy = POLICY
    ) -> AvatarService:
        return AvatarService(
            storage=storage,
            provider=provider or vendor.provider(),
            clock=vendor.clock,
            policy=policy,
        )

    return make


@pytest.fixture
def service(make_service: Callable[..., AvatarService]) -> AvatarService:
    return make_service()


async def until(check: Callable[[], bool]) -> None:
    """Wait (at most 2 s of real time) until ``check()`` holds."""
    async with asyncio.timeout(2):
        while True:
            if check():
                return
            await asyncio.sleep(0.01)


# =========================================================================== renewal


async def test_a_session_is_renewed_at_the_vendor_before_its_duration_cap(
    vendor: Vendor, service: AvatarService
) -> None:
    vendor.cap_sessions_at(CAP)
    started = await service.start("ada", vendor.request)
    session = started.session
    old = session.provider_session_id
    assert old is not None
    assert session.expires_at == T0 + timedelta(seconds=CAP)

    await vendor.advance(CAP - 80)  # within renew_before (90 s) of the cap
    (renewal,) = await AvatarMaintenance(service).tick()

    new = renewal.new_provider_session_id
    assert renewal.session_id == session.id
    assert renewal.old_provider_session_id == old
    assert new != old
    assert renewal.livekit is not None
    assert started.livekit is not None
    assert renewal.livekit.access_token != started.livekit.access_token  # the browser rejoins
    assert vendor.saw_stop(old)
    assert vendor.running() == {new}
    renewed = await service.get("ada", session.id)
    assert renewed.status == "active"
    assert renewed.provider_session_id == new
    assert renewed.expires_at == vendor.clock.now() + timedelta(seconds=CAP)
    assert renewed.data["renewals"] == 1

    await service.speak("ada", session.id, "Still here after the renewal.", "repeat")
    assert vendor.heard(new) == ["Still here after the renewal."]
    assert vendor.heard(old) == []

    await vendor.advance(100)  # past the old session's cap: the conversation goes on
    assert await AvatarMaintenance(service).tick() == []
    assert vendor.running() == {new}
    assert (await service.get("ada", session.id)).status == "active"


async def test_renewal_waits_until_the_utterance_in_progress_has_been_spoken(
    vendor: Vendor, service: AvatarService
) -> None:
    vendor.cap_sessions_at(CAP)
    session = (await service.start("ada", vendor.request)).session
    old = session.provider_session_id
    assert old is not None

    await vendor.advance(CAP - 80)
    await service.speak("ada", session.id, "word " * 100, "repeat")  # about 40 s of speech
    assert await AvatarMaintenance(service).tick() == []
    assert vendor.running() == {old}
    assert not vendor.saw_stop(old)
    assert (await service.get("ada", session.id)).provider_session_id == old

    await vendor.advance(41)  # the utterance is over; the cap is 39 s away
    (renewal,) = await AvatarMaintenance(service).tick()
    assert renewal.old_provider_session_id == old
    assert vendor.saw_stop(old)
    assert vendor.running() == {renewal.new_provider_session_id}


async def test_without_a_spare_vendor_slot_renewal_keeps_the_old_session_and_tries_again(
    vendor: Vendor, service: AvatarService
) -> None:
    """A renewal runs two vendor sessions for a moment: keep sessions_total below the
    vendor's limit."""
    vendor.cap_sessions_at(CAP)
    vendor.limit_concurrency(1)
    session = (await service.start("ada", vendor.request)).session
    old = session.provider_session_id
    assert old is not None

    await vendor.advance(CAP - 80)
    assert await AvatarMaintenance(service).tick() == []  # the vendor refused the replacement
    assert vendor.running() == {old}
    assert (await service.get("ada", session.id)).provider_session_id == old

    vendor.limit_concurrency(2)
    await vendor.advance(10)
    (renewal,) = await AvatarMaintenance(service).tick()
    assert vendor.running() == {renewal.new_provider_session_id}


# =========================================================================== idle and closed


async def test_a_session_nobody_uses_is_stopped_at_the_vendor_despite_keep_alives(
    vendor: Vendor, make_service: Callable[..., AvatarService]
) -> None:
    service = make_service(policy=replace(POLICY, stop_idle_after=timedelta(minutes=2)))
    session = (await service.start("ada", vendor.request)).session
    sid = session.provider_session_id
    assert sid is not None

    await vendor.advance(60)
    await AvatarMaintenance(service).tick()
    assert vendor.keep_alives(sid) == 1  # kept alive at the vendor, but nobody uses it
    await vendor.advance(60)
    await AvatarMaintenance(service).tick()

    assert vendor.saw_stop(sid)
    assert vendor.running() == set()
    ended = await service.get("ada", session.id)
    assert ended.status == "stopped"
    assert ended.data["end_reason"] == "idle"
    assert ended.cost_seconds == 120


async def test_a_session_the_vendor_closed_on_its_own_is_ended_at_the_next_tick(
    vendor: Vendor, service: AvatarService
) -> None:
    session = (await service.start("ada", vendor.request)).session
    sid = session.provider_session_id
    assert sid is not None

    await vendor.advance(301)  # no keep-alive reached the vendor: its idle timeout closed it
    assert vendor.running() == set()
    await AvatarMaintenance(service).tick()

    ended = await service.get("ada", session.id)
    assert ended.status == "stopped"
    assert ended.data["end_reason"] == "closed_by_provider"
    assert not vendor.saw_stop(sid)  # nothing left to stop
    assert (await service.start("ada", vendor.request)).session.status == "active"


async def test_speaking_to_a_session_the_vendor_closed_is_a_conflict_that_ends_it(
    vendor: Vendor, service: AvatarService
) -> None:
    session = (await service.start("ada", vendor.request)).session
    await vendor.advance(301)

    with pytest.raises(ConflictError):
        await service.speak("ada", session.id, "Are you still there?", "repeat")
    ended = await service.get("ada", session.id)  # it no longer counts against the limits
    assert ended.status == "stopped"
    assert ended.data["end_reason"] == "closed_by_provider"
    assert (await service.start("ada", vendor.request)).session.status == "active"


# =========================================================================== after a crash


async def test_reconciliation_after_a_crash_stops_orphans_and_ends_lost_rows(
    vendor: Vendor, make_service: Callable[..., AvatarService]
) -> None:
    crashed = vendor.provider()
    before = make_service(crashed)
    kept = (await before.start("bob", vendor.request)).session
    lost = (await before.start("ada", vendor.request)).session
    orphan = await crashed.start_session(vendor.request)  # the crash came before the row
    assert kept.provider_session_id is not None
    assert lost.provider_session_id is not None
    await vendor.close_on_its_own(lost.provider_session_id)
    await crashed.close()  # the process is gone; its sessions run on at the vendor

    after = make_service()  # a restarted instance: a new provider that knows no session
    assert await AvatarMaintenance(after).reconcile() == (1, 1)

    assert vendor.saw_stop(orphan.provider_session_id)
    assert vendor.running() == {kept.provider_session_id}
    ended = await after.get("ada", lost.id)
    assert ended.status == "stopped"
    assert ended.data["end_reason"] == "lost"
    assert ended.ended_at == vendor.clock.now()
    # what the crashed instance left running stays usable from the restarted one
    assert (await after.get("bob", kept.id)).status == "active"
    await after.speak("bob", kept.id, "Welcome back.", "repeat")
    assert vendor.heard(kept.provider_session_id) == ["Welcome back."]
    assert await AvatarMaintenance(after).reconcile() == (0, 0)


# =========================================================================== refusals


async def test_the_vendor_concurrency_limit_is_rate_limited_and_the_failed_row_does_not_count(
    vendor: Vendor, service: AvatarService
) -> None:
    vendor.limit_concurrency(1)
    first = (await service.start("ada", vendor.request)).session

    with pytest.raises(RateLimitedError, match=r"(?i)concurrent"):
        await service.start("bob", vendor.request)

    (failed,) = await service.list_sessions("bob")
    assert failed.status == "failed"
    assert failed.ended_at is not None
    assert failed.cost_seconds == 0
    assert failed.data["end_reason"] == "start_failed"
    assert vendor.running() == {first.provider_session_id}
    vendor.limit_concurrency(2)
    # bob may run one session: the failed row is not counted against him
    assert (await service.start("bob", vendor.request)).session.status == "active"


@pytest.mark.parametrize("step", ["mint", "start"])
async def test_a_vendor_5xx_at_start_is_unavailable_and_leaves_nothing_running(
    vendor: Vendor, service: AvatarService, step: Step
) -> None:
    before = vendor.known()
    vendor.fail_next(step)

    with pytest.raises(UnavailableError):
        await service.start("ada", vendor.request)

    (failed,) = await service.list_sessions("ada")
    assert failed.status == "failed"
    assert failed.data["end_reason"] == "start_failed"
    assert vendor.running() == set()
    created = vendor.known() - before
    if step == "mint":
        assert created == set()
    else:  # the vendor created a session before it failed: it was stopped
        (minted,) = created
        assert vendor.saw_stop(minted)
    assert (await service.start("ada", vendor.request)).session.status == "active"


async def test_a_bad_api_key_is_an_upstream_error_naming_the_setting_never_the_key(
    vendor: Vendor, make_service: Callable[..., AvatarService]
) -> None:
    service = make_service(vendor.provider(api_key=WRONG_KEY))

    with pytest.raises(UpstreamError) as raised:
        await service.start("ada", vendor.request)

    message = raised.value.detail
    assert vendor.api_key_setting in message
    assert WRONG_KEY not in message
    assert vendor.fake.api_key not in message
    (failed,) = await service.list_sessions("ada")
    assert failed.status == "failed"
    assert vendor.known() == set()


# =========================================================================== known defects


async def test_a_session_stopped_while_a_tick_runs_is_not_renewed_behind_the_users_back(
    vendor: Vendor, service: AvatarService
) -> None:
    vendor.cap_sessions_at(CAP)
    ada = (await service.start("ada", vendor.request)).session
    await vendor.advance(1)
    bob = (await service.start("bob", vendor.request)).session
    await vendor.advance(CAP - 81)  # both within renew_before of their caps

    vendor.delay_next_start(0.5)  # ada's renewal waits for the vendor…
    starts = vendor.start_requests()
    tick = asyncio.create_task(AvatarMaintenance(service).tick())
    await until(lambda: vendor.start_requests() > starts)
    await service.stop("bob", bob.id)  # …while bob ends his session
    renewals = await tick

    assert (await service.get("bob", bob.id)).status == "stopped"
    # only ada's session runs at the vendor: nothing is left running (and billed) for bob
    (ada_renewal,) = [r for r in renewals if r.session_id == ada.id]
    assert vendor.running() == {ada_renewal.new_provider_session_id}


async def test_two_instances_ticking_at_once_renew_a_session_only_once(
    vendor: Vendor, make_service: Callable[..., AvatarService]
) -> None:
    vendor.cap_sessions_at(CAP)
    one, other = make_service(), make_service()  # two server processes, one registry
    session = (await one.start("ada", vendor.request)).session
    await vendor.advance(CAP - 80)

    await asyncio.gather(AvatarMaintenance(one).tick(), AvatarMaintenance(other).tick())

    renewed = await one.get("ada", session.id)
    assert vendor.running() == {renewed.provider_session_id}


async def test_an_instance_starting_up_leaves_another_instances_start_in_progress_alone(
    vendor: Vendor, make_service: Callable[..., AvatarService]
) -> None:
    running, restarted = make_service(), make_service()  # a rolling deploy: two processes
    vendor.delay_next_start(0.5)
    starts = vendor.start_requests()
    start = asyncio.create_task(running.start("ada", vendor.request))
    await until(lambda: vendor.start_requests() > starts)

    reconciled = await AvatarMaintenance(restarted).reconcile()
    (started,) = await asyncio.gather(start, return_exceptions=True)

    assert reconciled == (0, 0)
    assert not isinstance(started, BaseException), started
    assert (await running.get("ada", started.session.id)).status == "active"
    assert vendor.running() == {started.session.provider_session_id}


async def test_a_session_shorter_than_renew_before_is_not_replaced_at_every_tick(
    vendor: Vendor, service: AvatarService
) -> None:
    vendor.cap_sessions_at(60)  # as long as a LiveAvatar sandbox session
    await service.start("ada", vendor.request)

    await vendor.advance(10)  # the first maintenance pass with the default settings
    assert await AvatarMaintenance(service).tick() == []
