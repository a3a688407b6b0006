"""The conversations context: a user's conversations and their gap-free event log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from pydantic import Field

from avatarstack.ports.storage._base import Record
from avatarstack.ports.storage.uow import Transaction

__all__ = [
    "Conversation",
    "ConversationEvent",
    "ConversationRepository",
    "ConversationStorage",
    "ConversationUnitOfWork",
]


class Conversation(Record):
    id: str
    user_id: str
    title: str | None = None
    last_seq: int = 0
    created_at: datetime
    updated_at: datetime


class ConversationEvent(Record):
    """A server event of a conversation; ``seq`` is gap-free and strictly increasing."""

    conversation_id: str
    seq: int
    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    client_id: str | None = None
    created_at: datetime


class ConversationRepository(Protocol):
    async def add(self, conversation: Conversation) -> None: ...

    async def get(self, conversation_id: str) -> Conversation | None: ...

    async def list_for_user(
        self, user_id: str, *, limit: int = 50, offset: int = 0
    ) -> Sequence[Conversation]:
        """Most recently updated first."""

    async def append_event(
        self,
        conversation_id: str,
        type: str,
        data: Mapping[str, Any],
        now: datetime,
        *,
        client_id: str | None = None,
    ) -> ConversationEvent:
        """Persist an event with the next ``seq``.

        With a ``client_id`` already used in this conversation, returns the stored event
        instead of adding a new one (idempotent retries). NotFoundError for an unknown
        conversation.
        """

    async def list_events(
        self, conversation_id: str, *, after_seq: int = 0, limit: int = 500
    ) -> Sequence[ConversationEvent]:
        """Events with ``seq > after_seq``, ascending."""


@runtime_checkable
class ConversationUnitOfWork(Transaction, Protocol):
    """A transaction over the conversation repository only."""

    @property
    def conversations(self) -> ConversationRepository: ...


class ConversationStorage(Protocol):
    """What a service of this context needs of a storage: its units of work (a full
    :class:`~avatarstack.ports.storage.Storage` is one)."""

    def unit_of_work(self) -> AbstractAsyncContextManager[ConversationUnitOfWork]: ...
