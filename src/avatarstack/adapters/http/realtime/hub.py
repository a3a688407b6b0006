"""The per-application realtime state: the services the sockets use and the signed-in
connections of each user on this instance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from avatarstack.adapters.http.metrics import RealtimeStats
from avatarstack.adapters.http.realtime.protocol import CLOSE_GOING_AWAY
from avatarstack.core.avatars import AvatarService
from avatarstack.core.conversations import ConversationService
from avatarstack.core.identity import IdentityService

if TYPE_CHECKING:
    from avatarstack.adapters.http.realtime.connection import Connection


@dataclass(frozen=True, slots=True)
class RealtimeConfig:
    heartbeat_seconds: float = 20.0
    auth_timeout_seconds: float = 10.0
    max_message_bytes: int = 64 * 1024
    connections_per_user: int = 10
    #: outbound frames queued per connection before it counts as too slow
    queue_size: int = 512
    #: client frames per second (sustained) and burst, per connection
    rate_per_second: float = 10.0
    rate_burst: int = 30
    #: how often the token (and its session) is checked again
    recheck_seconds: float = 30.0
    #: users' transcribed speech (LiveAvatar ``user.transcription``) becomes user messages
    voice_answers: bool = True


#: a socket's delivery of one avatar command: False when the socket cannot take it
Deliver = Callable[[dict[str, Any]], bool]


class CommandRelay(Protocol):
    """The avatar command relay's side for sockets (``adapters.broadcast.commands``)."""

    def attach(self, provider_session_id: str, deliver: Deliver) -> None: ...

    def detach(self, provider_session_id: str, deliver: Deliver) -> None: ...


@dataclass
class RealtimeHub:
    """Per-application state: the services and the connections of each user (this instance).

    ``avatars`` and ``commands`` serve ``avatar.attach``: the page of a socket that joined a
    LiveAvatar room carries the session's commands (``avatar.command``)."""

    conversations: ConversationService
    identity: IdentityService
    config: RealtimeConfig = field(default_factory=RealtimeConfig)
    by_user: dict[str, set[Connection]] = field(default_factory=dict)
    avatars: AvatarService | None = None
    commands: CommandRelay | None = None
    #: connections closed as slow consumers since start
    slow_consumers: int = 0

    def admit(self, connection: Connection, user_id: str) -> bool:
        mine = self.by_user.setdefault(user_id, set())
        if connection not in mine and len(mine) >= self.config.connections_per_user:
            return False
        mine.add(connection)
        return True

    def leave(self, connection: Connection, user_id: str | None) -> None:
        if user_id is None:
            return
        mine = self.by_user.get(user_id)
        if mine is not None:
            mine.discard(connection)
            if not mine:
                del self.by_user[user_id]

    @property
    def connections(self) -> int:
        return sum(len(c) for c in self.by_user.values())

    def stats(self) -> RealtimeStats:
        """Signed-in connections, the fullest outbox, slow consumers (for /metrics)."""
        outboxes = [c.outbox.qsize() for group in self.by_user.values() for c in group]
        return RealtimeStats(
            connections=len(outboxes),
            outbox_max=max(outboxes, default=0),
            outbox_capacity=self.config.queue_size,
            slow_consumers=self.slow_consumers,
        )

    async def close_all(self) -> None:
        for connection in [c for group in self.by_user.values() for c in group]:
            await connection.close(CLOSE_GOING_AWAY, "server shutting down")


REALTIME = web.AppKey("avatarstack_realtime", RealtimeHub)
