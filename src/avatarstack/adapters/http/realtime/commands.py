"""The avatar sessions whose commands one socket carries (``avatar.attach``).

The page of a socket that joined a LiveAvatar room publishes the session's commands on its data
channel: the command relay hands each command to a delivery function of the socket, which turns
it into an ``avatar.command`` frame."""

from __future__ import annotations

from typing import Any, Protocol

from avatarstack.adapters.http.realtime.hub import CommandRelay, Deliver, RealtimeHub
from avatarstack.adapters.http.realtime.protocol import frame
from avatarstack.core.avatars import LIVE
from avatarstack.ports.errors import ConflictError, UnavailableError


class Outbound(Protocol):
    """The socket side the deliveries use."""

    @property
    def accepting(self) -> bool:
        """False once the socket is closed or too slow."""
        ...

    def send(self, payload: dict[str, Any]) -> None: ...


class AttachedSessions:
    """Avatar session id → (provider session id, delivery function), for one socket."""

    def __init__(self, hub: RealtimeHub, socket: Outbound) -> None:
        self.hub = hub
        self.socket = socket
        self._attached: dict[str, tuple[str, Deliver]] = {}

    def _commands(self) -> CommandRelay:
        if self.hub.avatars is None or self.hub.commands is None:
            raise UnavailableError("this server relays no avatar commands")
        return self.hub.commands

    async def attach(self, user_id: str, session_id: str) -> None:
        """Carry the commands of the user's live session ``session_id`` from now on."""
        commands = self._commands()
        assert self.hub.avatars is not None
        session = await self.hub.avatars.get(user_id, session_id)
        if session.status not in LIVE or session.provider_session_id is None:
            raise ConflictError("the avatar session has ended")
        self.detach(session_id)
        deliver = self._deliverer(session_id, session.data.get("conversation_id"))
        commands.attach(session.provider_session_id, deliver)
        self._attached[session_id] = (session.provider_session_id, deliver)

    def detach(self, session_id: str) -> None:
        attached = self._attached.pop(session_id, None)
        if attached is not None and self.hub.commands is not None:
            self.hub.commands.detach(*attached)

    def detach_all(self) -> None:
        for session_id in list(self._attached):
            self.detach(session_id)

    def follow_renewal(self, credentials: dict[str, Any]) -> None:
        """A renewal replaced an attached session's room: carry the new one's commands (the
        page switches rooms between utterances)."""
        session_id = str(credentials.get("session_id"))
        new_provider_id = credentials.get("provider_session_id")
        attached = self._attached.get(session_id)
        if attached is None or not isinstance(new_provider_id, str) or self.hub.commands is None:
            return
        old_provider_id, deliver = attached
        if old_provider_id != new_provider_id:
            self.hub.commands.attach(new_provider_id, deliver)
            self.hub.commands.detach(old_provider_id, deliver)
            self._attached[session_id] = (new_provider_id, deliver)

    def _deliverer(self, session_id: str, conversation_id: object) -> Deliver:
        socket = self.socket

        def deliver(command: dict[str, Any]) -> bool:
            if not socket.accepting:
                return False
            socket.send(
                frame(
                    "avatar.command",
                    {"session_id": session_id, "topic": "agent-control", "command": command},
                    conversation_id=conversation_id if isinstance(conversation_id, str) else None,
                )
            )
            return socket.accepting

        return deliver
