"""In-memory storage for unit tests and throwaway development servers.

Transactions are real: a unit of work edits a copy of the state under a lock and commit swaps it
in, so a failed or abandoned unit of work leaves nothing behind — the same contract suite as the
SQL adapters runs against it.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from avatarstack.ports.errors import (
    ConflictError,
    DuplicateError,
    NotFoundError,
    StorageUnavailableError,
)
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
    PoolStats,
    RefreshToken,
    SearchRecord,
    SearchSummary,
    StorageTimings,
    StoredChunk,
    StoredLexicalIndex,
    UnitOfWork,
    User,
    decode_vector,
    encode_vector,
)

MIGRATIONS = ["0001", "0002", "0003", "0004", "0005"]


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


class _Users(_Repo):
    async def add(self, user: User) -> None:
        if user.id in self._s.users or any(u.email == user.email for u in self._s.users.values()):
            raise DuplicateError("a record with the same key already exists")
        self._s.users[user.id] = user

    async def get(self, user_id: str) -> User | None:
        return self._s.users.get(user_id)

    async def get_by_email(self, email: str) -> User | None:
        return next((u for u in self._s.users.values() if u.email == email), None)

    async def update(self, user: User) -> None:
        old = self._s.users.get(user.id)
        if old is None:
            raise NotFoundError(f"user {user.id} does not exist")
        if any(u.email == user.email and u.id != user.id for u in self._s.users.values()):
            raise DuplicateError("a record with the same key already exists")
        self._s.users[user.id] = user.model_copy(update={"created_at": old.created_at})

    async def list(self, *, limit: int = 50, offset: int = 0) -> Sequence[User]:
        users = sorted(self._s.users.values(), key=lambda u: (u.created_at, u.id))
        return users[offset : offset + limit]

    async def count(self) -> int:
        return len(self._s.users)


class _Roles(_Repo):
    async def get(self, user_id: str) -> frozenset[str]:
        return self._s.roles.get(user_id, frozenset())

    async def set(self, user_id: str, roles: frozenset[str]) -> None:
        if user_id not in self._s.users:
            raise ConflictError("roles need an existing user")
        self._s.roles[user_id] = frozenset(roles)


class _Identities(_Repo):
    async def add(self, identity: Identity) -> None:
        if identity.id in self._s.identities or any(
            (i.provider, i.subject) == (identity.provider, identity.subject)
            for i in self._s.identities.values()
        ):
            raise DuplicateError("a record with the same key already exists")
        self._s.identities[identity.id] = identity

    async def get_by_subject(self, provider: str, subject: str) -> Identity | None:
        return next(
            (
                i
                for i in self._s.identities.values()
                if i.provider == provider and i.subject == subject
            ),
            None,
        )

    async def list_for_user(self, user_id: str) -> Sequence[Identity]:
        found = [i for i in self._s.identities.values() if i.user_id == user_id]
        return sorted(found, key=lambda i: (i.created_at, i.id))

    async def delete(self, identity_id: str) -> bool:
        return self._s.identities.pop(identity_id, None) is not None


class _Tokens(_Repo):
    async def add(self, token: OneTimeToken) -> None:
        if token.token_hash in self._s.tokens:
            raise DuplicateError("a record with the same key already exists")
        self._s.tokens[token.token_hash] = token

    async def consume(self, token_hash: str, purpose: str, now: datetime) -> OneTimeToken | None:
        token = self._s.tokens.get(token_hash)
        if token is None or token.purpose != purpose or token.used_at or token.expires_at <= now:
            return None
        used = token.model_copy(update={"used_at": now})
        self._s.tokens[token_hash] = used
        return used

    async def revoke_for_user(self, user_id: str, purpose: str, now: datetime) -> int:
        found = [
            h
            for h, t in self._s.tokens.items()
            if t.user_id == user_id and t.purpose == purpose and t.used_at is None
        ]
        for token_hash in found:
            self._s.tokens[token_hash] = self._s.tokens[token_hash].model_copy(
                update={"used_at": now}
            )
        return len(found)

    async def delete_expired(self, now: datetime) -> int:
        expired = [h for h, t in self._s.tokens.items() if t.expires_at <= now]
        for token_hash in expired:
            del self._s.tokens[token_hash]
        return len(expired)


class _Sessions(_Repo):
    async def add(self, session: AuthSession) -> None:
        if session.id in self._s.sessions:
            raise DuplicateError("a record with the same key already exists")
        self._s.sessions[session.id] = session

    async def get(self, session_id: str) -> AuthSession | None:
        return self._s.sessions.get(session_id)

    async def list_active(self, user_id: str, now: datetime) -> Sequence[AuthSession]:
        found = [
            s
            for s in self._s.sessions.values()
            if s.user_id == user_id and s.revoked_at is None and s.expires_at > now
        ]
        found.sort(key=lambda s: s.id)
        found.sort(key=lambda s: s.last_used_at, reverse=True)
        return found

    async def touch(self, session_id: str, now: datetime) -> None:
        session = self._s.sessions.get(session_id)
        if session is not None:
            self._s.sessions[session_id] = session.model_copy(update={"last_used_at": now})

    async def revoke(self, session_id: str, now: datetime) -> bool:
        session = self._s.sessions.get(session_id)
        if session is None or session.revoked_at is not None:
            return False
        self._s.sessions[session_id] = session.model_copy(update={"revoked_at": now})
        return True

    async def revoke_all(self, user_id: str, now: datetime) -> int:
        ids = [
            s.id for s in self._s.sessions.values() if s.user_id == user_id and s.revoked_at is None
        ]
        for session_id in ids:
            await self.revoke(session_id, now)
        return len(ids)


class _RefreshTokens(_Repo):
    async def add(self, token: RefreshToken) -> None:
        if token.token_hash in self._s.refresh_tokens:
            raise DuplicateError("a record with the same key already exists")
        if token.session_id not in self._s.sessions:
            raise ConflictError("a refresh token needs an existing session")
        self._s.refresh_tokens[token.token_hash] = token

    async def get(self, token_hash: str) -> RefreshToken | None:
        return self._s.refresh_tokens.get(token_hash)

    async def use(self, token_hash: str, now: datetime) -> RefreshToken | None:
        token = self._s.refresh_tokens.get(token_hash)
        if token is None or token.used_at is not None or token.expires_at <= now:
            return None
        used = token.model_copy(update={"used_at": now})
        self._s.refresh_tokens[token_hash] = used
        return used

    async def delete_expired(self, now: datetime) -> int:
        expired = [h for h, t in self._s.refresh_tokens.items() if t.expires_at <= now]
        for token_hash in expired:
            del self._s.refresh_tokens[token_hash]
        return len(expired)


class _RateLimits(_Repo):
    async def hit(self, key: str, window_start: datetime) -> int:
        hits = self._s.rate_limits.get((key, window_start), 0) + 1
        self._s.rate_limits[(key, window_start)] = hits
        return hits

    async def count(self, key: str, window_start: datetime) -> int:
        return self._s.rate_limits.get((key, window_start), 0)

    async def purge(self, before: datetime) -> int:
        old = [k for k in self._s.rate_limits if k[1] < before]
        for k in old:
            del self._s.rate_limits[k]
        return len(old)


class _Audit(_Repo):
    async def append(self, event: AuditEvent) -> AuditEvent:
        stored = event.model_copy(update={"id": len(self._s.audit) + 1})
        self._s.audit.append(stored)
        return stored

    async def list(
        self, *, limit: int = 50, before_id: int | None = None, subject_id: str | None = None
    ) -> Sequence[AuditEvent]:
        found = [
            e
            for e in reversed(self._s.audit)
            if (before_id is None or (e.id or 0) < before_id)
            and (subject_id is None or e.subject_id == subject_id)
        ]
        return found[:limit]


class _Documents(_Repo):
    async def add(self, document: Document) -> None:
        if document.id in self._s.documents:
            raise DuplicateError("a record with the same key already exists")
        self._s.documents[document.id] = document

    async def get(self, document_id: str) -> Document | None:
        doc = self._s.documents.get(document_id)
        return doc if doc is not None and doc.deleted_at is None else None

    async def list(self, *, limit: int = 50, offset: int = 0) -> Sequence[Document]:
        docs = [d for d in self._s.documents.values() if d.deleted_at is None]
        docs.sort(key=lambda d: (d.created_at, d.id))
        return docs[offset : offset + limit]

    async def set_current_version(self, document_id: str, version: int, now: datetime) -> None:
        doc = await self.get(document_id)
        if doc is None:
            raise NotFoundError(f"document {document_id} does not exist")
        self._s.documents[document_id] = doc.model_copy(
            update={"current_version": version, "updated_at": now}
        )

    async def delete(self, document_id: str, now: datetime) -> bool:
        doc = await self.get(document_id)
        if doc is None:
            return False
        self._s.documents[document_id] = doc.model_copy(
            update={"deleted_at": now, "updated_at": now}
        )
        return True

    async def add_version(self, version: DocumentVersion) -> None:
        key = (version.document_id, version.version)
        if key in self._s.versions:
            raise DuplicateError("a record with the same key already exists")
        if version.document_id not in self._s.documents:
            raise ConflictError("a version needs an existing document")
        self._s.versions[key] = version

    async def get_version(self, document_id: str, version: int) -> DocumentVersion | None:
        return self._s.versions.get((document_id, version))

    async def list_versions(self, document_id: str) -> Sequence[DocumentVersion]:
        found = [v for (d, _), v in self._s.versions.items() if d == document_id]
        return sorted(found, key=lambda v: v.version)

    async def find_version_by_hash(
        self, document_id: str, content_hash: str
    ) -> DocumentVersion | None:
        found = [v for v in await self.list_versions(document_id) if v.content_hash == content_hash]
        return found[-1] if found else None

    async def update_version_status(
        self,
        document_id: str,
        version: int,
        status: str,
        *,
        error: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        current = self._s.versions.get((document_id, version))
        if current is None:
            raise NotFoundError(f"document {document_id} has no version {version}")
        update: dict[str, Any] = {"status": status, "error": error}
        if meta is not None:
            update["meta"] = dict(meta)
        self._s.versions[(document_id, version)] = current.model_copy(update=update)

    async def update_version(self, version: DocumentVersion) -> None:
        key = (version.document_id, version.version)
        current = self._s.versions.get(key)
        if current is None:
            raise NotFoundError(f"document {version.document_id} has no version {version.version}")
        self._s.versions[key] = current.model_copy(
            update={
                "content_hash": version.content_hash,
                "status": version.status,
                "error": version.error,
                "meta": dict(version.meta),
                "file_sha256": version.file_sha256,
            }
        )

    async def delete_version(self, document_id: str, version: int) -> bool:
        if self._s.versions.pop((document_id, version), None) is None:
            return False
        for key in [k for k in self._s.chunks if k[:2] == (document_id, version)]:
            del self._s.chunks[key]
        return True

    def _newest_live(self, found: Sequence[DocumentVersion]) -> DocumentVersion | None:
        """The newest of ``found`` whose document is not deleted."""
        live = [
            v
            for v in found
            if (doc := self._s.documents.get(v.document_id)) is not None and doc.deleted_at is None
        ]
        if not live:
            return None
        return max(live, key=lambda v: (v.created_at, v.version, v.document_id))

    async def find_by_file(self, file_sha256: str) -> DocumentVersion | None:
        return self._newest_live(
            [
                v
                for v in self._s.versions.values()
                if v.file_sha256 == file_sha256 and v.status != "failed"
            ]
        )

    async def find_by_content(self, content_hash: str) -> DocumentVersion | None:
        return self._newest_live(
            [
                v
                for v in self._s.versions.values()
                if v.content_hash == content_hash and v.status == "ready"
            ]
        )

    async def list_current(self) -> Sequence[Document]:
        docs = [
            d
            for d in self._s.documents.values()
            if d.deleted_at is None and d.current_version is not None
        ]
        return sorted(docs, key=lambda d: (d.created_at, d.id))

    async def count(self) -> int:
        return sum(1 for d in self._s.documents.values() if d.deleted_at is None)


class _Chunks(_Repo):
    async def add_many(self, chunks: Sequence[StoredChunk]) -> None:
        keys = [(c.document_id, c.version, c.index) for c in chunks]
        if len(set(keys)) != len(keys) or any(k in self._s.chunks for k in keys):
            raise DuplicateError("a record with the same key already exists")
        if any((c.document_id, c.version) not in self._s.versions for c in chunks):
            raise ConflictError("a chunk needs an existing document version")
        for key, chunk in zip(keys, chunks, strict=True):
            self._s.chunks[key] = chunk

    async def list_for_version(self, document_id: str, version: int) -> Sequence[StoredChunk]:
        found = [c for (d, v, _), c in self._s.chunks.items() if (d, v) == (document_id, version)]
        return sorted(found, key=lambda c: c.index)

    async def delete_for_version(self, document_id: str, version: int) -> int:
        keys = [k for k in self._s.chunks if k[:2] == (document_id, version)]
        for key in keys:
            del self._s.chunks[key]
        return len(keys)

    async def count_for_version(self, document_id: str, version: int) -> int:
        return sum(1 for k in self._s.chunks if k[:2] == (document_id, version))


class _Generations(_Repo):
    async def add(self, generation: IndexGeneration) -> None:
        if generation.id in self._s.generations:
            raise DuplicateError("a record with the same key already exists")
        self._s.generations[generation.id] = generation

    async def get(self, generation_id: str) -> IndexGeneration | None:
        return self._s.generations.get(generation_id)

    async def list(self, *, limit: int = 50) -> Sequence[IndexGeneration]:
        found = sorted(
            self._s.generations.values(), key=lambda g: (g.created_at, g.id), reverse=True
        )
        return found[:limit]

    async def update(self, generation: IndexGeneration) -> None:
        old = self._s.generations.get(generation.id)
        if old is None:
            raise NotFoundError(f"index generation {generation.id} does not exist")
        self._s.generations[generation.id] = generation.model_copy(
            update={"created_at": old.created_at}
        )

    async def delete(self, generation_id: str) -> bool:
        if generation_id == self._s.active_generation:
            raise ConflictError("the active index generation cannot be deleted")
        self._s.lexical.pop(generation_id, None)
        return self._s.generations.pop(generation_id, None) is not None

    async def get_active(self) -> IndexGeneration | None:
        if self._s.active_generation is None:
            return None
        return self._s.generations.get(self._s.active_generation)

    async def set_active(self, generation_id: str, now: datetime) -> None:
        generation = self._s.generations.get(generation_id)
        if generation is None:
            raise NotFoundError(f"index generation {generation_id} does not exist")
        if generation.status != "ready":
            raise ConflictError(
                f"index generation {generation_id} is {generation.status}; only a ready one "
                "can be activated"
            )
        self._s.active_generation = generation_id

    async def put_lexical(self, index: StoredLexicalIndex) -> None:
        if index.generation_id not in self._s.generations:
            raise NotFoundError(f"index generation {index.generation_id} does not exist")
        self._s.lexical[index.generation_id] = index

    async def get_lexical(self, generation_id: str) -> StoredLexicalIndex | None:
        return self._s.lexical.get(generation_id)


class _GoldenSet(_Repo):
    async def replace(self, questions: Sequence[GoldenQuestion]) -> None:
        ids = [q.id for q in questions]
        if len(set(ids)) != len(ids):
            raise DuplicateError("a record with the same key already exists")
        self._s.golden_set = {q.id: q for q in questions}

    async def list(self) -> Sequence[GoldenQuestion]:
        return sorted(self._s.golden_set.values(), key=lambda q: (q.created_at, q.id))


class _Blobs(_Repo):
    async def put(self, sha256: str, data: bytes, now: datetime) -> None:
        self._s.blobs.setdefault(sha256, bytes(data))

    async def get(self, sha256: str) -> bytes | None:
        return self._s.blobs.get(sha256)

    async def delete_unreferenced(self) -> int:
        referenced = {v.file_sha256 for v in self._s.versions.values()}
        unreferenced = [sha for sha in self._s.blobs if sha not in referenced]
        for sha in unreferenced:
            del self._s.blobs[sha]
        return len(unreferenced)


class _Embeddings(_Repo):
    async def get_many(
        self, embedder: str, dimensions: int, hashes: Sequence[str]
    ) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        for text_hash in hashes:
            stored = self._s.embeddings.get((embedder, dimensions, text_hash))
            if stored is not None:
                found[text_hash] = decode_vector(stored)
        return found

    async def put_many(
        self,
        embedder: str,
        dimensions: int,
        vectors: Mapping[str, Sequence[float]],
        now: datetime,
    ) -> None:
        encoded = {h: encode_vector(v, dimensions) for h, v in vectors.items()}
        for text_hash, vector in encoded.items():
            self._s.embeddings.setdefault((embedder, dimensions, text_hash), vector)

    async def count(self, embedder: str | None = None) -> int:
        return sum(1 for key in self._s.embeddings if embedder is None or key[0] == embedder)


class _Searches(_Repo):
    async def append(self, record: SearchRecord) -> None:
        self._s.last_search_id += 1
        self._s.searches.append(record.model_copy(update={"id": self._s.last_search_id}))

    async def list(
        self, generation_id: str | None = None, *, limit: int = 50
    ) -> Sequence[SearchRecord]:
        found = [
            r for r in self._s.searches if generation_id is None or r.generation_id == generation_id
        ]
        found.sort(key=lambda r: (r.created_at, r.id or 0), reverse=True)
        return found[:limit]

    async def summary(self, generation_id: str) -> SearchSummary:
        found = [r for r in self._s.searches if r.generation_id == generation_id]
        scores = [r.top_score for r in found if r.top_score is not None]
        return SearchSummary(
            count=len(found),
            empty_count=sum(1 for r in found if r.result_count == 0),
            mean_top_score=_mean(scores),
            mean_embed_ms=_mean([r.embed_ms for r in found]),
            mean_search_ms=_mean([r.search_ms for r in found]),
        )

    async def purge(self, before: datetime) -> int:
        kept = [r for r in self._s.searches if r.created_at >= before]
        purged = len(self._s.searches) - len(kept)
        self._s.searches = kept
        return purged


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


class _Jobs(_Repo):
    async def enqueue(self, job: Job) -> None:
        if job.id in self._s.jobs:
            raise DuplicateError("a record with the same key already exists")
        self._s.jobs[job.id] = job

    async def get(self, job_id: str) -> Job | None:
        return self._s.jobs.get(job_id)

    async def claim(
        self,
        worker_id: str,
        now: datetime,
        lease_seconds: float,
        kinds: Sequence[str] | None = None,
    ) -> Job | None:
        runnable = [
            j
            for j in self._s.jobs.values()
            if j.attempts < j.max_attempts
            and (kinds is None or j.kind in kinds)
            and (
                (j.status == "queued" and j.run_at <= now)
                or (
                    j.status == "running"
                    and j.lease_expires_at is not None
                    and j.lease_expires_at < now
                )
            )
        ]
        if not runnable:
            return None
        job = min(runnable, key=lambda j: (j.run_at, j.created_at, j.id))
        claimed = job.model_copy(
            update={
                "status": "running",
                "worker_id": worker_id,
                "lease_expires_at": now + timedelta(seconds=lease_seconds),
                "attempts": job.attempts + 1,
                "error": None,
                "updated_at": now,
            }
        )
        self._s.jobs[job.id] = claimed
        return claimed

    def _held(self, job_id: str, worker_id: str) -> Job | None:
        job = self._s.jobs.get(job_id)
        if job is None or job.worker_id != worker_id or job.status != "running":
            return None
        return job

    async def heartbeat(
        self,
        job_id: str,
        worker_id: str,
        now: datetime,
        lease_seconds: float,
        progress: float | None = None,
    ) -> bool:
        job = self._held(job_id, worker_id)
        if job is None:
            return False
        update: dict[str, Any] = {
            "lease_expires_at": now + timedelta(seconds=lease_seconds),
            "updated_at": now,
        }
        if progress is not None:
            update["progress"] = progress
        self._s.jobs[job_id] = job.model_copy(update=update)
        return True

    async def complete(
        self, job_id: str, worker_id: str, now: datetime, result: Mapping[str, Any] | None = None
    ) -> bool:
        job = self._held(job_id, worker_id)
        if job is None:
            return False
        self._s.jobs[job_id] = job.model_copy(
            update={
                "status": "succeeded",
                "progress": 1.0,
                "result": dict(result or {}),
                "lease_expires_at": None,
                "updated_at": now,
            }
        )
        return True

    async def fail(
        self, job_id: str, worker_id: str, now: datetime, error: str, retry_at: datetime | None
    ) -> bool:
        job = self._held(job_id, worker_id)
        if job is None:
            return False
        update: dict[str, Any] = {"error": error, "lease_expires_at": None, "updated_at": now}
        if retry_at is None or job.attempts >= job.max_attempts:
            update["status"] = "failed"
        else:
            update["status"] = "queued"
        if retry_at is not None:
            update.update(worker_id=None, run_at=retry_at)
        self._s.jobs[job_id] = job.model_copy(update=update)
        return True

    async def fail_exhausted(self, now: datetime) -> int:
        count = 0
        for job in list(self._s.jobs.values()):
            if (
                job.status == "running"
                and job.lease_expires_at is not None
                and job.lease_expires_at < now
                and job.attempts >= job.max_attempts
            ):
                self._s.jobs[job.id] = job.model_copy(
                    update={
                        "status": "failed",
                        "lease_expires_at": None,
                        "updated_at": now,
                        "error": job.error
                        or "the worker stopped responding and no attempts are left",
                    }
                )
                count += 1
        return count

    async def list_for_owner(self, owner_id: str, *, limit: int = 50) -> Sequence[Job]:
        found = [j for j in self._s.jobs.values() if j.owner_id == owner_id]
        found.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return found[:limit]

    async def list_recent(
        self, *, kinds: Sequence[str] | None = None, limit: int = 50
    ) -> Sequence[Job]:
        found = [j for j in self._s.jobs.values() if kinds is None or j.kind in kinds]
        found.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return found[:limit]


class _AvatarSessions(_Repo):
    async def add(self, session: AvatarSession) -> None:
        if session.id in self._s.avatar_sessions:
            raise DuplicateError("a record with the same key already exists")
        self._s.avatar_sessions[session.id] = session

    async def get(self, session_id: str) -> AvatarSession | None:
        return self._s.avatar_sessions.get(session_id)

    async def update(self, session: AvatarSession) -> None:
        if session.id not in self._s.avatar_sessions:
            raise NotFoundError(f"avatar session {session.id} does not exist")
        self._s.avatar_sessions[session.id] = session

    async def list_for_owner(
        self, owner_id: str, *, active_only: bool = False
    ) -> Sequence[AvatarSession]:
        found = [
            s
            for s in self._s.avatar_sessions.values()
            if s.owner_id == owner_id and (not active_only or s.ended_at is None)
        ]
        return sorted(found, key=lambda s: (s.started_at, s.id))

    async def list_active(self) -> Sequence[AvatarSession]:
        found = [s for s in self._s.avatar_sessions.values() if s.ended_at is None]
        return sorted(found, key=lambda s: (s.started_at, s.id))


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


class _UnitOfWork:
    def __init__(self, storage: MemoryStorage, state: _State) -> None:
        self._storage = storage
        self._state = state
        self.finished = False
        self.users = _Users(state)
        self.roles = _Roles(state)
        self.identities = _Identities(state)
        self.tokens = _Tokens(state)
        self.sessions = _Sessions(state)
        self.refresh_tokens = _RefreshTokens(state)
        self.rate_limits = _RateLimits(state)
        self.audit = _Audit(state)
        self.documents = _Documents(state)
        self.chunks = _Chunks(state)
        self.generations = _Generations(state)
        self.golden_set = _GoldenSet(state)
        self.blobs = _Blobs(state)
        self.embeddings = _Embeddings(state)
        self.searches = _Searches(state)
        self.jobs = _Jobs(state)
        self.avatar_sessions = _AvatarSessions(state)
        self.conversations = _Conversations(state)

    async def lock(self, name: str) -> None:
        """Units of work already run one at a time here."""

    async def commit(self) -> None:
        if self.finished:
            raise RuntimeError("this unit of work has already finished")
        self.finished = True
        self._storage._state = self._state

    async def rollback(self) -> None:
        self.finished = True


class MemoryStorage:
    """Process-local storage with real transactions; not shared between processes."""

    name = "memory"

    def __init__(self) -> None:
        self._state = _State()
        self._lock = asyncio.Lock()
        #: units of work taking the lock (no statements: nothing is sent anywhere)
        self.timings = StorageTimings()
        self._started = False
        #: set to True to simulate an outage (ping and units of work raise 503 errors)
        self.unavailable = False

    async def start(self) -> None:
        self._started = True

    async def close(self) -> None:
        self._started = False

    def _check(self) -> None:
        if not self._started or self.unavailable:
            raise StorageUnavailableError("the in-memory storage is not available")

    async def ping(self) -> None:
        self._check()

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        self._check()
        waited = self._lock.locked()
        started = time.perf_counter()
        async with self._lock:
            self.timings.acquired(waited=waited, seconds=time.perf_counter() - started)
            uow = _UnitOfWork(self, copy.deepcopy(self._state))
            try:
                yield uow
            finally:
                await uow.rollback()

    async def migrate(self) -> list[str]:
        self._check()
        todo = [v for v in MIGRATIONS if v not in self._state.applied]
        self._state.applied.extend(todo)
        return todo

    async def pending_migrations(self) -> list[str]:
        self._check()
        return [v for v in MIGRATIONS if v not in self._state.applied]

    async def schema_version(self) -> str | None:
        self._check()
        return self._state.applied[-1] if self._state.applied else None

    def pool_stats(self) -> PoolStats:
        return PoolStats(size=1, idle=0 if self._lock.locked() else 1, max_size=1)
