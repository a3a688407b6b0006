"""The unit of work both SQL adapters hand out: repositories over one transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from avatarstack.adapters.sql.connection import SqlConnection
from avatarstack.adapters.sql.repositories import (
    SqlAuditRepository,
    SqlAvatarSessionRepository,
    SqlBlobRepository,
    SqlChunkRepository,
    SqlConversationRepository,
    SqlDocumentRepository,
    SqlEmbeddingCacheRepository,
    SqlGenerationRepository,
    SqlGoldenSetRepository,
    SqlIdentityRepository,
    SqlJobRepository,
    SqlOneTimeTokenRepository,
    SqlRateLimitRepository,
    SqlRefreshTokenRepository,
    SqlRoleRepository,
    SqlSearchLogRepository,
    SqlSessionRepository,
    SqlUserRepository,
)


class SqlUnitOfWork:
    """Repositories bound to one connection whose transaction the adapter opened.

    ``commit``/``rollback`` are the adapter's callbacks; after either, the unit of work is
    finished and the adapter's context manager will not roll back again.
    """

    def __init__(
        self,
        conn: SqlConnection,
        commit: Callable[[], Awaitable[None]],
        rollback: Callable[[], Awaitable[None]],
    ) -> None:
        self._conn = conn
        self._commit = commit
        self._rollback = rollback
        self.finished = False
        self.users = SqlUserRepository(conn)
        self.roles = SqlRoleRepository(conn)
        self.identities = SqlIdentityRepository(conn)
        self.tokens = SqlOneTimeTokenRepository(conn)
        self.sessions = SqlSessionRepository(conn)
        self.refresh_tokens = SqlRefreshTokenRepository(conn)
        self.rate_limits = SqlRateLimitRepository(conn)
        self.audit = SqlAuditRepository(conn)
        self.documents = SqlDocumentRepository(conn)
        self.chunks = SqlChunkRepository(conn)
        self.generations = SqlGenerationRepository(conn)
        self.golden_set = SqlGoldenSetRepository(conn)
        self.blobs = SqlBlobRepository(conn)
        self.embeddings = SqlEmbeddingCacheRepository(conn)
        self.searches = SqlSearchLogRepository(conn)
        self.jobs = SqlJobRepository(conn)
        self.avatar_sessions = SqlAvatarSessionRepository(conn)
        self.conversations = SqlConversationRepository(conn)

    async def lock(self, name: str) -> None:
        statement = self._conn.dialect.named_lock
        if statement is not None:
            await self._conn.execute(statement, name)

    async def commit(self) -> None:
        if self.finished:
            raise RuntimeError("this unit of work has already finished")
        self.finished = True
        await self._commit()

    async def rollback(self) -> None:
        if self.finished:
            return
        self.finished = True
        await self._rollback()
