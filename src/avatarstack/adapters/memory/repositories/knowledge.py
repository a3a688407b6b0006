"""In-memory repositories of the knowledge context."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from avatarstack.adapters.memory.repositories._base import _Repo
from avatarstack.ports.errors import ConflictError, DuplicateError, NotFoundError
from avatarstack.ports.storage import (
    Document,
    DocumentVersion,
    GoldenQuestion,
    IndexGeneration,
    SearchRecord,
    SearchSummary,
    StoredChunk,
    StoredLexicalIndex,
    decode_vector,
    encode_vector,
)


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
