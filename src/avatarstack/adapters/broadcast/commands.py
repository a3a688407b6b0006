"""The avatar command relay: a :class:`~avatarstack.ports.avatar.CommandChannel` over the
:class:`~avatarstack.ports.broadcast.Broadcaster`.

LiveAvatar FULL sessions take speak and interrupt only on their LiveKit room's data channel
(topic ``agent-control``), which only a participant of the room reaches: the owner's browser.
A realtime socket whose page has joined the room *attaches* here for the session
(``avatar.attach``); a command for the session then goes

* to the socket attached on this instance, when there is one (the most recent attachment: one
  page publishes, so two tabs never say a sentence twice), without any round trip;
* otherwise, through the broadcaster, to the instance that holds an attached socket: it hands
  the command to that socket and acknowledges on the sender's reply topic. No acknowledgement
  within ``ack_timeout`` seconds means no browser of the owner is in the room, and the sender
  gets :class:`~avatarstack.ports.errors.NoAvatarViewError` (409).

Commands are never stored: a command that finds no browser is not replayed later (an answer
sentence spoken minutes late would be wrong). If sockets on two instances are attached to one
session (two tabs on two instances), both receive a remote command.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from avatarstack.ports.broadcast import Broadcaster, Subscription
from avatarstack.ports.errors import AvatarstackError, NoAvatarViewError

log = structlog.get_logger("avatarstack.avatars.commands")

#: a socket's delivery function: queues the command for the page, False when it cannot
Deliver = Callable[[dict[str, Any]], bool]

NO_VIEW = (
    "no browser of the session's owner is connected to the avatar: open the conversation's "
    "avatar panel (it joins the avatar's room and carries its commands)"
)


def command_topic(provider_session_id: str) -> str:
    return f"avatar-commands:{provider_session_id}"


class BroadcastCommandRelay:
    """See the module docstring. ``ack_timeout``: seconds a remote delivery may take.
    ``remote=False`` (a single instance: the in-process broadcaster) fails at once when no
    local socket is attached instead of waiting for an acknowledgement nobody can send."""

    def __init__(
        self, broadcaster: Broadcaster, *, ack_timeout: float = 2.0, remote: bool = True
    ) -> None:
        self._broadcaster = broadcaster
        self.ack_timeout = ack_timeout
        self.remote = remote
        self._reply_topic = f"avatar-acks:{uuid.uuid4()}"
        #: per provider session: the attached sockets, most recent last
        self._local: dict[str, list[Deliver]] = {}
        self._listeners: dict[str, asyncio.Task[None]] = {}
        self._acks: dict[str, asyncio.Future[None]] = {}
        self._ack_listener: asyncio.Task[None] | None = None
        self._closed = False

    # ------------------------------------------------------------------ the sockets' side

    def attach(self, provider_session_id: str, deliver: Deliver) -> None:
        """``deliver`` carries the session's commands from now on (until :meth:`detach`)."""
        attached = self._local.setdefault(provider_session_id, [])
        attached[:] = [d for d in attached if d is not deliver]
        attached.append(deliver)
        if self.remote and provider_session_id not in self._listeners and not self._closed:
            subscription = self._broadcaster.subscribe(command_topic(provider_session_id))
            self._listeners[provider_session_id] = asyncio.create_task(
                self._serve_remote(provider_session_id, subscription),
                name=f"avatar-commands-{provider_session_id}",
            )

    def detach(self, provider_session_id: str, deliver: Deliver) -> None:
        attached = self._local.get(provider_session_id)
        if attached is None or not any(d is deliver for d in attached):
            return
        attached[:] = [d for d in attached if d is not deliver]
        if not attached:
            del self._local[provider_session_id]
            listener = self._listeners.pop(provider_session_id, None)
            if listener is not None:
                listener.cancel()

    def attached(self, provider_session_id: str) -> bool:
        """A socket of this instance carries the session's commands."""
        return bool(self._local.get(provider_session_id))

    def _deliver_here(self, provider_session_id: str, command: dict[str, Any]) -> bool:
        for deliver in reversed(self._local.get(provider_session_id, [])):
            if deliver(command):
                return True
        return False

    async def _serve_remote(self, provider_session_id: str, subscription: Subscription) -> None:
        """Commands other instances publish for a session attached here: deliver, then ack."""
        async with subscription:
            async for notice in subscription:
                command = notice.payload.get("command")
                reply = notice.payload.get("reply")
                command_id = notice.payload.get("id")
                if not isinstance(command, dict) or not isinstance(reply, str):
                    continue
                if self._deliver_here(provider_session_id, command):
                    with contextlib.suppress(AvatarstackError):
                        await self._broadcaster.publish(reply, {"ack": command_id})

    # ------------------------------------------------------------------ the sender's side

    async def send(self, provider_session_id: str, command: Mapping[str, Any]) -> None:
        """Deliver one command to the session's browser, here or on another instance;
        NoAvatarViewError when no browser acknowledges it in time."""
        payload = dict(command)
        if self._deliver_here(provider_session_id, payload):
            return
        if self._closed or not self.remote:
            raise NoAvatarViewError(NO_VIEW)
        self._listen_for_acks()
        command_id = str(uuid.uuid4())
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[command_id] = acked
        try:
            await self._broadcaster.publish(
                command_topic(provider_session_id),
                {"command": payload, "id": command_id, "reply": self._reply_topic},
            )
            async with asyncio.timeout(self.ack_timeout):
                await acked
        except TimeoutError:
            raise NoAvatarViewError(NO_VIEW) from None
        finally:
            self._acks.pop(command_id, None)

    def _listen_for_acks(self) -> None:
        if self._ack_listener is not None:
            return
        subscription = self._broadcaster.subscribe(self._reply_topic)

        async def listen() -> None:
            async with subscription:
                async for notice in subscription:
                    waiting = self._acks.get(str(notice.payload.get("ack")))
                    if waiting is not None and not waiting.done():
                        waiting.set_result(None)

        self._ack_listener = asyncio.create_task(listen(), name="avatar-command-acks")

    async def close(self) -> None:
        """Stop serving other instances; local sockets stay attached until they detach."""
        self._closed = True
        tasks = [*self._listeners.values(), *([self._ack_listener] if self._ack_listener else [])]
        self._listeners.clear()
        self._ack_listener = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
