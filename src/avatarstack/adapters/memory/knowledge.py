"""``KnowledgeStore`` in process: exact brute-force cosine search.

The reference implementation: recall tests compare approximate (HNSW) stores against it.
Pure Python — fine for tests and small development corpora.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from avatarstack.ports.errors import ConflictError, InvalidInputError, NotFoundError
from avatarstack.ports.knowledge import IndexedChunk, IndexInfo, SearchHit


def _unit(vector: Sequence[float]) -> tuple[float, ...]:
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if norm == 0.0:
        return tuple(0.0 for _ in vector)
    return tuple(x / norm for x in vector)


def _hit(chunk: IndexedChunk, score: float) -> SearchHit:
    return SearchHit(
        chunk_id=chunk.chunk_id,
        document_id=chunk.document_id,
        version=chunk.version,
        page=chunk.page_start,
        page_end=chunk.page_end,
        text=chunk.text,
        score=min(1.0, max(-1.0, score)),
        title=chunk.title,
        heading=chunk.heading,
    )


@dataclass
class _Generation:
    embedder: str
    dimensions: int
    #: chunk_id → (chunk, its embedding scaled to unit length)
    chunks: dict[str, tuple[IndexedChunk, tuple[float, ...]]] = field(default_factory=dict)


class MemoryKnowledgeStore:
    name = "memory"

    def __init__(self) -> None:
        self._generations: dict[str, _Generation] = {}

    def _get(self, generation_id: str) -> _Generation:
        generation = self._generations.get(generation_id)
        if generation is None:
            raise NotFoundError(f"index generation {generation_id!r} does not exist")
        return generation

    async def create(self, generation_id: str, *, embedder: str, dimensions: int) -> None:
        if dimensions < 1:
            raise InvalidInputError(f"dimensions must be positive, got {dimensions}")
        if generation_id in self._generations:
            raise ConflictError(f"index generation {generation_id!r} already exists")
        self._generations[generation_id] = _Generation(embedder=embedder, dimensions=dimensions)

    async def add(self, generation_id: str, chunks: Sequence[IndexedChunk]) -> None:
        generation = self._get(generation_id)
        for chunk in chunks:
            if len(chunk.embedding) != generation.dimensions:
                raise InvalidInputError(
                    f"chunk {chunk.chunk_id!r} has {len(chunk.embedding)} dimensions, "
                    f"index generation {generation_id!r} expects {generation.dimensions}"
                )
        for chunk in chunks:
            generation.chunks[chunk.chunk_id] = (chunk, _unit(chunk.embedding))

    async def query(
        self, generation_id: str, embedding: Sequence[float], k: int
    ) -> list[SearchHit]:
        generation = self._get(generation_id)
        if k < 1:
            raise InvalidInputError(f"k must be at least 1, got {k}")
        if len(embedding) != generation.dimensions:
            raise InvalidInputError(
                f"query has {len(embedding)} dimensions, "
                f"index generation {generation_id!r} expects {generation.dimensions}"
            )
        query = _unit(embedding)
        scored = [
            (sum(q * v for q, v in zip(query, vector, strict=True)), chunk)
            for chunk, vector in generation.chunks.values()
        ]
        scored.sort(key=lambda item: (-item[0], item[1].chunk_id))
        return [_hit(chunk, score) for score, chunk in scored[:k]]

    async def fetch(
        self, generation_id: str, chunk_ids: Sequence[str], embedding: Sequence[float]
    ) -> list[SearchHit]:
        generation = self._get(generation_id)
        if len(embedding) != generation.dimensions:
            raise InvalidInputError(
                f"query has {len(embedding)} dimensions, "
                f"index generation {generation_id!r} expects {generation.dimensions}"
            )
        query = _unit(embedding)
        hits = []
        for chunk_id in dict.fromkeys(chunk_ids):
            found = generation.chunks.get(chunk_id)
            if found is not None:
                chunk, vector = found
                score = sum(q * v for q, v in zip(query, vector, strict=True))
                hits.append(_hit(chunk, score))
        return hits

    async def describe(self, generation_id: str) -> IndexInfo | None:
        generation = self._generations.get(generation_id)
        if generation is None:
            return None
        return IndexInfo(
            generation_id=generation_id,
            embedder=generation.embedder,
            dimensions=generation.dimensions,
            count=len(generation.chunks),
        )

    async def drop(self, generation_id: str) -> None:
        self._generations.pop(generation_id, None)

    async def ping(self) -> None:
        return None

    async def claim(self) -> None:
        return None  # nothing is shared between processes

    async def close(self) -> None:
        return None
