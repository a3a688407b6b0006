"""Each generation's vector index: filled from the generation's chunks and their vectors and
validated (by a build), compared with the generation, and rebuilt from what the database keeps
after a restore or a move to another Chroma."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from avatarstack.core.jobs import JobContext
from avatarstack.core.knowledge.embedding_cache import EmbeddingCache
from avatarstack.core.knowledge.models import chunk_id, generation_chunks, index_title, text_hash
from avatarstack.core.lexical import indexed_text
from avatarstack.ports.errors import ConflictError, InvalidInputError, NotFoundError
from avatarstack.ports.knowledge import IndexedChunk, KnowledgeStore
from avatarstack.ports.storage import (
    IndexGeneration,
    KnowledgeStorage,
    KnowledgeUnitOfWork,
    StoredChunk,
)

__all__ = ["GenerationIndexes", "IndexInput", "index_input"]

log = structlog.get_logger("avatarstack.knowledge")


@dataclass(frozen=True)
class IndexInput:
    """What a generation's indexes are made of: its chunks, each with its document's title, its
    indexed text and that text's hash (the key of its vector in the embedding cache)."""

    chunks: list[StoredChunk]
    titles: list[str]
    texts: list[str]
    hashes: list[str]


async def index_input(uow: KnowledgeUnitOfWork, generation: IndexGeneration) -> IndexInput:
    """The chunks of the document versions a generation is built from, ready to index."""
    chunks = await generation_chunks(uow, generation)
    titles: dict[tuple[str, int], str] = {}
    for key in dict.fromkeys((c.document_id, c.version) for c in chunks):
        document = await uow.documents.get(key[0])
        version = await uow.documents.get_version(*key)
        titles[key] = index_title(document, version)
    each = [titles[(c.document_id, c.version)] for c in chunks]
    texts = [indexed_text(t, c.heading, c.text) for t, c in zip(each, chunks, strict=True)]
    return IndexInput(chunks, each, texts, [text_hash(t) for t in texts])


class GenerationIndexes:
    """The vector indexes of the generations in the knowledge store."""

    def __init__(
        self,
        storage: KnowledgeStorage,
        store: KnowledgeStore,
        embeddings: EmbeddingCache,
        *,
        batch: int,
    ) -> None:
        self._storage = storage
        self._store = store
        self._embeddings = embeddings
        self._batch = batch

    async def fill(
        self,
        generation: IndexGeneration,
        source: IndexInput,
        vectors: Mapping[str, list[float]],
        ctx: JobContext | None,
    ) -> None:
        """(Re)create the generation's vector index from ``source`` (``vectors`` keyed by its
        hashes) and check what it holds."""
        generation_id = generation.id
        chunks = source.chunks
        await self._store.drop(generation_id)  # a retry starts from an empty index
        await self._store.create(
            generation_id, embedder=generation.embedder, dimensions=generation.dimensions
        )
        for offset in range(0, len(chunks), self._batch):
            end = offset + self._batch
            part = chunks[offset:end]
            await self._store.add(
                generation_id,
                [
                    IndexedChunk(
                        chunk_id=chunk_id(c.document_id, c.version, c.index),
                        document_id=c.document_id,
                        version=c.version,
                        page_start=c.page_start,
                        page_end=c.page_end,
                        text=c.text,
                        embedding=vectors[h],
                        title=t,
                        heading=c.heading,
                    )
                    for c, h, t in zip(
                        part, source.hashes[offset:end], source.titles[offset:end], strict=True
                    )
                ],
            )
            if ctx is not None:
                await ctx.progress(0.6 + 0.25 * (offset + len(part)) / len(chunks), "indexing")
        info = await self._store.describe(generation_id)
        if info is None or info.count != len(chunks) or info.dimensions != generation.dimensions:
            raise InvalidInputError(
                f"validation failed: the index holds {info.count if info else 0} vectors of "
                f"{info.dimensions if info else 0} dimensions, expected {len(chunks)} of "
                f"{generation.dimensions}"
            )

    async def index_matches(self, generation_id: str) -> bool:
        """Whether the vector index of a ``ready`` generation holds exactly its chunks."""
        async with self._storage.unit_of_work() as uow:
            generation = await uow.generations.get(generation_id)
        if generation is None:
            raise NotFoundError("generation not found")
        info = await self._store.describe(generation_id)
        return (
            info is not None
            and info.count == generation.chunk_count
            and info.dimensions == generation.dimensions
        )

    async def restore_index(self, generation_id: str) -> int:
        """Rebuild the vector index of a ``ready`` generation from what the database keeps
        (its chunks and their cached embeddings), leaving the generation as it is: after a
        restore, or a move to another Chroma. Embeddings missing from the cache are computed,
        which needs the generation's embedder. Returns the number of vectors."""
        async with self._storage.unit_of_work() as uow:
            generation = await uow.generations.get(generation_id)
            if generation is None:
                raise NotFoundError("generation not found")
            if generation.status != "ready":
                raise ConflictError(
                    f"generation {generation_id} is {generation.status}; only ready ones are "
                    "restored"
                )
            source = await index_input(uow, generation)
            vectors = await uow.embeddings.get_many(
                generation.embedder, generation.dimensions, source.hashes
            )
        missing = [
            (h, t) for h, t in zip(source.hashes, source.texts, strict=True) if h not in vectors
        ]
        if missing:
            self._embeddings.require_own(
                generation,
                ConflictError,
                f"generation {generation_id} needs {len(missing)} embeddings from embedder "
                f"{generation.embedder!r} that are not cached; the configured embedder is "
                f"{self._embeddings.embedder.name!r}",
            )
            vectors.update(
                await self._embeddings.vectors(
                    [h for h, _ in missing], [t for _, t in missing], None, 0.0, 1.0
                )
            )
        await self.fill(generation, source, vectors, None)
        log.info(
            "kb.generation.index_restored", generation_id=generation_id, chunks=len(source.chunks)
        )
        return len(source.chunks)
