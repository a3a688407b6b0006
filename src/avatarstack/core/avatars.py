"""Avatar sessions: who runs which paid vendor session, within which limits, for how long.

The registry lives in storage (``avatar_sessions``), so limits hold across instances and a
restarted instance finds what it left running. One maintenance pass (:meth:`AvatarService.tick`,
run periodically by the app and directly by tests with a manual clock) keeps sessions alive
while they are used, stops idle ones, renews sessions before the vendor's duration cap (between
utterances, so no sentence is cut) and reconciles the registry with the vendor after a crash.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog

from avatarstack.core.speech import estimate_speech_seconds, split_for_speech
from avatarstack.ports.avatar import (
    AvatarEvent,
    AvatarInfo,
    AvatarProvider,
    LiveKitCredentials,
    ProviderSession,
    SessionRequest,
    SpeakMode,
    VoiceInfo,
)
from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import (
    AvatarstackError,
    ConflictError,
    NoAvatarViewError,
    NotFoundError,
    RateLimitedError,
)
from avatarstack.ports.storage import AvatarSession, AvatarStorage, AvatarUnitOfWork, new_id

log = structlog.get_logger("avatarstack.avatars")
T = TypeVar("T")

STARTING = "starting"
ACTIVE = "active"
STOPPED = "stopped"
FAILED = "failed"
LIVE = (STARTING, ACTIVE)
#: serialises starts (count, then reserve) across instances
STARTS_LOCK = "avatar-sessions:start"
#: how long an instance's claim to renew a session holds
RENEWAL_CLAIM = timedelta(minutes=2)
#: a start older than this that never became active is lost (its instance died)
STARTING_GRACE = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class AvatarPolicy:
    #: sessions one user may run at once
    per_user: int = 1
    #: sessions the whole deployment may run at once (keep it below the vendor account's limit)
    total: int = 3
    #: keep-alive cadence while a session is in use (vendors close idle sessions after 2 to 5 min)
    keep_alive_every: timedelta = timedelta(seconds=60)
    #: a session nobody used for this long is stopped (it costs money while it runs)
    stop_idle_after: timedelta = timedelta(minutes=5)
    #: renew this long before the vendor's duration cap
    renew_before: timedelta = timedelta(seconds=90)


#: histogram buckets (seconds) for vendor call latency
CALL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class CallStats:
    count: int = 0
    seconds: float = 0.0
    #: per-bucket counts (last = +Inf), same order as CALL_BUCKETS
    buckets: list[int] = field(default_factory=lambda: [0] * (len(CALL_BUCKETS) + 1))
    #: outcome ("ok" or an error code) -> count
    outcomes: dict[str, int] = field(default_factory=dict)


@dataclass
class AvatarStats:
    """Figures for metrics, kept in plain numbers (the event loop is one thread)."""

    provider: str
    #: live sessions in the registry (all instances), refreshed by every tick
    open_sessions: int = 0
    #: vendor session seconds of sessions ended by this instance
    session_seconds: float = 0.0
    calls: dict[str, CallStats] = field(default_factory=dict)

    def record(self, call: str, seconds: float, outcome: str) -> None:
        stats = self.calls.setdefault(call, CallStats())
        stats.count += 1
        stats.seconds += seconds
        stats.buckets[bisect.bisect_left(CALL_BUCKETS, seconds)] += 1
        stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + 1


class InstrumentedProvider:
    """Wraps a provider: times every vendor call and counts outcomes by error code."""

    def __init__(self, provider: AvatarProvider, stats: AvatarStats) -> None:
        self._provider = provider
        self._stats = stats
        self.name = provider.name
        self.max_text_length = provider.max_text_length

    async def _timed(self, call: str, work: Awaitable[T]) -> T:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await work
        except AvatarstackError as exc:
            outcome = exc.code
            raise
        except BaseException:
            outcome = "error"
            raise
        finally:
            self._stats.record(call, time.perf_counter() - started, outcome)

    async def list_avatars(self) -> Sequence[AvatarInfo]:
        return await self._timed("list_avatars", self._provider.list_avatars())

    async def list_voices(self) -> Sequence[VoiceInfo]:
        # a vendor plugin written before voices were part of the port offers no choice
        if getattr(self._provider, "list_voices", None) is None:
            return []
        return await self._timed("list_voices", self._provider.list_voices())

    async def list_languages(self) -> Sequence[str]:
        if getattr(self._provider, "list_languages", None) is None:
            return []
        return await self._timed("list_languages", self._provider.list_languages())

    async def start_session(self, request: SessionRequest) -> ProviderSession:
        return await self._timed("start_session", self._provider.start_session(request))

    async def speak(self, provider_session_id: str, text: str, mode: SpeakMode) -> str:
        return await self._timed("speak", self._provider.speak(provider_session_id, text, mode))

    async def interrupt(self, provider_session_id: str) -> None:
        await self._timed("interrupt", self._provider.interrupt(provider_session_id))

    async def keep_alive(self, provider_session_id: str) -> None:
        await self._timed("keep_alive", self._provider.keep_alive(provider_session_id))

    async def stop(self, provider_session_id: str) -> None:
        await self._timed("stop", self._provider.stop(provider_session_id))

    async def active_sessions(self) -> Sequence[str]:
        return await self._timed("active_sessions", self._provider.active_sessions())

    def events(self, provider_session_id: str) -> AsyncIterator[AvatarEvent]:
        return self._provider.events(provider_session_id)

    def feed(self, provider_session_id: str, vendor_event: Mapping[str, Any]) -> None:
        feed = getattr(self._provider, "feed", None)
        if feed is not None:
            feed(provider_session_id, vendor_event)

    async def close(self) -> None:
        await self._provider.close()


@dataclass(frozen=True, slots=True)
class StartedSession:
    session: AvatarSession
    #: handed to the browser once; never stored
    livekit: LiveKitCredentials | None


@dataclass(frozen=True, slots=True)
class Renewal:
    session_id: str
    old_provider_session_id: str
    new_provider_session_id: str
    livekit: LiveKitCredentials | None


class AvatarService:
    def __init__(
        self,
        *,
        storage: AvatarStorage,
        provider: AvatarProvider,
        clock: Clock,
        policy: AvatarPolicy | None = None,
    ) -> None:
        self._storage = storage
        self.stats = AvatarStats(provider=provider.name)
        self.provider: AvatarProvider = InstrumentedProvider(provider, self.stats)
        self._clock = clock
        self.policy = policy or AvatarPolicy()

    # ------------------------------------------------------------------ queries

    async def list_avatars(self) -> Sequence[AvatarInfo]:
        return await self.provider.list_avatars()

    async def list_voices(self) -> tuple[Sequence[VoiceInfo], Sequence[str]]:
        """The provider's voices and the language codes it accepts."""
        return await self.provider.list_voices(), await self.provider.list_languages()

    async def list_sessions(
        self, owner_id: str, *, active_only: bool = False
    ) -> list[AvatarSession]:
        async with self._storage.unit_of_work() as uow:
            return list(await uow.avatar_sessions.list_for_owner(owner_id, active_only=active_only))

    async def get(self, owner_id: str, session_id: str) -> AvatarSession:
        async with self._storage.unit_of_work() as uow:
            session = await uow.avatar_sessions.get(session_id)
        if session is None or session.owner_id != owner_id:
            raise NotFoundError("no such avatar session")
        return session

    # ------------------------------------------------------------------ lifecycle

    async def start(
        self,
        owner_id: str,
        request: SessionRequest,
        *,
        data: Mapping[str, Any] | None = None,
    ) -> StartedSession:
        """Reserve a slot in the registry, then start at the vendor. The reservation counts
        against the limits at once, so concurrent starts cannot overshoot them. ``data`` is
        kept on the session row (e.g. the conversation it belongs to)."""
        now = self._clock.now()
        reserved = AvatarSession(
            id=new_id(),
            owner_id=owner_id,
            provider=self.provider.name,
            status=STARTING,
            started_at=now,
            last_activity_at=now,
            data={**(data or {}), "request": request.model_dump(exclude_none=True)},
        )
        async with self._storage.unit_of_work() as uow:
            await uow.lock(STARTS_LOCK)  # count-then-insert must not interleave across instances
            mine = await uow.avatar_sessions.list_for_owner(owner_id, active_only=True)
            if len(mine) >= self.policy.per_user:
                raise RateLimitedError(
                    f"you already have {len(mine)} avatar session(s) running; stop one first",
                    retry_after=5,
                )
            if len(await uow.avatar_sessions.list_active()) >= self.policy.total:
                raise RateLimitedError(
                    "all avatar sessions are in use; try again in a minute", retry_after=30
                )
            await uow.avatar_sessions.add(reserved)
            await uow.commit()
        self.stats.open_sessions += 1
        try:
            started = await self.provider.start_session(request)
        except BaseException:
            await self._end(reserved.id, FAILED, "start_failed")
            raise
        expires = (
            now + timedelta(seconds=started.max_duration_seconds)
            if started.max_duration_seconds
            else None
        )
        try:
            session = await self._change(
                reserved.id,
                expect_status=STARTING,
                status=ACTIVE,
                provider_session_id=started.provider_session_id,
                expires_at=expires,
                data={
                    "keep_alive_at": now.isoformat(),
                    "idle_timeout": started.idle_timeout_seconds,
                    "max_duration": started.max_duration_seconds,
                },
            )
        except BaseException:
            await self._stop_quietly(started.provider_session_id)
            raise
        if session is None:  # ended meanwhile (e.g. the user stopped it): nothing may run
            await self._stop_quietly(started.provider_session_id)
            raise ConflictError("the avatar session was stopped while it was starting")
        log.info("avatar_session_started", session_id=session.id, provider=self.provider.name)
        return StartedSession(session=session, livekit=started.livekit)

    async def speak(self, owner_id: str, session_id: str, text: str, mode: SpeakMode) -> list[str]:
        """Say ``text`` (split into sentences within the vendor's limit); returns task ids."""
        session = await self._active(owner_id, session_id)
        chunks = split_for_speech(text, self.provider.max_text_length)
        assert session.provider_session_id is not None
        async with self._closed_by_vendor(session):
            tasks = [
                await self.provider.speak(session.provider_session_id, chunk, mode)
                for chunk in chunks
            ]
        now = self._clock.now()
        busy_until = max(now, _when(session.data.get("speaking_until")) or now) + timedelta(
            seconds=sum(estimate_speech_seconds(c) for c in chunks)
        )
        await self._update(
            session.id,
            last_activity_at=now,
            data={"speaking_until": busy_until.isoformat()},
        )
        return tasks

    async def interrupt(self, owner_id: str, session_id: str) -> None:
        session = await self._active(owner_id, session_id)
        assert session.provider_session_id is not None
        async with self._closed_by_vendor(session):
            await self.provider.interrupt(session.provider_session_id)
        now = self._clock.now()
        await self._update(
            session.id, last_activity_at=now, data={"speaking_until": now.isoformat()}
        )

    async def feed(self, owner_id: str, session_id: str, vendor_event: Mapping[str, Any]) -> None:
        """Hand the provider one event its session reported through the owner's browser (a
        LiveAvatar ``agent-response`` event); providers that take none ignore it."""
        session = await self.get(owner_id, session_id)
        feed = getattr(self.provider, "feed", None)
        if feed is not None and session.status in LIVE and session.provider_session_id:
            feed(session.provider_session_id, vendor_event)

    async def touch(self, owner_id: str, session_id: str) -> None:
        """Chat activity in the conversation that uses this session: it is still wanted."""
        session = await self._active(owner_id, session_id)
        await self._update(session.id, last_activity_at=self._clock.now())

    async def stop(self, owner_id: str, session_id: str) -> None:
        session = await self.get(owner_id, session_id)
        if session.status not in LIVE:
            return
        # end the row first: a renewal racing with this stop then sees it ended and stops its
        # replacement itself
        ended = await self._end(session.id, STOPPED, "user")
        current = ended.provider_session_id if ended else session.provider_session_id
        if current:
            await self.provider.stop(current)

    async def events(self, owner_id: str, session_id: str) -> AsyncIterator[AvatarEvent]:
        """The session's normalised events (``avatar.speaking``/``avatar.idle`` for the realtime
        connection). After a renewal the stream continues with the replacement session; it
        ends when the session does."""
        followed: str | None = None
        while True:
            session = await self.get(owner_id, session_id)
            current = session.provider_session_id
            if session.status not in LIVE or current is None or current == followed:
                return
            followed = current
            async for event in self.provider.events(current):
                if event.type == "closed":
                    renewed = await self.get(owner_id, session_id)
                    if renewed.status in LIVE and renewed.provider_session_id != current:
                        break  # replaced by a renewal: follow the new session
                yield event

    # ------------------------------------------------------------------ maintenance

    async def tick(self) -> list[Renewal]:
        """One maintenance pass; returns the renewals it made (the new LiveKit credentials go
        to the owner's browser)."""
        now = self._clock.now()
        async with self._storage.unit_of_work() as uow:
            live = await uow.avatar_sessions.list_active()
        self.stats.open_sessions = len(live)
        sessions = [s for s in live if s.status == ACTIVE]
        renewals: list[Renewal] = []
        for session in sessions:
            try:
                renewal = await self._maintain(session, now)
            except AvatarstackError as exc:
                log.warning("avatar_maintenance_failed", session_id=session.id, error=exc.code)
                continue
            if renewal is not None:
                renewals.append(renewal)
        return renewals

    async def _maintain(self, session: AvatarSession, now: datetime) -> Renewal | None:
        current = session.provider_session_id
        assert current is not None
        if now - session.last_activity_at >= self.policy.stop_idle_after:
            if await self._end(session.id, STOPPED, "idle", expect_provider_id=current):
                await self._stop_quietly(current)
            return None
        if self._renewal_due(session, now):
            speaking_until = _when(session.data.get("speaking_until"))
            if speaking_until is None or speaking_until <= now:  # between utterances
                renewal = await self._renew(session, now)
                if renewal is not None:
                    return renewal
        keep_alive_at = _when(session.data.get("keep_alive_at")) or session.started_at
        if now - keep_alive_at >= self._keep_alive_every(session):
            try:
                await self.provider.keep_alive(current)
            except ConflictError:  # the vendor closed it (idle, cap, crash)
                await self._end(
                    session.id, STOPPED, "closed_by_provider", expect_provider_id=current
                )
                return None
            await self._change(
                session.id,
                expect_provider_id=current,
                data={"keep_alive_at": now.isoformat()},
            )
        return None

    def _renewal_due(self, session: AvatarSession, now: datetime) -> bool:
        """Within the renewal margin of the cap. The margin is at most a third of the vendor's
        session length, so short sessions (a 60 s sandbox) are not replaced at every tick."""
        if session.expires_at is None:
            return False
        margin = self.policy.renew_before
        duration = session.data.get("max_duration")
        if isinstance(duration, int | float) and duration > 0:
            margin = min(margin, timedelta(seconds=duration / 3))
        return session.expires_at - now <= margin

    def _keep_alive_every(self, session: AvatarSession) -> timedelta:
        """The configured cadence, but at least twice per vendor idle timeout."""
        idle = session.data.get("idle_timeout")
        if isinstance(idle, int | float) and idle > 0:
            return min(self.policy.keep_alive_every, timedelta(seconds=idle / 2))
        return self.policy.keep_alive_every

    async def _renew(self, session: AvatarSession, now: datetime) -> Renewal | None:
        """Start a replacement before the cap, point the registry at it, stop the old one.

        A claim in the row keeps two instances from renewing the same session at once; the
        switch is a compare-and-set, so a session stopped meanwhile gets its replacement
        stopped instead of left running."""
        old = session.provider_session_id
        assert old is not None
        claim = (now + RENEWAL_CLAIM).isoformat()
        claimed = await self._change(
            session.id,
            expect_provider_id=old,
            unclaimed_at=now,
            data={"renewing_until": claim},
        )
        if claimed is None:
            return None
        request = SessionRequest.model_validate(session.data.get("request", {}))
        try:
            started = await self.provider.start_session(request)
        except BaseException:  # no spare slot, vendor down…: keep the old one, retry next tick
            await self._change(session.id, expect_provider_id=old, data={"renewing_until": None})
            raise
        expires = (
            now + timedelta(seconds=started.max_duration_seconds)
            if started.max_duration_seconds
            else None
        )
        renewals = int(session.data.get("renewals", 0)) + 1
        switched = await self._change(
            session.id,
            expect_provider_id=old,
            provider_session_id=started.provider_session_id,
            expires_at=expires,
            data={
                "keep_alive_at": now.isoformat(),
                "renewals": renewals,
                "renewing_until": None,
                "idle_timeout": started.idle_timeout_seconds,
                "max_duration": started.max_duration_seconds,
            },
        )
        if switched is None:  # stopped (or renewed elsewhere) meanwhile
            await self._stop_quietly(started.provider_session_id)
            return None
        await self._stop_quietly(old)
        log.info("avatar_session_renewed", session_id=session.id, renewals=renewals)
        return Renewal(session.id, old, started.provider_session_id, started.livekit)

    async def reconcile(self) -> tuple[int, int]:
        """After a crash: stop vendor sessions the registry does not know as live, and end
        registry rows whose vendor session is gone. Returns (stopped, ended)."""
        now = self._clock.now()
        async with self._storage.unit_of_work() as uow:
            live = [
                s
                for s in await uow.avatar_sessions.list_active()
                if s.provider == self.provider.name
            ]
        running = set(await self.provider.active_sessions())
        known = {s.provider_session_id for s in live if s.provider_session_id}
        # a start in progress (here or on another instance) has a vendor session the registry
        # does not name yet: while one is young, no unknown vendor session counts as an orphan
        young = any(s.status == STARTING and now - s.started_at < STARTING_GRACE for s in live)
        stopped = 0
        if not young:
            for orphan in sorted(running - known):
                await self._stop_quietly(orphan)
                stopped += 1
        ended = 0
        for session in live:
            if session.status == STARTING:
                lost = now - session.started_at >= STARTING_GRACE and await self._end(
                    session.id, FAILED, "lost", expect_status=STARTING
                )
            else:
                lost = session.provider_session_id not in running and await self._end(
                    session.id, STOPPED, "lost", expect_provider_id=session.provider_session_id
                )
            ended += bool(lost)
        if stopped or ended:
            log.warning("avatar_sessions_reconciled", stopped=stopped, ended=ended)
        return stopped, ended

    # ------------------------------------------------------------------ helpers

    async def _active(self, owner_id: str, session_id: str) -> AvatarSession:
        session = await self.get(owner_id, session_id)
        if session.status != ACTIVE or not session.provider_session_id:
            raise ConflictError(f"the avatar session is {session.status}, not active")
        return session

    async def _change(
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
                claim = _when(current.data.get("renewing_until"))
                if claim is not None and claim > unclaimed_at:
                    return None
            update = dict(fields)
            if data:
                update["data"] = {**current.data, **data}
            changed = current.model_copy(update=update)
            await uow.avatar_sessions.update(changed)
            await uow.commit()
        return changed

    async def _update(self, session_id: str, **changes: Any) -> None:
        """Activity bookkeeping on a live session (ignored once it has ended)."""
        await self._change(session_id, expect_status=None, **changes)

    async def _end(
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
        self.stats.session_seconds += max(cost, 0.0)
        self.stats.open_sessions = max(self.stats.open_sessions - 1, 0)
        log.info("avatar_session_ended", session_id=session_id, status=status, reason=reason)
        return current

    @asynccontextmanager
    async def _closed_by_vendor(self, session: AvatarSession) -> AsyncIterator[None]:
        """A ConflictError from the vendor means it closed the session: end the row too, so it
        stops counting against the limits."""
        try:
            yield
        except NoAvatarViewError:
            raise  # the session runs; only no browser carries its commands now
        except ConflictError:
            await self._end(
                session.id,
                STOPPED,
                "closed_by_provider",
                expect_provider_id=session.provider_session_id,
            )
            raise

    async def _stop_quietly(self, provider_session_id: str) -> None:
        try:
            await self.provider.stop(provider_session_id)
        except AvatarstackError as exc:
            log.warning("avatar_stop_failed", error=exc.code)


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


def _when(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None
