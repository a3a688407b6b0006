"""The handlers of the client frames of the realtime protocol v1 (docs/realtime.md), and
:data:`HANDLERS`, the table a :class:`Connection` dispatches each frame's ``type`` through. A
type that is not in the table is answered with an ``unknown-type`` error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from avatarstack.adapters.http.realtime.protocol import (
    PROTOCOL_VERSION,
    AuthData,
    AvatarEventData,
    AvatarSessionData,
    Envelope,
    MessageData,
    OpenData,
    StartData,
    frame,
)
from avatarstack.core.conversations import check_after_seq
from avatarstack.ports.avatar import SessionRequest
from avatarstack.ports.errors import InvalidInputError

if TYPE_CHECKING:
    from avatarstack.adapters.http.realtime.connection import Connection

#: a handler of one client frame type
Handler = Callable[["Connection", Envelope], Awaitable[None]]


def _user(conn: Connection) -> str:
    assert conn.principal is not None
    return conn.principal.user.id


def _need_conversation(conn: Connection) -> str:
    if conn.conversation_id is None:
        raise InvalidInputError("open a conversation first (conversation.open)")
    return conn.conversation_id


async def on_auth(conn: Connection, envelope: Envelope) -> None:
    await conn.authenticate(AuthData.model_validate(envelope.data).token)
    conn.send(
        frame(
            "ready",
            {"protocol": PROTOCOL_VERSION, "user_id": _user(conn)},
            reply_to=envelope.id,
        )
    )


async def on_ping(conn: Connection, envelope: Envelope) -> None:
    conn.send(frame("pong", reply_to=envelope.id))


async def on_conversation_open(conn: Connection, envelope: Envelope) -> None:
    data = OpenData.model_validate(envelope.data)
    conversation = await conn.hub.conversations.log.open(_user(conn), data.conversation_id)
    after = data.after_seq or 0
    check_after_seq(after, conversation.last_seq)
    conn.conversation_id = conversation.id
    conn.last_seq = after
    conn.opened += 1
    await conn.follow(conversation.id)  # subscribe first, then catch up: no gap
    conn.send(
        frame(
            "conversation.opened",
            {"last_seq": conversation.last_seq, "after_seq": after},
            conversation_id=conversation.id,
            reply_to=envelope.id,
        )
    )
    conn.wake.set()


async def on_user_message(conn: Connection, envelope: Envelope) -> None:
    data = MessageData.model_validate(envelope.data)
    conversation_id = _need_conversation(conn)
    await conn.hub.conversations.log.post_message(
        _user(conn), conversation_id, data.client_id, data.text
    )
    conn.wake.set()


async def on_avatar_start(conn: Connection, envelope: Envelope) -> None:
    data = StartData.model_validate(envelope.data)
    conversation_id = _need_conversation(conn)
    event, livekit = await conn.hub.conversations.avatar.start(
        _user(conn), conversation_id, SessionRequest(**data.model_dump())
    )
    if livekit is not None:
        # the browser's credentials go to this socket only; they are never stored
        conn.send(
            frame(
                "avatar.credentials",
                {"session_id": event.data.get("session_id"), "livekit": livekit},
                conversation_id=conversation_id,
                reply_to=envelope.id,
            )
        )
    conn.wake.set()


async def on_avatar_interrupt(conn: Connection, envelope: Envelope) -> None:
    await conn.hub.conversations.answers.interrupt(_user(conn), _need_conversation(conn))
    conn.wake.set()


async def on_avatar_stop(conn: Connection, envelope: Envelope) -> None:
    await conn.hub.conversations.avatar.stop(_user(conn), _need_conversation(conn))
    conn.wake.set()


async def on_avatar_attach(conn: Connection, envelope: Envelope) -> None:
    """This socket's page joined the session's LiveKit room and will publish the
    session's commands (``avatar.command``) on its data channel."""
    data = AvatarSessionData.model_validate(envelope.data)
    await conn.attached.attach(_user(conn), data.session_id)
    conn.send(
        frame(
            "avatar.attached",
            {"session_id": data.session_id},
            conversation_id=conn.conversation_id,
            reply_to=envelope.id,
        )
    )


async def on_avatar_detach(conn: Connection, envelope: Envelope) -> None:
    data = AvatarSessionData.model_validate(envelope.data)
    conn.attached.detach(data.session_id)
    conn.send(
        frame(
            "avatar.detached",
            {"session_id": data.session_id},
            conversation_id=conn.conversation_id,
            reply_to=envelope.id,
        )
    )


async def on_avatar_event(conn: Connection, envelope: Envelope) -> None:
    """One ``agent-response`` event the page received in the avatar's room."""
    data = AvatarEventData.model_validate(envelope.data)
    message = await conn.hub.conversations.avatar.browser_event(
        _user(conn),
        data.session_id,
        data.event,
        voice_answers=conn.config.voice_answers,
    )
    if message is not None:
        conn.wake.set()


#: client frame type → its handler (docs/realtime.md, "Client frames")
HANDLERS: dict[str, Handler] = {
    "auth": on_auth,
    "ping": on_ping,
    "conversation.open": on_conversation_open,
    "user.message": on_user_message,
    "avatar.start": on_avatar_start,
    "avatar.interrupt": on_avatar_interrupt,
    "avatar.stop": on_avatar_stop,
    "avatar.attach": on_avatar_attach,
    "avatar.detach": on_avatar_detach,
    "avatar.event": on_avatar_event,
}
