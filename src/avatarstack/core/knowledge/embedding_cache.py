"""The embedding cache: vectors of indexed texts by the hash of the text, per embedder. Ingestion
fills it so a build embeds only what changed; builds and index restores read it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from avatarstack.core.jobs import JobContext
from avatarstack.ports.clock import Clock
from avatarstack.ports.embeddings import Embedder
from avatarstack.ports.errors import AvatarstackError, InvalidInputError
from avatarstack.ports.storage import IndexGeneration, KnowledgeStorage

__all__ = ["EmbeddingCache"]


class EmbeddingCache:
    """The configured embedder behind the stored cache of its vectors, and the check that a
    generation's vectors are its own."""

    def __init__(
        self, storage: KnowledgeStorage, embedder: Embedder, clock: Clock, *, batch: int
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._batch = batch
        self.embedder = embedder

    async def vectors(
        self,
        hashes: Sequence[str],
        texts: Sequence[str],
        ctx: JobContext | None,
        start: float,
        end: float,
    ) -> dict[str, list[float]]:
        """Vectors for the texts, from the embedding cache where possible; misses are embedded
        in batches and stored. Progress moves from ``start`` to ``end``."""
        name, dims = self.embedder.name, self.embedder.dimensions
        wanted = list(dict.fromkeys(hashes))
        async with self._storage.unit_of_work() as uow:
            vectors = await uow.embeddings.get_many(name, dims, wanted)
        text_of = dict(zip(hashes, texts, strict=True))
        missing = [h for h in wanted if h not in vectors]
        for offset in range(0, len(missing), self._batch):
            keys = missing[offset : offset + self._batch]
            embedded = await self.embedder.embed([text_of[k] for k in keys])
            fresh = dict(zip(keys, embedded, strict=True))
            self._check_vectors(fresh.values())
            async with self._storage.unit_of_work() as uow:
                await uow.embeddings.put_many(name, dims, fresh, self._clock.now())
                await uow.commit()
            vectors.update(fresh)
            if ctx is not None:
                done = (offset + len(keys)) / len(missing)
                await ctx.progress(start + (end - start) * done, "embedding")
        return vectors

    def require_own(
        self, generation: IndexGeneration, error: type[AvatarstackError], message: str
    ) -> None:
        """Raise ``error(message)`` unless the configured embedder made (and can extend) this
        generation's vectors: the same embedder name and the same dimensions. The one check
        behind startup (``GenerationService.check_embedder``), builds, index restores and
        activation."""
        if (generation.embedder, generation.dimensions) != (
            self.embedder.name,
            self.embedder.dimensions,
        ):
            raise error(message)

    def _check_vectors(self, vectors: Iterable[Sequence[float]]) -> None:
        for vector in vectors:
            if len(vector) != self.embedder.dimensions:
                raise InvalidInputError(
                    f"embedder {self.embedder.name!r} returned {len(vector)} dimensions, "
                    f"expected {self.embedder.dimensions}"
                )
