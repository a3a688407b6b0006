"""The conversation's event log and the user's messages.

Every server event of a conversation is stored with the next per-conversation ``seq`` *before*
anyone is told about it; then a notice goes out on the topic ``conversation:<id>`` through the
:class:`~avatarstack.ports.broadcast.Broadcaster` (this instance and the others). Connections
never receive event data through the broadcaster: they re-read storage after the last ``seq``
they sent, which makes delivery exactly-once and gap-free across reconnects, restarts and
instances.

A user message is stored and its answer job (``conversation.answer``) queued in one
transaction; a retry with the same ``client_id`` gets the stored message back and queues
nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog

from avatarstack.core.conversations.config import ConversationConfig, ConversationServiceStorage
from avatarstack.core.conversations.topics import conversation_topic
from avatarstack.core.jobs import new_job
from avatarstack.ports.broadcast import Broadcaster
from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import AvatarstackError, FieldError, InvalidInputError, NotFoundError
from avatarstack.ports.storage import Conversation, ConversationEvent, Job, new_id

log = structlog.get_logger("avatarstack.conversations")

ANSWER_JOB = "conversation.answer"
MAX_MESSAGE_CHARS = 4000
MAX_CLIENT_ID = 100


class ConversationLog:
    """Conversations, their stored events, and the user's messages; one per application."""

    def __init__(
        self,
        storage: ConversationServiceStorage,
        clock: Clock,
        broadcaster: Broadcaster,
        *,
        config: ConversationConfig | None = None,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._broadcaster = broadcaster
        self.config = config or ConversationConfig()
        self._job_listeners: list[Callable[[Job], None]] = []

    @property
    def broadcaster(self) -> Broadcaster:
        return self._broadcaster

    def on_job_queued(self, listener: Callable[[Job], None]) -> None:
        self._job_listeners.append(listener)

    # ------------------------------------------------------------------ conversations

    async def open(self, user_id: str, conversation_id: str | None = None) -> Conversation:
        """The user's conversation ``conversation_id``, or a new one."""
        if conversation_id is not None:
            return await self.get(user_id, conversation_id)
        now = self._clock.now()
        conversation = Conversation(id=new_id(), user_id=user_id, created_at=now, updated_at=now)
        async with self._storage.unit_of_work() as uow:
            await uow.conversations.add(conversation)
            await uow.commit()
        log.info("conversation.created", conversation_id=conversation.id, user_id=user_id)
        return conversation

    async def get(self, user_id: str, conversation_id: str) -> Conversation:
        async with self._storage.unit_of_work() as uow:
            conversation = await uow.conversations.get(conversation_id)
        if conversation is None or conversation.user_id != user_id:
            raise NotFoundError("no such conversation")
        return conversation

    async def list_conversations(
        self, user_id: str, *, limit: int = 50, offset: int = 0
    ) -> list[Conversation]:
        async with self._storage.unit_of_work() as uow:
            return list(await uow.conversations.list_for_user(user_id, limit=limit, offset=offset))

    async def events(
        self, user_id: str, conversation_id: str, *, after_seq: int = 0, limit: int = 500
    ) -> tuple[Conversation, list[ConversationEvent]]:
        """Events after ``after_seq`` (0 = from the start); InvalidInputError for a negative
        one or one beyond the last event."""
        conversation = await self.get(user_id, conversation_id)
        check_after_seq(after_seq, conversation.last_seq)
        async with self._storage.unit_of_work() as uow:
            events = list(
                await uow.conversations.list_events(
                    conversation_id, after_seq=after_seq, limit=limit
                )
            )
        return conversation, events

    async def read_after(
        self, conversation_id: str, after_seq: int, limit: int = 200
    ) -> list[ConversationEvent]:
        """Events after ``after_seq`` without an owner check (the caller already did it)."""
        async with self._storage.unit_of_work() as uow:
            return list(
                await uow.conversations.list_events(
                    conversation_id, after_seq=after_seq, limit=limit
                )
            )

    async def append(
        self,
        conversation_id: str,
        type_: str,
        data: Mapping[str, Any],
        *,
        client_id: str | None = None,
    ) -> ConversationEvent:
        """Persist an event with the next seq, then notify every watcher."""
        async with self._storage.unit_of_work() as uow:
            event = await uow.conversations.append_event(
                conversation_id, type_, data, self._clock.now(), client_id=client_id
            )
            await uow.commit()
        await self._notify(conversation_id, event.seq)
        return event

    async def _notify(self, conversation_id: str, seq: int) -> None:
        try:
            await self._broadcaster.publish(conversation_topic(conversation_id), {"seq": seq})
        except AvatarstackError as exc:  # storage has it; watchers catch up on their next read
            log.warning(
                "conversation.notify_failed", conversation_id=conversation_id, error=exc.code
            )

    async def post_message(
        self, user_id: str, conversation_id: str, client_id: str, text: str
    ) -> tuple[ConversationEvent, bool]:
        """Store the user's message and queue its answer, in one transaction. A retry with the
        same ``client_id`` returns the stored message (``False``) and queues nothing."""
        body = " ".join(text.split()) if text else ""
        errors: list[FieldError] = []
        if not body:
            errors.append(FieldError(field="data.text", message="empty"))
        elif len(body) > MAX_MESSAGE_CHARS:
            errors.append(
                FieldError(field="data.text", message=f"longer than {MAX_MESSAGE_CHARS} characters")
            )
        if not client_id or len(client_id) > MAX_CLIENT_ID or not client_id.isprintable():
            errors.append(
                FieldError(
                    field="data.client_id", message=f"1 to {MAX_CLIENT_ID} printable characters"
                )
            )
        if errors:
            raise InvalidInputError("the message is invalid", errors)
        now = self._clock.now()
        async with self._storage.unit_of_work() as uow:
            before = await uow.conversations.get(conversation_id)
            if before is None or before.user_id != user_id:
                raise NotFoundError("no such conversation")
            event = await uow.conversations.append_event(
                conversation_id,
                "message.created",
                {"role": "user", "text": body, "client_id": client_id},
                now,
                client_id=f"user:{client_id}",
            )
            job: Job | None = None
            if event.seq > before.last_seq:  # new; a retry gets the stored event back
                job = new_job(
                    ANSWER_JOB,
                    {"conversation_id": conversation_id, "message_seq": event.seq},
                    now,
                    owner_id=user_id,
                    max_attempts=self.config.answer_attempts,
                )
                await uow.jobs.enqueue(job)
            await uow.commit()
        if job is None:
            return event, False
        for listener in self._job_listeners:  # wake a worker first, then the sockets
            listener(job)
        await self._notify(conversation_id, event.seq)
        return event, True


def check_after_seq(after_seq: int, last_seq: int) -> None:
    if after_seq < 0:
        raise InvalidInputError(
            "after_seq must not be negative", [FieldError(field="after_seq", message="negative")]
        )
    if after_seq > last_seq:
        raise InvalidInputError(
            f"after_seq {after_seq} is beyond the last event ({last_seq})",
            [FieldError(field="after_seq", message=f"beyond the last event ({last_seq})")],
        )
