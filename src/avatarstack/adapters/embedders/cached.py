"""A memoising wrapper around any embedder: the building block of the embedding cache.

Vectors are keyed by ``(inner.name, inner.dimensions, sha256(text))``, so a rebuild after a
one-page edit only embeds the chunks whose text changed. The cache is an in-memory LRU bounded
by ``max_entries``. Concurrent calls that miss on the same text may both compute it (harmless:
embedders are deterministic).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

from avatarstack.ports.embeddings import Embedder

CacheKey = tuple[str, int, bytes]


class CachedEmbedder:
    """Reports the inner embedder's ``name`` and ``dimensions``; counts ``hits`` and ``misses``.

    Every input text counts once: a *miss* when it was sent to the inner embedder (each distinct
    uncached text of a batch is sent once), a *hit* otherwise (including repeats of a text within
    the same batch).
    """

    def __init__(self, inner: Embedder, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.inner = inner
        self.name = inner.name
        self.dimensions = inner.dimensions
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._cache: OrderedDict[CacheKey, tuple[float, ...]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cache)

    def _key(self, text: str) -> CacheKey:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
        return (self.inner.name, self.inner.dimensions, digest)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        keys = [self._key(text) for text in texts]
        found: dict[CacheKey, tuple[float, ...]] = {}
        missing: dict[CacheKey, str] = {}  # distinct uncached texts, in first-seen order
        for key, text in zip(keys, texts, strict=True):
            if key in found or key in missing:
                continue
            cached = self._cache.get(key)
            if cached is None:
                missing[key] = text
            else:
                self._cache.move_to_end(key)
                found[key] = cached
        if missing:
            vectors = await self.inner.embed(list(missing.values()))
            if len(vectors) != len(missing):
                raise RuntimeError(
                    f"embedder {self.inner.name!r} returned {len(vectors)} vectors "
                    f"for {len(missing)} texts"
                )
            for key, vector in zip(missing, vectors, strict=True):
                found[key] = self._store(key, tuple(vector))
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        return [list(found[key]) for key in keys]

    def _store(self, key: CacheKey, vector: tuple[float, ...]) -> tuple[float, ...]:
        self._cache[key] = vector
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return vector
