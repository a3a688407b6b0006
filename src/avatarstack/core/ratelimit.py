"""Fixed-window rate limits counted through the storage port, so all instances share them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import RateLimitedError
from avatarstack.ports.storage import IdentityStorage


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``hits`` per ``seconds`` for one key."""

    hits: int
    seconds: int


class RateLimiter:
    def __init__(self, storage: IdentityStorage, clock: Clock, *, enabled: bool = True) -> None:
        self._storage = storage
        self._clock = clock
        self.enabled = enabled

    def _window(self, scope: str, subject: str, limit: Limit) -> tuple[str, datetime, datetime]:
        now = self._clock.now()
        epoch = int(now.timestamp())
        start = epoch - epoch % limit.seconds
        key = f"{scope}:{limit.seconds}:{hashlib.sha256(subject.encode()).hexdigest()[:32]}"
        return key, datetime.fromtimestamp(start, UTC), now

    @staticmethod
    def _refuse(window: datetime, now: datetime, limit: Limit) -> RateLimitedError:
        retry_after = (window + timedelta(seconds=limit.seconds) - now).total_seconds()
        return RateLimitedError(
            "too many attempts; try again later", retry_after=max(retry_after, 1.0)
        )

    async def check(self, scope: str, subject: str, limit: Limit) -> None:
        """Count one hit for ``(scope, subject)``; RateLimitedError past the limit.

        The subject (an IP address or an e-mail) is stored only as a hash.
        """
        if not self.enabled:
            return
        key, window, now = self._window(scope, subject, limit)
        async with self._storage.unit_of_work() as uow:
            hits = await uow.rate_limits.hit(key, window)
            await uow.commit()
        if hits > limit.hits:
            raise self._refuse(window, now, limit)

    async def ensure_below(self, scope: str, subject: str, limit: Limit) -> None:
        """RateLimitedError when ``(scope, subject)`` has already used up ``limit`` in this
        window; counts nothing (for limits that count failures only)."""
        if not self.enabled:
            return
        key, window, now = self._window(scope, subject, limit)
        async with self._storage.unit_of_work() as uow:
            hits = await uow.rate_limits.count(key, window)
        if hits >= limit.hits:
            raise self._refuse(window, now, limit)

    async def count_failure(self, scope: str, subject: str, limit: Limit) -> None:
        """Count one failure for ``(scope, subject)`` (never raises; see ensure_below)."""
        if not self.enabled:
            return
        key, window, _now = self._window(scope, subject, limit)
        async with self._storage.unit_of_work() as uow:
            await uow.rate_limits.hit(key, window)
            await uow.commit()

    async def purge(self, older_than: timedelta = timedelta(days=1)) -> int:
        async with self._storage.unit_of_work() as uow:
            count = await uow.rate_limits.purge(self._clock.now() - older_than)
            await uow.commit()
        return count
