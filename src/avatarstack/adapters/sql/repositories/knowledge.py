"""SQL repositories of the knowledge context, part two: index generations, the golden set,
blobs, the embedding cache and the search log."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from avatarstack.adapters.sql.repositories._base import (
    _MAX_PARAMETERS,
    Columns,
    _float,
    _model,
    _placeholders,
    _prefixed,
    _Repository,
    _rows,
)
from avatarstack.ports.errors import ConflictError, NotFoundError
from avatarstack.ports.storage import (
    GoldenQuestion,
    IndexGeneration,
    SearchRecord,
    SearchSummary,
    StoredLexicalIndex,
    decode_vector,
    encode_vector,
)

__all__ = [
    "SqlBlobRepository",
    "SqlEmbeddingCacheRepository",
    "SqlGenerationRepository",
    "SqlGoldenSetRepository",
    "SqlSearchLogRepository",
]


class SqlGenerationRepository(_Repository):
    _COLUMNS = Columns(
        IndexGeneration,
        "id, status, embedder, dimensions, document_versions, chunk_count, metrics, error, "
        "job_id, created_at, updated_at",
        json=("document_versions", "metrics"),
    )

    async def add(self, generation: IndexGeneration) -> None:
        await self._conn.execute(
            f"INSERT INTO kb_generations ({self._COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            *self._COLUMNS.values(generation),
        )

    async def get(self, generation_id: str) -> IndexGeneration | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._COLUMNS} FROM kb_generations WHERE id = $1", generation_id
        )
        return self._COLUMNS.record(row) if row else None

    async def list(self, *, limit: int = 50) -> Sequence[IndexGeneration]:
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM kb_generations "
            "ORDER BY created_at DESC, id DESC LIMIT $1",
            limit,
        )
        return [self._COLUMNS.record(row) for row in rows]

    async def update(self, generation: IndexGeneration) -> None:
        changed = await self._conn.execute(
            "UPDATE kb_generations SET status = $2, embedder = $3, dimensions = $4, "
            "document_versions = $5, chunk_count = $6, metrics = $7, error = $8, job_id = $9, "
            "updated_at = $10 WHERE id = $1",
            *self._COLUMNS.values(generation)[:9],
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
        return self._COLUMNS.record(row) if row else None

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
