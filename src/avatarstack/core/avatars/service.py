"""Avatar sessions: who runs which paid vendor session, within which limits, and what is said
in it. Starting reserves a row against the limits before the vendor is called, so concurrent
starts (on any instance) cannot overshoot them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog

from avatarstack.core.avatars.registry import (
    ACTIVE,
    FAILED,
    LIVE,
    STARTING,
    STOPPED,
    SessionRegistry,
    when,
)
from avatarstack.core.avatars.vendor import AvatarStats, InstrumentedProvider
from avatarstack.core.speech import estimate_speech_seconds, split_for_speech
from avatarstack.ports.avatar import (
    AvatarEvent,
    AvatarInfo,
    AvatarProvider,
    LiveKitCredentials,
    SessionRequest,
    SpeakMode,
    VoiceInfo,
)
from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import ConflictError, NotFoundError, RateLimitedError
from avatarstack.ports.storage import AvatarSession, AvatarStorage, new_id

log = structlog.get_logger("avatarstack.avatars")

#: serialises starts (count, then reserve) across instances
STARTS_LOCK = "avatar-sessions:start"


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


@dataclass(frozen=True, slots=True)
class StartedSession:
    session: AvatarSession
    #: handed to the browser once; never stored
    livekit: LiveKitCredentials | None


class AvatarService:
    """The session use cases: start within the limits, speak, interrupt, stop, follow events."""

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
        self.provider = InstrumentedProvider(provider, self.stats)
        self.clock = clock
        self.policy = policy or AvatarPolicy()
        #: the rows, changed as compare-and-set (shared with the maintenance)
        self.registry = SessionRegistry(storage, clock, self.stats)

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
        now = self.clock.now()
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
            await self.registry.end(reserved.id, FAILED, "start_failed")
            raise
        expires = (
            now + timedelta(seconds=started.max_duration_seconds)
            if started.max_duration_seconds
            else None
        )
        try:
            session = await self.registry.change(
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
            await self.provider.stop_quietly(started.provider_session_id)
            raise
        if session is None:  # ended meanwhile (e.g. the user stopped it): nothing may run
            await self.provider.stop_quietly(started.provider_session_id)
            raise ConflictError("the avatar session was stopped while it was starting")
        log.info("avatar_session_started", session_id=session.id, provider=self.provider.name)
        return StartedSession(session=session, livekit=started.livekit)

    async def speak(self, owner_id: str, session_id: str, text: str, mode: SpeakMode) -> list[str]:
        """Say ``text`` (split into sentences within the vendor's limit); returns task ids."""
        session = await self._active(owner_id, session_id)
        chunks = split_for_speech(text, self.provider.max_text_length)
        assert session.provider_session_id is not None
        async with self.registry.closed_by_vendor(session):
            tasks = [
                await self.provider.speak(session.provider_session_id, chunk, mode)
                for chunk in chunks
            ]
        now = self.clock.now()
        busy_until = max(now, when(session.data.get("speaking_until")) or now) + timedelta(
            seconds=sum(estimate_speech_seconds(c) for c in chunks)
        )
        await self.registry.update(
            session.id,
            last_activity_at=now,
            data={"speaking_until": busy_until.isoformat()},
        )
        return tasks

    async def interrupt(self, owner_id: str, session_id: str) -> None:
        session = await self._active(owner_id, session_id)
        assert session.provider_session_id is not None
        async with self.registry.closed_by_vendor(session):
            await self.provider.interrupt(session.provider_session_id)
        now = self.clock.now()
        await self.registry.update(
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
        await self.registry.update(session.id, last_activity_at=self.clock.now())

    async def stop(self, owner_id: str, session_id: str) -> None:
        session = await self.get(owner_id, session_id)
        if session.status not in LIVE:
            return
        # end the row first: a renewal racing with this stop then sees it ended and stops its
        # replacement itself
        ended = await self.registry.end(session.id, STOPPED, "user")
        current = ended.provider_session_id if ended else session.provider_session_id
        if current:
            await self.provider.stop(current)

    async def events(self, owner_id: str, session_id: str) -> AsyncIterator[AvatarEvent]:
        """The session's normalised events (``avatar.speaking``/``avatar.idle`` for the realtime
        connection). After a renewal the stream continues with the replacement session; it
        ends when the session does. A replaced session that was still speaking (an utterance
        the vendor reported, longer than our estimate) ends with ``idle``: it says nothing more,
        and a page waiting for the end of the utterance to switch rooms can go on."""
        followed: str | None = None
        while True:
            session = await self.get(owner_id, session_id)
            current = session.provider_session_id
            if session.status not in LIVE or current is None or current == followed:
                return
            followed = current
            speaking: AvatarEvent | None = None
            async for event in self.provider.events(current):
                if event.type == "closed":
                    renewed = await self.get(owner_id, session_id)
                    if renewed.status in LIVE and renewed.provider_session_id != current:
                        if speaking is not None:
                            yield AvatarEvent(
                                type="idle",
                                provider_session_id=current,
                                task_id=speaking.task_id,
                                at=event.at,
                            )
                        break  # replaced by a renewal: follow the new session
                speaking = event if event.type == "speaking" else None
                yield event

    # ------------------------------------------------------------------ helpers

    async def _active(self, owner_id: str, session_id: str) -> AvatarSession:
        session = await self.get(owner_id, session_id)
        if session.status != ACTIVE or not session.provider_session_id:
            raise ConflictError(f"the avatar session is {session.status}, not active")
        return session
