"""What the conversation services are given: their settings and the storage they need."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from avatarstack.ports.storage import AvatarUnitOfWork, ConversationUnitOfWork, JobUnitOfWork


class ConversationServiceUnitOfWork(
    ConversationUnitOfWork, AvatarUnitOfWork, JobUnitOfWork, Protocol
):
    """The conversation log, the avatar sessions (renewals read the session they renew) and
    the job queue (answers are enqueued with the question that asks them)."""


class ConversationServiceStorage(Protocol):
    """What :class:`ConversationService` needs of a storage (a full ``Storage`` is one)."""

    def unit_of_work(self) -> AbstractAsyncContextManager[ConversationServiceUnitOfWork]: ...


class ConversationConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    #: search results handed to the engine
    passages: int = Field(default=5, ge=1)
    #: results below this cosine score are not relevant
    min_score: float = 0.15
    #: earlier turns given to the engine
    history_turns: int = Field(default=6, ge=0)
    #: a worker that dies mid-answer: another instance resumes the answer after this
    answer_attempts: int = Field(default=3, ge=1)
