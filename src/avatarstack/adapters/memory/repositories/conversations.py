"""In-memory repository of the conversations context."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from avatarstack.adapters.memory.repositories._base import _Repo
from avatarstack.ports.errors import DuplicateError, NotFoundError
from avatarstack.ports.storage import Conversation, ConversationEvent


class _Conversations(_Repo):
    async def add(self, conversation: Conversation) -> None:
        if conversation.id in self._s.conversations:
            raise DuplicateError("a record with the same key already exists")
        self._s.conversations[conversation.id] = conversation
        self._s.events[conversation.id] = []

    async def get(self, conversation_id: str) -> Conversation | None:
        return self._s.conversations.get(conversation_id)

    async def list_for_user(
        self, user_id: str, *, limit: int = 50, offset: int = 0
    ) -> Sequence[Conversation]:
        found = [c for c in self._s.conversations.values() if c.user_id == user_id]
        found.sort(key=lambda c: c.id)
        found.sort(key=lambda c: c.updated_at, reverse=True)
        return found[offset : offset + limit]

    async def append_event(
        self,
        conversation_id: str,
        type: str,
        data: Mapping[str, Any],
        now: datetime,
        *,
        client_id: str | None = None,
    ) -> ConversationEvent:
        conversation = self._s.conversations.get(conversation_id)
        if conversation is None:
            raise NotFoundError(f"conversation {conversation_id} does not exist")
        events = self._s.events[conversation_id]
        if client_id is not None:
            for event in events:
                if event.client_id == client_id:
                    return event
        seq = conversation.last_seq + 1
        event = ConversationEvent(
            conversation_id=conversation_id,
            seq=seq,
            type=type,
            data=dict(data),
            client_id=client_id,
            created_at=now,
        )
        events.append(event)
        self._s.conversations[conversation_id] = conversation.model_copy(
            update={"last_seq": seq, "updated_at": now}
        )
        return event

    async def list_events(
        self, conversation_id: str, *, after_seq: int = 0, limit: int = 500
    ) -> Sequence[ConversationEvent]:
        events = self._s.events.get(conversation_id, [])
        return [e for e in events if e.seq > after_seq][:limit]
