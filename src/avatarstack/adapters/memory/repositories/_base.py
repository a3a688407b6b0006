"""The in-memory state every repository edits (a unit of work holds a copy) and the
repository base class."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from avatarstack.ports.storage import (
    AuditEvent,
    AuthSession,
    AvatarSession,
    Conversation,
    ConversationEvent,
    Document,
    DocumentVersion,
    GoldenQuestion,
    Identity,
    IndexGeneration,
    Job,
    OneTimeToken,
    RefreshToken,
    SearchRecord,
    StoredChunk,
    StoredLexicalIndex,
    User,
)


@dataclass
class _State:
    users: dict[str, User] = field(default_factory=dict)
    roles: dict[str, frozenset[str]] = field(default_factory=dict)
    identities: dict[str, Identity] = field(default_factory=dict)
    tokens: dict[str, OneTimeToken] = field(default_factory=dict)
    sessions: dict[str, AuthSession] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)
    rate_limits: dict[tuple[str, datetime], int] = field(default_factory=dict)
    audit: list[AuditEvent] = field(default_factory=list)
    documents: dict[str, Document] = field(default_factory=dict)
    versions: dict[tuple[str, int], DocumentVersion] = field(default_factory=dict)
    chunks: dict[tuple[str, int, int], StoredChunk] = field(default_factory=dict)
    generations: dict[str, IndexGeneration] = field(default_factory=dict)
    lexical: dict[str, StoredLexicalIndex] = field(default_factory=dict)
    active_generation: str | None = None
    golden_set: dict[str, GoldenQuestion] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    #: (embedder, dimensions, text hash) -> the vector as :func:`encode_vector` stores it
    embeddings: dict[tuple[str, int, str], bytes] = field(default_factory=dict)
    searches: list[SearchRecord] = field(default_factory=list)
    last_search_id: int = 0
    jobs: dict[str, Job] = field(default_factory=dict)
    avatar_sessions: dict[str, AvatarSession] = field(default_factory=dict)
    conversations: dict[str, Conversation] = field(default_factory=dict)
    events: dict[str, list[ConversationEvent]] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)


class _Repo:
    def __init__(self, state: _State) -> None:
        self._s = state
