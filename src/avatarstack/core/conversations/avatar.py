"""The conversation's avatar: starting and stopping it, recording what it does.

A conversation has at most one live avatar session (``data.conversation_id`` on the session
row). Its state is stored in the conversation as ``avatar.session`` events (started, stopped,
renewed), and while it runs, the instance that started it stores the vendor's speaking/idle
events as ``avatar.speaking``/``avatar.idle`` (captions included). The browser's LiveKit
credentials are handed over once, never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import structlog

from avatarstack.core.avatars import LIVE, AvatarService, Renewal
from avatarstack.core.conversations.config import ConversationServiceStorage
from avatarstack.core.conversations.log import MAX_CLIENT_ID, ConversationLog
from avatarstack.core.conversations.topics import avatar_events_topic, user_topic
from avatarstack.ports.avatar import AvatarEvent, SessionRequest
from avatarstack.ports.broadcast import Broadcaster
from avatarstack.ports.errors import (
    AvatarstackError,
    ConflictError,
    FieldError,
    InvalidInputError,
    NotFoundError,
)
from avatarstack.ports.storage import AvatarSession, ConversationEvent

log = structlog.get_logger("avatarstack.conversations")


class ConversationAvatar:
    """The avatar of each conversation; one per application."""

    def __init__(
        self,
        storage: ConversationServiceStorage,
        conversation_log: ConversationLog,
        broadcaster: Broadcaster,
        avatars: AvatarService,
    ) -> None:
        self._storage = storage
        self._log = conversation_log
        self._broadcaster = broadcaster
        self._avatars = avatars
        #: avatar event relays run by this instance, by avatar session id
        self._relays: dict[str, asyncio.Task[None]] = {}

    async def session(self, user_id: str, conversation_id: str) -> AvatarSession | None:
        """The conversation's live avatar session, if it has one."""
        for session in await self._avatars.list_sessions(user_id, active_only=True):
            if session.status in LIVE and session.data.get("conversation_id") == conversation_id:
                return session
        return None

    async def start(
        self, user_id: str, conversation_id: str, request: SessionRequest
    ) -> tuple[ConversationEvent, dict[str, Any] | None]:
        """Start (or reuse) the conversation's avatar. Returns the stored ``avatar.session``
        event and the browser's LiveKit credentials, which are never stored."""
        await self._log.get(user_id, conversation_id)
        existing = await self.session(user_id, conversation_id)
        if existing is not None:
            event = await self._log.append(
                conversation_id, "avatar.session", _session_data(existing)
            )
            return event, None
        started = await self._avatars.start(
            user_id, request, data={"conversation_id": conversation_id}
        )
        event = await self._log.append(
            conversation_id, "avatar.session", _session_data(started.session)
        )
        self._relay(user_id, conversation_id, started.session.id)
        livekit = started.livekit.model_dump() if started.livekit else None
        return event, livekit

    async def stop(self, user_id: str, conversation_id: str) -> None:
        session = await self.session(user_id, conversation_id)
        if session is None:
            raise ConflictError("this conversation has no running avatar")
        await self._avatars.stop(user_id, session.id)
        stopped = await self._avatars.get(user_id, session.id)
        await self._log.append(conversation_id, "avatar.session", _session_data(stopped))

    async def interrupt(self, user_id: str, conversation_id: str) -> None:
        """Stop what the conversation's avatar is saying (nothing to do when none runs)."""
        session = await self.session(user_id, conversation_id)
        if session is not None:
            with contextlib.suppress(ConflictError, NotFoundError):
                await self._avatars.interrupt(user_id, session.id)

    async def renewed(self, renewal: Renewal) -> None:
        """A session was replaced before the vendor's duration cap: record it in its
        conversation and hand the new LiveKit credentials to the owner's sockets (on every
        instance, through the broadcaster; they are never stored)."""
        async with self._storage.unit_of_work() as uow:
            session = await uow.avatar_sessions.get(renewal.session_id)
        if session is None:
            return
        conversation_id = session.data.get("conversation_id")
        if not isinstance(conversation_id, str):
            return
        await self._log.append(
            conversation_id, "avatar.session", {**_session_data(session), "renewed": True}
        )
        if renewal.livekit is not None:
            await self._broadcaster.publish(
                user_topic(session.owner_id),
                {
                    "credentials": {
                        "conversation_id": conversation_id,
                        "session_id": session.id,
                        "provider_session_id": renewal.new_provider_session_id,
                        "livekit": renewal.livekit.model_dump(),
                    }
                },
            )

    def _relay(self, user_id: str, conversation_id: str, session_id: str) -> None:
        """Store the avatar's speaking/idle events in the conversation while it runs (on the
        instance that started it: vendor events arrive there)."""

        reports = self._broadcaster.subscribe(avatar_events_topic(session_id))

        async def feed() -> None:
            async for notice in reports:
                event = notice.payload.get("event")
                if isinstance(event, dict):
                    with contextlib.suppress(AvatarstackError):
                        await self._avatars.feed(user_id, session_id, event)

        async def relay() -> None:
            feeding = asyncio.create_task(feed(), name=f"avatar-feed-{session_id}")
            try:
                async for event in self._avatars.events(user_id, session_id):
                    await self._record_avatar_event(conversation_id, session_id, event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the relay must not take the instance down
                log.warning("conversation.avatar_relay_failed", error=str(exc))
            finally:
                feeding.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await feeding
                await reports.close()
                self._relays.pop(session_id, None)

        if session_id not in self._relays:
            self._relays[session_id] = asyncio.create_task(
                relay(), name=f"avatar-relay-{session_id}"
            )

    async def _record_avatar_event(
        self, conversation_id: str, session_id: str, event: AvatarEvent
    ) -> None:
        kind = {"speaking": "avatar.speaking", "idle": "avatar.idle"}.get(event.type)
        if kind is None:
            if event.type == "closed":
                await self._log.append(
                    conversation_id,
                    "avatar.session",
                    {"session_id": session_id, "status": "stopped", "reason": event.reason},
                )
            return
        data: dict[str, Any] = {"session_id": session_id, "task_id": event.task_id}
        if event.duration_seconds is not None:
            data["duration_seconds"] = event.duration_seconds
        if kind == "avatar.speaking" and event.text is not None:
            data["text"] = event.text  # captions
        await self._log.append(conversation_id, kind, data)

    async def browser_event(
        self, user_id: str, session_id: str, event: Mapping[str, Any], *, voice_answers: bool
    ) -> ConversationEvent | None:
        """One ``agent-response`` event the owner's browser received from the avatar's room
        (LiveAvatar FULL mode), forwarded verbatim.

        ``avatar.speak_started``/``avatar.speak_ended``/``session.stopped`` go to the instance
        that follows the session's events (through the broadcaster), which records them as
        ``avatar.speaking``/``avatar.idle``/``avatar.session {status: stopped}``. A final
        ``user.transcription`` becomes the user's message (``client_id`` ``voice:<event_id>``:
        the same event forwarded twice, e.g. by two tabs, gives one message and one answer)
        when ``voice_answers`` is on; LiveAvatar's own reply to it is interrupted first.
        Other events are ignored. Returns the stored message, if one was stored."""
        session = await self._avatars.get(user_id, session_id)
        conversation_id = session.data.get("conversation_id")
        kind = event.get("event_type")
        if kind in {"avatar.speak_started", "avatar.speak_ended", "session.stopped"}:
            await self._broadcaster.publish(avatar_events_topic(session_id), {"event": dict(event)})
            return None
        if kind != "user.transcription" or not voice_answers:
            return None
        text, event_id = event.get("text"), event.get("event_id")
        if not isinstance(conversation_id, str) or not isinstance(text, str) or not text.strip():
            return None
        if not isinstance(event_id, str) or not event_id:
            raise InvalidInputError(
                "a user.transcription needs its event_id",
                [FieldError(field="data.event.event_id", message="missing")],
            )
        if session.status in LIVE:
            with contextlib.suppress(AvatarstackError):
                await self._avatars.interrupt(user_id, session_id)
        message, _new = await self._log.post_message(
            user_id, conversation_id, f"voice:{event_id[: MAX_CLIENT_ID - 6]}", text
        )
        return message

    async def close(self) -> None:
        relays = list(self._relays.values())
        for task in relays:
            task.cancel()
        for task in relays:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _session_data(session: AvatarSession) -> dict[str, Any]:
    return {
        "session_id": session.id,
        "provider": session.provider,
        "status": session.status,
        "expires_at": session.expires_at.isoformat() if session.expires_at else None,
    }
