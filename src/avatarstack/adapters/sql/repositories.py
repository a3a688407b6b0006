"""The storage repositories, written once for every SQL dialect."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from avatarstack.adapters.sql.connection import SqlConnection
from avatarstack.ports.errors import ConflictError, NotFoundError
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
    SearchSummary,
    StoredChunk,
    StoredLexicalIndex,
    User,
    decode_vector,
    encode_vector,
)

M = TypeVar("M", bound=BaseModel)


def _dump(value: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(value or {}), separators=(",", ":"), sort_keys=True)


def _model(model: type[M], row: Mapping[str, Any], json_fields: Iterable[str] = ()) -> M:
    data = dict(row)
    for name in json_fields:
        raw = data.get(name)
        data[name] = json.loads(raw) if isinstance(raw, str) else (raw or {})
    return model.model_validate(data)


def _placeholders(start: int, count: int) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


def _rows(width: int, count: int) -> str:
    """``($1, …, $width), ($width+1, …)``: the VALUES of a ``count``-row INSERT."""
    return ", ".join(f"({_placeholders(1 + i * width, width)})" for i in range(count))


def _prefixed(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in columns.split(","))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


#: parameters per statement for batched INSERTs and IN lists: under every dialect's limit
_MAX_PARAMETERS = 500


class _Repository:
    def __init__(self, conn: SqlConnection) -> None:
        self._conn = conn


class SqlUserRepository(_Repository):
    _COLUMNS = (
        "id, email, display_name, password_hash, email_verified, is_active, created_at, updated_at"
    )

    async def add(self, user: User) -> None:
        await self._conn.execute(
            f"INSERT INTO users ({self._COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            user.id,
            user.email,
            user.display_name,
            user.password_hash,
            user.email_verified,
            user.is_active,
            user.created_at,
            user.updated_at,
        )

    async def get(self, user_id: str) -> User | None:
        row = await self._conn.fetchrow(f"SELECT {self._COLUMNS} FROM users WHERE id = $1", user_id)
        return _model(User, row) if row else None

    async def get_by_email(self, email: str) -> User | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._COLUMNS} FROM users WHERE email = $1", email
        )
        return _model(User, row) if row else None

    async def update(self, user: User) -> None:
        changed = await self._conn.execute(
            "UPDATE users SET email = $2, display_name = $3, password_hash = $4, "
            "email_verified = $5, is_active = $6, updated_at = $7 WHERE id = $1",
            user.id,
            user.email,
            user.display_name,
            user.password_hash,
            user.email_verified,
            user.is_active,
            user.updated_at,
        )
        if not changed:
            raise NotFoundError(f"user {user.id} does not exist")

    async def list(self, *, limit: int = 50, offset: int = 0) -> Sequence[User]:
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM users ORDER BY created_at, id LIMIT $1 OFFSET $2",
            limit,
            offset,
        )
        return [_model(User, row) for row in rows]

    async def count(self) -> int:
        row = await self._conn.fetchrow("SELECT COUNT(*) AS n FROM users")
        return int(row["n"]) if row else 0


class SqlRoleRepository(_Repository):
    async def get(self, user_id: str) -> frozenset[str]:
        rows = await self._conn.fetch("SELECT role FROM user_roles WHERE user_id = $1", user_id)
        return frozenset(row["role"] for row in rows)

    async def set(self, user_id: str, roles: frozenset[str]) -> None:
        await self._conn.execute("DELETE FROM user_roles WHERE user_id = $1", user_id)
        for role in sorted(roles):
            await self._conn.execute(
                "INSERT INTO user_roles (user_id, role) VALUES ($1, $2)", user_id, role
            )


class SqlIdentityRepository(_Repository):
    _COLUMNS = "id, user_id, provider, subject, email, email_verified, created_at"

    async def add(self, identity: Identity) -> None:
        await self._conn.execute(
            f"INSERT INTO identities ({self._COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            identity.id,
            identity.user_id,
            identity.provider,
            identity.subject,
            identity.email,
            identity.email_verified,
            identity.created_at,
        )

    async def get_by_subject(self, provider: str, subject: str) -> Identity | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._COLUMNS} FROM identities WHERE provider = $1 AND subject = $2",
            provider,
            subject,
        )
        return _model(Identity, row) if row else None

    async def list_for_user(self, user_id: str) -> Sequence[Identity]:
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM identities WHERE user_id = $1 ORDER BY created_at, id",
            user_id,
        )
        return [_model(Identity, row) for row in rows]

    async def delete(self, identity_id: str) -> bool:
        return bool(await self._conn.execute("DELETE FROM identities WHERE id = $1", identity_id))


class SqlOneTimeTokenRepository(_Repository):
    _COLUMNS = "token_hash, purpose, user_id, data, created_at, expires_at, used_at"

    async def add(self, token: OneTimeToken) -> None:
        await self._conn.execute(
            f"INSERT INTO one_time_tokens ({self._COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            token.token_hash,
            token.purpose,
            token.user_id,
            _dump(token.data),
            token.created_at,
            token.expires_at,
            token.used_at,
        )

    async def consume(self, token_hash: str, purpose: str, now: datetime) -> OneTimeToken | None:
        row = await self._conn.fetchrow(
            "UPDATE one_time_tokens SET used_at = $3 "
            "WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3 "
            f"RETURNING {self._COLUMNS}",
            token_hash,
            purpose,
            now,
        )
        return _model(OneTimeToken, row, ("data",)) if row else None

    async def revoke_for_user(self, user_id: str, purpose: str, now: datetime) -> int:
        return await self._conn.execute(
            "UPDATE one_time_tokens SET used_at = $3 "
            "WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
            user_id,
            purpose,
            now,
        )

    async def delete_expired(self, now: datetime) -> int:
        return await self._conn.execute("DELETE FROM one_time_tokens WHERE expires_at <= $1", now)


class SqlSessionRepository(_Repository):
    _COLUMNS = "id, user_id, created_at, last_used_at, expires_at, revoked_at, user_agent, ip"

    async def add(self, session: AuthSession) -> None:
        await self._conn.execute(
            f"INSERT INTO auth_sessions ({self._COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            session.id,
            session.user_id,
            session.created_at,
            session.last_used_at,
            session.expires_at,
            session.revoked_at,
            session.user_agent,
            session.ip,
        )

    async def get(self, session_id: str) -> AuthSession | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._COLUMNS} FROM auth_sessions WHERE id = $1", session_id
        )
        return _model(AuthSession, row) if row else None

    async def list_active(self, user_id: str, now: datetime) -> Sequence[AuthSession]:
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM auth_sessions "
            "WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 "
            "ORDER BY last_used_at DESC, id",
            user_id,
            now,
        )
        return [_model(AuthSession, row) for row in rows]

    async def touch(self, session_id: str, now: datetime) -> None:
        await self._conn.execute(
            "UPDATE auth_sessions SET last_used_at = $2 WHERE id = $1", session_id, now
        )

    async def revoke(self, session_id: str, now: datetime) -> bool:
        return bool(
            await self._conn.execute(
                "UPDATE auth_sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                session_id,
                now,
            )
        )

    async def revoke_all(self, user_id: str, now: datetime) -> int:
        return await self._conn.execute(
            "UPDATE auth_sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
            user_id,
            now,
        )


class SqlRefreshTokenRepository(_Repository):
    _COLUMNS = "token_hash, session_id, created_at, expires_at, used_at"

    async def add(self, token: RefreshToken) -> None:
        await self._conn.execute(
            f"INSERT INTO refresh_tokens ({self._COLUMNS}) VALUES ($1, $2, $3, $4, $5)",
            token.token_hash,
            token.session_id,
            token.created_at,
            token.expires_at,
            token.used_at,
        )

    async def get(self, token_hash: str) -> RefreshToken | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._COLUMNS} FROM refresh_tokens WHERE token_hash = $1", token_hash
        )
        return _model(RefreshToken, row) if row else None

    async def use(self, token_hash: str, now: datetime) -> RefreshToken | None:
        row = await self._conn.fetchrow(
            "UPDATE refresh_tokens SET used_at = $2 "
            "WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 "
            f"RETURNING {self._COLUMNS}",
            token_hash,
            now,
        )
        return _model(RefreshToken, row) if row else None

    async def delete_expired(self, now: datetime) -> int:
        return await self._conn.execute("DELETE FROM refresh_tokens WHERE expires_at <= $1", now)


class SqlRateLimitRepository(_Repository):
    async def hit(self, key: str, window_start: datetime) -> int:
        row = await self._conn.fetchrow(
            "INSERT INTO rate_limits (key, window_start, hits) VALUES ($1, $2, 1) "
            "ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limits.hits + 1 "
            "RETURNING hits",
            key,
            window_start,
        )
        assert row is not None
        return int(row["hits"])

    async def count(self, key: str, window_start: datetime) -> int:
        row = await self._conn.fetchrow(
            "SELECT hits FROM rate_limits WHERE key = $1 AND window_start = $2", key, window_start
        )
        return int(row["hits"]) if row is not None else 0

    async def purge(self, before: datetime) -> int:
        return await self._conn.execute("DELETE FROM rate_limits WHERE window_start < $1", before)


class SqlAuditRepository(_Repository):
    _COLUMNS = "id, action, actor_id, subject_id, ip, data, created_at"

    async def append(self, event: AuditEvent) -> AuditEvent:
        row = await self._conn.fetchrow(
            "INSERT INTO audit_events (action, actor_id, subject_id, ip, data, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            event.action,
            event.actor_id,
            event.subject_id,
            event.ip,
            _dump(event.data),
            event.created_at,
        )
        assert row is not None
        return event.model_copy(update={"id": int(row["id"])})

    async def list(
        self, *, limit: int = 50, before_id: int | None = None, subject_id: str | None = None
    ) -> Sequence[AuditEvent]:
        clauses: list[str] = []
        args: list[Any] = []
        if before_id is not None:
            args.append(before_id)
            clauses.append(f"id < ${len(args)}")
        if subject_id is not None:
            args.append(subject_id)
            clauses.append(f"subject_id = ${len(args)}")
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        args.append(limit)
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM audit_events {where}ORDER BY id DESC LIMIT ${len(args)}",
            *args,
        )
        return [_model(AuditEvent, row, ("data",)) for row in rows]


class SqlDocumentRepository(_Repository):
    _COLUMNS = "id, title, owner_id, current_version, created_at, updated_at, deleted_at"
    _VERSION_COLUMNS = (
        "document_id, version, content_hash, filename, media_type, size_bytes, status, error, "
        "meta, file_sha256, created_at"
    )

    async def add(self, document: Document) -> None:
        await self._conn.execute(
            f"INSERT INTO documents ({self._COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            document.id,
            document.title,
            document.owner_id,
            document.current_version,
            document.created_at,
            document.updated_at,
            document.deleted_at,
        )

    async def get(self, document_id: str) -> Document | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._COLUMNS} FROM documents WHERE id = $1 AND deleted_at IS NULL",
            document_id,
        )
        return _model(Document, row) if row else None

    async def list(self, *, limit: int = 50, offset: int = 0) -> Sequence[Document]:
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM documents WHERE deleted_at IS NULL "
            "ORDER BY created_at, id LIMIT $1 OFFSET $2",
            limit,
            offset,
        )
        return [_model(Document, row) for row in rows]

    async def set_current_version(self, document_id: str, version: int, now: datetime) -> None:
        changed = await self._conn.execute(
            "UPDATE documents SET current_version = $2, updated_at = $3 "
            "WHERE id = $1 AND deleted_at IS NULL",
            document_id,
            version,
            now,
        )
        if not changed:
            raise NotFoundError(f"document {document_id} does not exist")

    async def delete(self, document_id: str, now: datetime) -> bool:
        return bool(
            await self._conn.execute(
                "UPDATE documents SET deleted_at = $2, updated_at = $2 "
                "WHERE id = $1 AND deleted_at IS NULL",
                document_id,
                now,
            )
        )

    async def add_version(self, version: DocumentVersion) -> None:
        await self._conn.execute(
            f"INSERT INTO document_versions ({self._VERSION_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            version.document_id,
            version.version,
            version.content_hash,
            version.filename,
            version.media_type,
            version.size_bytes,
            version.status,
            version.error,
            _dump(version.meta),
            version.file_sha256,
            version.created_at,
        )

    async def get_version(self, document_id: str, version: int) -> DocumentVersion | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._VERSION_COLUMNS} FROM document_versions "
            "WHERE document_id = $1 AND version = $2",
            document_id,
            version,
        )
        return _model(DocumentVersion, row, ("meta",)) if row else None

    async def list_versions(self, document_id: str) -> Sequence[DocumentVersion]:
        rows = await self._conn.fetch(
            f"SELECT {self._VERSION_COLUMNS} FROM document_versions "
            "WHERE document_id = $1 ORDER BY version",
            document_id,
        )
        return [_model(DocumentVersion, row, ("meta",)) for row in rows]

    async def find_version_by_hash(
        self, document_id: str, content_hash: str
    ) -> DocumentVersion | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._VERSION_COLUMNS} FROM document_versions "
            "WHERE document_id = $1 AND content_hash = $2 ORDER BY version DESC LIMIT 1",
            document_id,
            content_hash,
        )
        return _model(DocumentVersion, row, ("meta",)) if row else None

    async def update_version_status(
        self,
        document_id: str,
        version: int,
        status: str,
        *,
        error: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        if meta is None:
            changed = await self._conn.execute(
                "UPDATE document_versions SET status = $3, error = $4 "
                "WHERE document_id = $1 AND version = $2",
                document_id,
                version,
                status,
                error,
            )
        else:
            changed = await self._conn.execute(
                "UPDATE document_versions SET status = $3, error = $4, meta = $5 "
                "WHERE document_id = $1 AND version = $2",
                document_id,
                version,
                status,
                error,
                _dump(meta),
            )
        if not changed:
            raise NotFoundError(f"document {document_id} has no version {version}")

    async def update_version(self, version: DocumentVersion) -> None:
        changed = await self._conn.execute(
            "UPDATE document_versions SET content_hash = $3, status = $4, error = $5, "
            "meta = $6, file_sha256 = $7 WHERE document_id = $1 AND version = $2",
            version.document_id,
            version.version,
            version.content_hash,
            version.status,
            version.error,
            _dump(version.meta),
            version.file_sha256,
        )
        if not changed:
            raise NotFoundError(f"document {version.document_id} has no version {version.version}")

    async def delete_version(self, document_id: str, version: int) -> bool:
        return bool(
            await self._conn.execute(
                "DELETE FROM document_versions WHERE document_id = $1 AND version = $2",
                document_id,
                version,
            )
        )

    async def _find_live_version(self, condition: str, value: str) -> DocumentVersion | None:
        row = await self._conn.fetchrow(
            f"SELECT {_prefixed('v', self._VERSION_COLUMNS)} FROM document_versions v "
            "JOIN documents d ON d.id = v.document_id "
            f"WHERE d.deleted_at IS NULL AND {condition} "
            "ORDER BY v.created_at DESC, v.version DESC, v.document_id DESC LIMIT 1",
            value,
        )
        return _model(DocumentVersion, row, ("meta",)) if row else None

    async def find_by_file(self, file_sha256: str) -> DocumentVersion | None:
        return await self._find_live_version(
            "v.file_sha256 = $1 AND v.status <> 'failed'", file_sha256
        )

    async def find_by_content(self, content_hash: str) -> DocumentVersion | None:
        return await self._find_live_version(
            "v.content_hash = $1 AND v.status = 'ready'", content_hash
        )

    async def list_current(self) -> Sequence[Document]:
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM documents "
            "WHERE deleted_at IS NULL AND current_version IS NOT NULL ORDER BY created_at, id"
        )
        return [_model(Document, row) for row in rows]

    async def count(self) -> int:
        row = await self._conn.fetchrow(
            "SELECT COUNT(*) AS n FROM documents WHERE deleted_at IS NULL"
        )
        return int(row["n"]) if row else 0


class SqlChunkRepository(_Repository):
    _COLUMNS = (
        "document_id, version, chunk_index, text, page_start, page_end, char_start, char_end, "
        "heading, hash"
    )
    _SELECT = (
        'document_id, version, chunk_index AS "index", text, page_start, page_end, '
        "char_start, char_end, heading, hash"
    )
    _WIDTH = 10
    _BATCH = _MAX_PARAMETERS // _WIDTH  # rows per INSERT

    async def add_many(self, chunks: Sequence[StoredChunk]) -> None:
        for start in range(0, len(chunks), self._BATCH):
            batch = chunks[start : start + self._BATCH]
            rows = _rows(self._WIDTH, len(batch))
            args: list[Any] = []
            for chunk in batch:
                args.extend(
                    (
                        chunk.document_id,
                        chunk.version,
                        chunk.index,
                        chunk.text,
                        chunk.page_start,
                        chunk.page_end,
                        chunk.char_start,
                        chunk.char_end,
                        chunk.heading,
                        chunk.hash,
                    )
                )
            await self._conn.execute(
                f"INSERT INTO document_chunks ({self._COLUMNS}) VALUES {rows}", *args
            )

    async def list_for_version(self, document_id: str, version: int) -> Sequence[StoredChunk]:
        rows = await self._conn.fetch(
            f"SELECT {self._SELECT} FROM document_chunks "
            "WHERE document_id = $1 AND version = $2 ORDER BY chunk_index",
            document_id,
            version,
        )
        return [_model(StoredChunk, row) for row in rows]

    async def delete_for_version(self, document_id: str, version: int) -> int:
        return await self._conn.execute(
            "DELETE FROM document_chunks WHERE document_id = $1 AND version = $2",
            document_id,
            version,
        )

    async def count_for_version(self, document_id: str, version: int) -> int:
        row = await self._conn.fetchrow(
            "SELECT COUNT(*) AS n FROM document_chunks WHERE document_id = $1 AND version = $2",
            document_id,
            version,
        )
        return int(row["n"]) if row else 0


class SqlGenerationRepository(_Repository):
    _COLUMNS = (
        "id, status, embedder, dimensions, document_versions, chunk_count, metrics, error, "
        "job_id, created_at, updated_at"
    )
    _JSON = ("document_versions", "metrics")

    def _args(self, generation: IndexGeneration) -> tuple[Any, ...]:
        return (
            generation.id,
            generation.status,
            generation.embedder,
            generation.dimensions,
            _dump(generation.document_versions),
            generation.chunk_count,
            _dump(generation.metrics),
            generation.error,
            generation.job_id,
            generation.created_at,
            generation.updated_at,
        )

    async def add(self, generation: IndexGeneration) -> None:
        await self._conn.execute(
            f"INSERT INTO kb_generations ({self._COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            *self._args(generation),
        )

    async def get(self, generation_id: str) -> IndexGeneration | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._COLUMNS} FROM kb_generations WHERE id = $1", generation_id
        )
        return _model(IndexGeneration, row, self._JSON) if row else None

    async def list(self, *, limit: int = 50) -> Sequence[IndexGeneration]:
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM kb_generations "
            "ORDER BY created_at DESC, id DESC LIMIT $1",
            limit,
        )
        return [_model(IndexGeneration, row, self._JSON) for row in rows]

    async def update(self, generation: IndexGeneration) -> None:
        changed = await self._conn.execute(
            "UPDATE kb_generations SET status = $2, embedder = $3, dimensions = $4, "
            "document_versions = $5, chunk_count = $6, metrics = $7, error = $8, job_id = $9, "
            "updated_at = $10 WHERE id = $1",
            *self._args(generation)[:9],
            generation.updated_at,
        )
        if not changed:
            raise NotFoundError(f"index generation {generation.id} does not exist")

    async def delete(self, generation_id: str) -> bool:
        active = await self._conn.fetchrow(
            "SELECT generation_id FROM kb_active_generation WHERE singleton = 1"
        )
        if active is not None and active["generation_id"] == generation_id:
            raise ConflictError("the active index generation cannot be deleted")
        return bool(
            await self._conn.execute("DELETE FROM kb_generations WHERE id = $1", generation_id)
        )

    async def get_active(self) -> IndexGeneration | None:
        row = await self._conn.fetchrow(
            f"SELECT {_prefixed('g', self._COLUMNS)} "
            "FROM kb_active_generation a JOIN kb_generations g ON g.id = a.generation_id "
            "WHERE a.singleton = 1"
        )
        return _model(IndexGeneration, row, self._JSON) if row else None

    async def set_active(self, generation_id: str, now: datetime) -> None:
        # Lock the generation so its status cannot change under the switch; the upsert of the
        # single pointer row is the switch itself (concurrent switches queue on that row).
        row = await self._conn.fetchrow(
            f"SELECT status FROM kb_generations WHERE id = $1 {self._conn.dialect.for_update}",
            generation_id,
        )
        if row is None:
            raise NotFoundError(f"index generation {generation_id} does not exist")
        if row["status"] != "ready":
            raise ConflictError(
                f"index generation {generation_id} is {row['status']}; only a ready one "
                "can be activated"
            )
        await self._conn.execute(
            "INSERT INTO kb_active_generation (singleton, generation_id, updated_at) "
            "VALUES (1, $1, $2) ON CONFLICT (singleton) DO UPDATE SET "
            "generation_id = excluded.generation_id, updated_at = excluded.updated_at",
            generation_id,
            now,
        )

    async def put_lexical(self, index: StoredLexicalIndex) -> None:
        exists = await self._conn.fetchrow(
            "SELECT id FROM kb_generations WHERE id = $1", index.generation_id
        )
        if exists is None:
            raise NotFoundError(f"index generation {index.generation_id} does not exist")
        await self._conn.execute(
            "INSERT INTO kb_lexical_indexes (generation_id, indexer, tokenizer, chunk_ids, data) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (generation_id) DO UPDATE SET "
            "indexer = excluded.indexer, tokenizer = excluded.tokenizer, "
            "chunk_ids = excluded.chunk_ids, data = excluded.data",
            index.generation_id,
            index.indexer,
            index.tokenizer,
            json.dumps(index.chunk_ids, separators=(",", ":")),
            bytes(index.data),
        )

    async def get_lexical(self, generation_id: str) -> StoredLexicalIndex | None:
        row = await self._conn.fetchrow(
            "SELECT generation_id, indexer, tokenizer, chunk_ids, data FROM kb_lexical_indexes "
            "WHERE generation_id = $1",
            generation_id,
        )
        if row is None:
            return None
        return StoredLexicalIndex(
            generation_id=row["generation_id"],
            indexer=row["indexer"],
            tokenizer=row["tokenizer"],
            chunk_ids=json.loads(row["chunk_ids"]),
            data=bytes(row["data"]),
        )


class SqlGoldenSetRepository(_Repository):
    _COLUMNS = "id, question, expected_document_id, expected_phrase, created_at"
    _WIDTH = 5
    _BATCH = _MAX_PARAMETERS // _WIDTH

    async def replace(self, questions: Sequence[GoldenQuestion]) -> None:
        # Without the lock, two concurrent replacements could each delete only the rows they
        # saw and leave both sets behind.
        if self._conn.dialect.named_lock is not None:
            await self._conn.execute(self._conn.dialect.named_lock, "kb_golden_set")
        await self._conn.execute("DELETE FROM kb_golden_set")
        for start in range(0, len(questions), self._BATCH):
            batch = questions[start : start + self._BATCH]
            args: list[Any] = []
            for question in batch:
                args.extend(
                    (
                        question.id,
                        question.question,
                        question.expected_document_id,
                        question.expected_phrase,
                        question.created_at,
                    )
                )
            await self._conn.execute(
                f"INSERT INTO kb_golden_set ({self._COLUMNS}) "
                f"VALUES {_rows(self._WIDTH, len(batch))}",
                *args,
            )

    async def list(self) -> Sequence[GoldenQuestion]:
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM kb_golden_set ORDER BY created_at, id"
        )
        return [_model(GoldenQuestion, row) for row in rows]


class SqlBlobRepository(_Repository):
    async def put(self, sha256: str, data: bytes, now: datetime) -> None:
        await self._conn.execute(
            "INSERT INTO kb_blobs (sha256, data, size_bytes, created_at) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (sha256) DO NOTHING",
            sha256,
            bytes(data),
            len(data),
            now,
        )

    async def get(self, sha256: str) -> bytes | None:
        row = await self._conn.fetchrow("SELECT data FROM kb_blobs WHERE sha256 = $1", sha256)
        return bytes(row["data"]) if row else None

    async def delete_unreferenced(self) -> int:
        return await self._conn.execute(
            "DELETE FROM kb_blobs WHERE NOT EXISTS (SELECT 1 FROM document_versions v "
            "WHERE v.file_sha256 = kb_blobs.sha256)"
        )


class SqlEmbeddingCacheRepository(_Repository):
    _WIDTH = 5
    _BATCH = _MAX_PARAMETERS // _WIDTH  # rows per INSERT
    _LOOKUP = _MAX_PARAMETERS  # hashes per SELECT

    async def get_many(
        self, embedder: str, dimensions: int, hashes: Sequence[str]
    ) -> dict[str, list[float]]:
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, list[float]] = {}
        for start in range(0, len(wanted), self._LOOKUP):
            batch = wanted[start : start + self._LOOKUP]
            rows = await self._conn.fetch(
                "SELECT text_hash, vector FROM kb_embedding_cache "
                "WHERE embedder = $1 AND dimensions = $2 "
                f"AND text_hash IN ({_placeholders(3, len(batch))})",
                embedder,
                dimensions,
                *batch,
            )
            for row in rows:
                found[row["text_hash"]] = decode_vector(bytes(row["vector"]))
        return found

    async def put_many(
        self,
        embedder: str,
        dimensions: int,
        vectors: Mapping[str, Sequence[float]],
        now: datetime,
    ) -> None:
        # every vector is checked before anything is written; rows go in key order so that
        # concurrent writers of overlapping keys queue on each other instead of deadlocking
        encoded = [(h, encode_vector(vectors[h], dimensions)) for h in sorted(vectors)]
        for start in range(0, len(encoded), self._BATCH):
            batch = encoded[start : start + self._BATCH]
            args: list[Any] = []
            for text_hash, vector in batch:
                args.extend((embedder, dimensions, text_hash, vector, now))
            await self._conn.execute(
                "INSERT INTO kb_embedding_cache "
                "(embedder, dimensions, text_hash, vector, created_at) "
                f"VALUES {_rows(self._WIDTH, len(batch))} "
                "ON CONFLICT (embedder, dimensions, text_hash) DO NOTHING",
                *args,
            )

    async def count(self, embedder: str | None = None) -> int:
        if embedder is None:
            row = await self._conn.fetchrow("SELECT COUNT(*) AS n FROM kb_embedding_cache")
        else:
            row = await self._conn.fetchrow(
                "SELECT COUNT(*) AS n FROM kb_embedding_cache WHERE embedder = $1", embedder
            )
        return int(row["n"]) if row else 0


class SqlSearchLogRepository(_Repository):
    _COLUMNS = (
        "id, generation_id, user_id, query, k, result_count, top_score, embed_ms, search_ms, "
        "created_at"
    )

    async def append(self, record: SearchRecord) -> None:
        await self._conn.execute(
            "INSERT INTO kb_searches (generation_id, user_id, query, k, result_count, "
            "top_score, embed_ms, search_ms, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            record.generation_id,
            record.user_id,
            record.query,
            record.k,
            record.result_count,
            record.top_score,
            record.embed_ms,
            record.search_ms,
            record.created_at,
        )

    async def list(
        self, generation_id: str | None = None, *, limit: int = 50
    ) -> Sequence[SearchRecord]:
        if generation_id is None:
            rows = await self._conn.fetch(
                f"SELECT {self._COLUMNS} FROM kb_searches "
                "ORDER BY created_at DESC, id DESC LIMIT $1",
                limit,
            )
        else:
            rows = await self._conn.fetch(
                f"SELECT {self._COLUMNS} FROM kb_searches WHERE generation_id = $1 "
                "ORDER BY created_at DESC, id DESC LIMIT $2",
                generation_id,
                limit,
            )
        return [_model(SearchRecord, row) for row in rows]

    async def summary(self, generation_id: str) -> SearchSummary:
        row = await self._conn.fetchrow(
            "SELECT COUNT(*) AS n, "
            "COALESCE(SUM(CASE WHEN result_count = 0 THEN 1 ELSE 0 END), 0) AS empty, "
            "AVG(top_score) AS top_score, AVG(embed_ms) AS embed_ms, "
            "AVG(search_ms) AS search_ms FROM kb_searches WHERE generation_id = $1",
            generation_id,
        )
        assert row is not None
        return SearchSummary(
            count=int(row["n"]),
            empty_count=int(row["empty"]),
            mean_top_score=_float(row["top_score"]),
            mean_embed_ms=_float(row["embed_ms"]),
            mean_search_ms=_float(row["search_ms"]),
        )

    async def purge(self, before: datetime) -> int:
        return await self._conn.execute("DELETE FROM kb_searches WHERE created_at < $1", before)


class SqlJobRepository(_Repository):
    _COLUMNS = (
        "id, kind, payload, status, progress, attempts, max_attempts, run_at, worker_id, "
        "lease_expires_at, error, result, owner_id, created_at, updated_at"
    )
    _JSON = ("payload", "result")

    async def enqueue(self, job: Job) -> None:
        await self._conn.execute(
            f"INSERT INTO jobs ({self._COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            job.id,
            job.kind,
            _dump(job.payload),
            job.status,
            job.progress,
            job.attempts,
            job.max_attempts,
            job.run_at,
            job.worker_id,
            job.lease_expires_at,
            job.error,
            _dump(job.result),
            job.owner_id,
            job.created_at,
            job.updated_at,
        )

    async def get(self, job_id: str) -> Job | None:
        row = await self._conn.fetchrow(f"SELECT {self._COLUMNS} FROM jobs WHERE id = $1", job_id)
        return _model(Job, row, self._JSON) if row else None

    async def claim(
        self,
        worker_id: str,
        now: datetime,
        lease_seconds: float,
        kinds: Sequence[str] | None = None,
    ) -> Job | None:
        args: list[Any] = [worker_id, now + timedelta(seconds=lease_seconds), now]
        kind_filter = ""
        if kinds is not None:
            if not kinds:
                return None
            kind_filter = f"AND kind IN ({_placeholders(4, len(kinds))}) "
            args.extend(kinds)
        row = await self._conn.fetchrow(
            "UPDATE jobs SET status = 'running', worker_id = $1, lease_expires_at = $2, "
            "attempts = attempts + 1, error = NULL, updated_at = $3 "
            "WHERE id = (SELECT id FROM jobs WHERE attempts < max_attempts AND ("
            "(status = 'queued' AND run_at <= $3) OR "
            "(status = 'running' AND lease_expires_at < $3)) "
            f"{kind_filter}ORDER BY run_at, created_at, id LIMIT 1 "
            f"{self._conn.dialect.skip_locked}) "
            f"RETURNING {self._COLUMNS}",
            *args,
        )
        return _model(Job, row, self._JSON) if row else None

    async def heartbeat(
        self,
        job_id: str,
        worker_id: str,
        now: datetime,
        lease_seconds: float,
        progress: float | None = None,
    ) -> bool:
        return bool(
            await self._conn.execute(
                "UPDATE jobs SET lease_expires_at = $3, updated_at = $4, "
                "progress = COALESCE($5, progress) "
                "WHERE id = $1 AND worker_id = $2 AND status = 'running'",
                job_id,
                worker_id,
                now + timedelta(seconds=lease_seconds),
                now,
                progress,
            )
        )

    async def complete(
        self, job_id: str, worker_id: str, now: datetime, result: Mapping[str, Any] | None = None
    ) -> bool:
        return bool(
            await self._conn.execute(
                "UPDATE jobs SET status = 'succeeded', progress = 1.0, result = $3, "
                "lease_expires_at = NULL, updated_at = $4 "
                "WHERE id = $1 AND worker_id = $2 AND status = 'running'",
                job_id,
                worker_id,
                _dump(result),
                now,
            )
        )

    async def fail(
        self, job_id: str, worker_id: str, now: datetime, error: str, retry_at: datetime | None
    ) -> bool:
        if retry_at is None:
            sql = (
                "UPDATE jobs SET status = 'failed', error = $3, lease_expires_at = NULL, "
                "updated_at = $4 WHERE id = $1 AND worker_id = $2 AND status = 'running'"
            )
            args: tuple[Any, ...] = (job_id, worker_id, error, now)
        else:
            sql = (
                "UPDATE jobs SET status = CASE WHEN attempts < max_attempts THEN 'queued' "
                "ELSE 'failed' END, error = $3, worker_id = NULL, lease_expires_at = NULL, "
                "run_at = $5, updated_at = $4 "
                "WHERE id = $1 AND worker_id = $2 AND status = 'running'"
            )
            args = (job_id, worker_id, error, now, retry_at)
        return bool(await self._conn.execute(sql, *args))

    async def fail_exhausted(self, now: datetime) -> int:
        return await self._conn.execute(
            "UPDATE jobs SET status = 'failed', lease_expires_at = NULL, updated_at = $1, "
            "error = COALESCE(error, 'the worker stopped responding and no attempts are left') "
            "WHERE status = 'running' AND lease_expires_at < $1 AND attempts >= max_attempts",
            now,
        )

    async def list_for_owner(self, owner_id: str, *, limit: int = 50) -> Sequence[Job]:
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM jobs WHERE owner_id = $1 "
            "ORDER BY created_at DESC, id DESC LIMIT $2",
            owner_id,
            limit,
        )
        return [_model(Job, row, self._JSON) for row in rows]

    async def list_recent(
        self, *, kinds: Sequence[str] | None = None, limit: int = 50
    ) -> Sequence[Job]:
        args: list[Any] = [limit]
        kind_filter = ""
        if kinds is not None:
            if not kinds:
                return []
            kind_filter = f"WHERE kind IN ({_placeholders(2, len(kinds))}) "
            args.extend(kinds)
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM jobs {kind_filter}"
            "ORDER BY created_at DESC, id DESC LIMIT $1",
            *args,
        )
        return [_model(Job, row, self._JSON) for row in rows]


class SqlAvatarSessionRepository(_Repository):
    _COLUMNS = (
        "id, owner_id, provider, provider_session_id, status, started_at, last_activity_at, "
        "expires_at, ended_at, cost_seconds, data"
    )

    def _args(self, session: AvatarSession) -> tuple[Any, ...]:
        return (
            session.id,
            session.owner_id,
            session.provider,
            session.provider_session_id,
            session.status,
            session.started_at,
            session.last_activity_at,
            session.expires_at,
            session.ended_at,
            session.cost_seconds,
            _dump(session.data),
        )

    async def add(self, session: AvatarSession) -> None:
        await self._conn.execute(
            f"INSERT INTO avatar_sessions ({self._COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            *self._args(session),
        )

    async def get(self, session_id: str) -> AvatarSession | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._COLUMNS} FROM avatar_sessions WHERE id = $1", session_id
        )
        return _model(AvatarSession, row, ("data",)) if row else None

    async def update(self, session: AvatarSession) -> None:
        changed = await self._conn.execute(
            "UPDATE avatar_sessions SET owner_id = $2, provider = $3, provider_session_id = $4, "
            "status = $5, started_at = $6, last_activity_at = $7, expires_at = $8, "
            "ended_at = $9, cost_seconds = $10, data = $11 WHERE id = $1",
            *self._args(session),
        )
        if not changed:
            raise NotFoundError(f"avatar session {session.id} does not exist")

    async def list_for_owner(
        self, owner_id: str, *, active_only: bool = False
    ) -> Sequence[AvatarSession]:
        active = "AND ended_at IS NULL " if active_only else ""
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM avatar_sessions WHERE owner_id = $1 {active}"
            "ORDER BY started_at, id",
            owner_id,
        )
        return [_model(AvatarSession, row, ("data",)) for row in rows]

    async def list_active(self) -> Sequence[AvatarSession]:
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM avatar_sessions WHERE ended_at IS NULL "
            "ORDER BY started_at, id"
        )
        return [_model(AvatarSession, row, ("data",)) for row in rows]


class SqlConversationRepository(_Repository):
    _COLUMNS = "id, user_id, title, last_seq, created_at, updated_at"
    _EVENT_COLUMNS = "conversation_id, seq, type, data, client_id, created_at"

    async def add(self, conversation: Conversation) -> None:
        await self._conn.execute(
            f"INSERT INTO conversations ({self._COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)",
            conversation.id,
            conversation.user_id,
            conversation.title,
            conversation.last_seq,
            conversation.created_at,
            conversation.updated_at,
        )

    async def get(self, conversation_id: str) -> Conversation | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._COLUMNS} FROM conversations WHERE id = $1", conversation_id
        )
        return _model(Conversation, row) if row else None

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
        return [_model(Conversation, row) for row in rows]

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
                return _model(ConversationEvent, row, ("data",))
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
            f"INSERT INTO conversation_events ({self._EVENT_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            event.conversation_id,
            event.seq,
            event.type,
            _dump(event.data),
            event.client_id,
            event.created_at,
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
        return [_model(ConversationEvent, row, ("data",)) for row in rows]
