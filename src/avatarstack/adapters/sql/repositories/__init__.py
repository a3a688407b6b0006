"""The storage repositories, written once for every SQL dialect, one module per storage context
(see ``avatarstack.ports.storage``)."""

from __future__ import annotations

from avatarstack.adapters.sql.repositories.avatars import SqlAvatarSessionRepository
from avatarstack.adapters.sql.repositories.conversations import SqlConversationRepository
from avatarstack.adapters.sql.repositories.documents import (
    SqlChunkRepository,
    SqlDocumentRepository,
)
from avatarstack.adapters.sql.repositories.identity import (
    SqlAuditRepository,
    SqlIdentityRepository,
    SqlOneTimeTokenRepository,
    SqlRateLimitRepository,
    SqlRefreshTokenRepository,
    SqlRoleRepository,
    SqlSessionRepository,
    SqlUserRepository,
)
from avatarstack.adapters.sql.repositories.jobs import SqlJobRepository
from avatarstack.adapters.sql.repositories.knowledge import (
    SqlBlobRepository,
    SqlEmbeddingCacheRepository,
    SqlGenerationRepository,
    SqlGoldenSetRepository,
    SqlSearchLogRepository,
)

__all__ = [
    "SqlAuditRepository",
    "SqlAvatarSessionRepository",
    "SqlBlobRepository",
    "SqlChunkRepository",
    "SqlConversationRepository",
    "SqlDocumentRepository",
    "SqlEmbeddingCacheRepository",
    "SqlGenerationRepository",
    "SqlGoldenSetRepository",
    "SqlIdentityRepository",
    "SqlJobRepository",
    "SqlOneTimeTokenRepository",
    "SqlRateLimitRepository",
    "SqlRefreshTokenRepository",
    "SqlRoleRepository",
    "SqlSearchLogRepository",
    "SqlSessionRepository",
    "SqlUserRepository",
]
