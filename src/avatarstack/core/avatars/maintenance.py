"""Tending the avatar sessions while they run, and after a crash.

One maintenance pass (:meth:`AvatarMaintenance.tick`, run periodically by the app and directly
by tests with a manual clock) keeps sessions alive while they are used, stops idle ones and
renews sessions before the vendor's duration cap (between utterances, so no sentence is cut);
:meth:`AvatarMaintenance.reconcile` brings the registry and the vendor back in line after a
crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from avatarstack.core.avatars.registry import ACTIVE, FAILED, STARTING, STOPPED, when
from avatarstack.core.avatars.service import AvatarService
from avatarstack.ports.avatar import LiveKitCredentials, SessionRequest
from avatarstack.ports.errors import AvatarstackError, ConflictError
from avatarstack.ports.storage import AvatarSession

log = structlog.get_logger("avatarstack.avatars")

#: how long an instance's claim to renew a session holds
RENEWAL_CLAIM = timedelta(minutes=2)
#: a start older than this that never became active is lost (its instance died)
STARTING_GRACE = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class Renewal:
    session_id: str
    old_provider_session_id: str
    new_provider_session_id: str
    livekit: LiveKitCredentials | None


class AvatarMaintenance:
    """Keep-alive, idle stop, renewal and reconciliation of the sessions ``avatars`` runs
    (its registry, vendor, clock and policy)."""

    def __init__(self, avatars: AvatarService) -> None:
        self._registry = avatars.registry
        self._provider = avatars.provider
        self._clock = avatars.clock
        self._policy = avatars.policy
        self._stats = avatars.stats

    async def tick(self) -> list[Renewal]:
        """One maintenance pass; returns the renewals it made (the new LiveKit credentials go
        to the owner's browser)."""
        now = self._clock.now()
        live = await self._registry.live()
        self._stats.open_sessions = len(live)
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
        if now - session.last_activity_at >= self._policy.stop_idle_after:
            if await self._registry.end(session.id, STOPPED, "idle", expect_provider_id=current):
                await self._provider.stop_quietly(current)
            return None
        if self._renewal_due(session, now):
            speaking_until = when(session.data.get("speaking_until"))
            if speaking_until is None or speaking_until <= now:  # between utterances
                renewal = await self._renew(session, now)
                if renewal is not None:
                    return renewal
        keep_alive_at = when(session.data.get("keep_alive_at")) or session.started_at
        if now - keep_alive_at >= self._keep_alive_every(session):
            try:
                await self._provider.keep_alive(current)
            except ConflictError:  # the vendor closed it (idle, cap, crash)
                await self._registry.end(
                    session.id, STOPPED, "closed_by_provider", expect_provider_id=current
                )
                return None
            await self._registry.change(
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
        margin = self._policy.renew_before
        duration = session.data.get("max_duration")
        if isinstance(duration, int | float) and duration > 0:
            margin = min(margin, timedelta(seconds=duration / 3))
        return session.expires_at - now <= margin

    def _keep_alive_every(self, session: AvatarSession) -> timedelta:
        """The configured cadence, but at least twice per vendor idle timeout."""
        idle = session.data.get("idle_timeout")
        if isinstance(idle, int | float) and idle > 0:
            return min(self._policy.keep_alive_every, timedelta(seconds=idle / 2))
        return self._policy.keep_alive_every

    async def _renew(self, session: AvatarSession, now: datetime) -> Renewal | None:
        """Start a replacement before the cap, point the registry at it, stop the old one.

        A claim in the row keeps two instances from renewing the same session at once; the
        switch is a compare-and-set, so a session stopped meanwhile gets its replacement
        stopped instead of left running."""
        old = session.provider_session_id
        assert old is not None
        claim = (now + RENEWAL_CLAIM).isoformat()
        claimed = await self._registry.change(
            session.id,
            expect_provider_id=old,
            unclaimed_at=now,
            data={"renewing_until": claim},
        )
        if claimed is None:
            return None
        request = SessionRequest.model_validate(session.data.get("request", {}))
        try:
            started = await self._provider.start_session(request)
        except BaseException:  # no spare slot, vendor down…: keep the old one, retry next tick
            await self._registry.change(
                session.id, expect_provider_id=old, data={"renewing_until": None}
            )
            raise
        expires = (
            now + timedelta(seconds=started.max_duration_seconds)
            if started.max_duration_seconds
            else None
        )
        renewals = int(session.data.get("renewals", 0)) + 1
        switched = await self._registry.change(
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
            await self._provider.stop_quietly(started.provider_session_id)
            return None
        await self._provider.stop_quietly(old)
        log.info("avatar_session_renewed", session_id=session.id, renewals=renewals)
        return Renewal(session.id, old, started.provider_session_id, started.livekit)

    async def reconcile(self) -> tuple[int, int]:
        """After a crash: stop vendor sessions the registry does not know as live, and end
        registry rows whose vendor session is gone. Returns (stopped, ended)."""
        now = self._clock.now()
        live = [s for s in await self._registry.live() if s.provider == self._provider.name]
        running = set(await self._provider.active_sessions())
        known = {s.provider_session_id for s in live if s.provider_session_id}
        # a start in progress (here or on another instance) has a vendor session the registry
        # does not name yet: while one is young, no unknown vendor session counts as an orphan
        young = any(s.status == STARTING and now - s.started_at < STARTING_GRACE for s in live)
        stopped = 0
        if not young:
            for orphan in sorted(running - known):
                await self._provider.stop_quietly(orphan)
                stopped += 1
        ended = 0
        for session in live:
            if session.status == STARTING:
                lost = now - session.started_at >= STARTING_GRACE and await self._registry.end(
                    session.id, FAILED, "lost", expect_status=STARTING
                )
            else:
                lost = session.provider_session_id not in running and await self._registry.end(
                    session.id, STOPPED, "lost", expect_provider_id=session.provider_session_id
                )
            ended += bool(lost)
        if stopped or ended:
            log.warning("avatar_sessions_reconciled", stopped=stopped, ended=ended)
        return stopped, ended
