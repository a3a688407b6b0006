"""An in-process command relay: the default CommandChannel.

LiveAvatar FULL sessions take speak/interrupt only on the LiveKit data channel. By default the
owner's browser, which is in the room anyway, carries them: the realtime WebSocket subscribes
to a session's commands here and forwards them to the page, which publishes them on the
``agent-control`` topic. With no subscriber the command cannot be delivered and the caller gets
a 503 telling the user to open the avatar view.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from avatarstack.ports.errors import UnavailableError


class CommandRelay:
    def __init__(self, *, queue_size: int = 100) -> None:
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._queue_size = queue_size

    def subscribe(self, provider_session_id: str) -> asyncio.Queue[dict[str, Any]]:
        """The queue a connection reads the session's commands from (one per session)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._queues[provider_session_id] = queue
        return queue

    def unsubscribe(self, provider_session_id: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        if self._queues.get(provider_session_id) is queue:
            del self._queues[provider_session_id]

    async def send(self, provider_session_id: str, command: Mapping[str, Any]) -> None:
        queue = self._queues.get(provider_session_id)
        if queue is None:
            raise UnavailableError(
                "the avatar's browser view is not connected; open it to control the avatar"
            )
        try:
            queue.put_nowait(dict(command))
        except asyncio.QueueFull as exc:
            raise UnavailableError("the avatar's browser view is not keeping up") from exc
