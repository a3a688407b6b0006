"""SQL repository of the conversations context."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from avatarstack.adapters.sql.repositories._base import Columns, _Repository
from avatarstack.ports.errors import NotFoundError
from avatarstack.ports.storage import Conversation, ConversationEvent

__all__ = ["SqlConversationRepository"]


class SqlConversationRepository(_Repository):
    _COLUMNS = Columns(Conversation, "id, user_id, title, last_seq, created_at, updated_at")
    _EVENT_COLUMNS = Columns(
        ConversationEvent, "conversation_id, seq, type, data, client_id, created_at", json=("data",)
    )

    async def add(self, conversation: Conversation) -> None:
        await self._conn.execute(
            self._COLUMNS.insert("conversations"), *self._COLUMNS.values(conversation)
        )

    async def get(self, conversation_id: str) -> Conversation | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._COLUMNS} FROM conversations WHERE id = $1", conversation_id
        )
        return self._COLUMNS.record(row) if row else None

    async def list_for_user(
        self, user_id: str, *, limit: int = 50, offset: int = 0
    ) -> Sequence[Conversation]:
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM conversations WHERE user_id = $1 "
            "ORDER BY updated_at DESC, id LIMIT $2 OFFSET $3",
            user_id,
            limit,
            offset,
        )
        return [self._COLUMNS.record(row) for row in rows]

    async def append_event(
        self,
        conversation_id: str,
        type: str,
        data: Mapping[str, Any],
        now: datetime,
        *,
        client_id: str | None = None,
    ) -> ConversationEvent:
        # Lock the conversation row first: the idempotency check and the seq bump then see
        # every committed event, so retries never double-post and seq has no gaps.
        locked = await self._conn.fetchrow(
            f"SELECT last_seq FROM conversations WHERE id = $1 {self._conn.dialect.for_update}",
            conversation_id,
        )
        if locked is None:
            raise NotFoundError(f"conversation {conversation_id} does not exist")
        if client_id is not None:
            row = await self._conn.fetchrow(
                f"SELECT {self._EVENT_COLUMNS} FROM conversation_events "
                "WHERE conversation_id = $1 AND client_id = $2",
                conversation_id,
                client_id,
            )
            if row is not None:
                return self._EVENT_COLUMNS.record(row)
        seq = int(locked["last_seq"]) + 1
        await self._conn.execute(
            "UPDATE conversations SET last_seq = $2, updated_at = $3 WHERE id = $1",
            conversation_id,
            seq,
            now,
        )
        event = ConversationEvent(
            conversation_id=conversation_id,
            seq=seq,
            type=type,
            data=dict(data),
            client_id=client_id,
            created_at=now,
        )
        await self._conn.execute(
            self._EVENT_COLUMNS.insert("conversation_events"), *self._EVENT_COLUMNS.values(event)
        )
        return event

    async def list_events(
        self, conversation_id: str, *, after_seq: int = 0, limit: int = 500
    ) -> Sequence[ConversationEvent]:
        rows = await self._conn.fetch(
            f"SELECT {self._EVENT_COLUMNS} FROM conversation_events "
            "WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            conversation_id,
            after_seq,
            limit,
        )
        return [self._EVENT_COLUMNS.record(row) for row in rows]
