"""A session's avatar events fanned out to any number of readers (shared by the providers)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from avatarstack.ports.avatar import AvatarEvent
from avatarstack.ports.errors import AvatarstackError

#: events one session keeps for readers that attach late
EVENTS_KEPT = 256


class AvatarEventLog:
    """Every reader gets the events from the oldest one kept, then follows live until ``closed``
    (or until :meth:`fail` ends all readers with an error)."""

    def __init__(self, kept: int = EVENTS_KEPT) -> None:
        self._events: deque[AvatarEvent] = deque(maxlen=kept)
        self._dropped = 0
        self._error: AvatarstackError | None = None
        self._changed = asyncio.Event()

    def append(self, event: AvatarEvent) -> None:
        if len(self._events) == self._events.maxlen:
            self._dropped += 1
        self._events.append(event)
        self._wake()

    def fail(self, error: AvatarstackError) -> None:
        """End every follower with ``error`` once it has read what is kept."""
        self._error = error
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def follow(self) -> AsyncIterator[AvatarEvent]:
        position = 0
        while True:
            position = max(position, self._dropped)
            while position < self._dropped + len(self._events):
                event = self._events[position - self._dropped]
                position += 1
                yield event
                if event.type == "closed":
                    return
            if self._error is not None:
                raise self._error
            await self._changed.wait()
