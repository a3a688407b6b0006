"""Fixed-window rate limits counted through the storage port, so all instances share them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import RateLimitedError
from avatarstack.ports.storage import Storage


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``hits`` per ``seconds`` for one key."""

    hits: int
    seconds: int


class RateLimiter:
    def __init__(self, storage: Storage, clock: Clock, *, enabled: bool = True) -> None:
        self._storage = storage
        self._clock = clock
        self.enabled = enabled

    async def check(self, scope: str, subject: str, limit: Limit) -> None:
        """Count one hit for ``(scope, subject)``; RateLimitedError past the limit.

        The subject (an IP address or an e-mail) is stored only as a hash.
        """
        if not self.enabled:
            return
        now = self._clock.now()
        epoch = int(now.timestamp())
        start = epoch - epoch % limit.seconds
        window = datetime.fromtimestamp(start, UTC)
        key = f"{scope}:{limit.seconds}:{hashlib.sha256(subject.encode()).hexdigest()[:32]}"
        async with self._storage.unit_of_work() as uow:
            hits = await uow.rate_limits.hit(key, window)
            await uow.commit()
        if hits > limit.hits:
            retry_after = (window + timedelta(seconds=limit.seconds) - now).total_seconds()
            raise RateLimitedError(
                "too many attempts; try again later", retry_after=max(retry_after, 1.0)
            )

    async def purge(self, older_than: timedelta = timedelta(days=1)) -> int:
        async with self._storage.unit_of_work() as uow:
            count = await uow.rate_limits.purge(self._clock.now() - older_than)
            await uow.commit()
        return count
