"""Search over the active generation: both channels (dense vectors and the lexical index) fused
(see :mod:`avatarstack.core.lexical`), hits of deleted documents dropped, every search logged
and observed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import structlog

from avatarstack.core.knowledge.lexical_indexes import LexicalIndexes
from avatarstack.core.knowledge.models import KnowledgeConfig, SearchObserver, SearchResult
from avatarstack.core.lexical import (
    Candidate,
    channel_names,
    expand,
    fuse,
    normalised_dense,
    normalised_lexical,
    query_tokens,
    related_terms,
)
from avatarstack.ports.clock import Clock
from avatarstack.ports.embeddings import Embedder
from avatarstack.ports.errors import FieldError, InvalidInputError
from avatarstack.ports.knowledge import KnowledgeStore, SearchHit
from avatarstack.ports.storage import KnowledgeStorage, SearchRecord

__all__ = ["SearchService"]

log = structlog.get_logger("avatarstack.knowledge")

_MAX_QUERY = 2000


class SearchService:
    """Searches of the knowledge base, and the ranking the golden-set evaluation shares."""

    def __init__(
        self,
        storage: KnowledgeStorage,
        store: KnowledgeStore,
        embedder: Embedder,
        clock: Clock,
        lexical: LexicalIndexes,
        *,
        config: KnowledgeConfig,
        observer: SearchObserver | None = None,
    ) -> None:
        self._storage = storage
        self._store = store
        self._embedder = embedder
        self._clock = clock
        self._lexical = lexical
        self._config = config
        self._related = related_terms(config.related_terms)
        self._observer = observer

    async def search(
        self, query: str, *, k: int | None = None, user_id: str | None = None
    ) -> SearchResult:
        """The ``k`` best chunks of the **active** generation (none before one is active)."""
        text = " ".join(query.split())
        if not text:
            raise InvalidInputError("query is empty", [FieldError(field="query", message="empty")])
        if len(text) > _MAX_QUERY:
            raise InvalidInputError(
                f"query is longer than {_MAX_QUERY} characters",
                [FieldError(field="query", message="too long")],
            )
        size = k or self._config.search_k
        if not 1 <= size <= self._config.max_k:
            raise InvalidInputError(
                f"k must be between 1 and {self._config.max_k}",
                [FieldError(field="k", message="out of range")],
            )
        async with self._storage.unit_of_work() as uow:
            active = await uow.generations.get_active()
        if active is None:
            return SearchResult(generation_id=None, hits=[])
        started = time.perf_counter()
        [vector] = await self._embedder.embed([text])
        embedded = time.perf_counter()
        hits = await self.rank(active.id, text, vector, size)
        searched = time.perf_counter()
        hits = await self._visible(hits)
        embed_s, search_s = embedded - started, searched - embedded
        top = hits[0].score if hits else None
        if self._observer is not None:
            self._observer.observe_search(
                active.id,
                embed_seconds=embed_s,
                search_seconds=search_s,
                top_score=top,
                empty=not hits,
            )
        record = SearchRecord(
            generation_id=active.id,
            user_id=user_id,
            query=text,
            k=size,
            result_count=len(hits),
            top_score=top,
            embed_ms=embed_s * 1000,
            search_ms=search_s * 1000,
            created_at=self._clock.now(),
        )
        try:
            async with self._storage.unit_of_work() as uow:
                await uow.searches.append(record)
                await uow.commit()
        except Exception:  # monitoring must not fail the search
            log.warning("kb.search.record_failed", generation_id=active.id)
        return SearchResult(active.id, hits, embed_s * 1000, search_s * 1000)

    async def rank(
        self, generation_id: str, text: str, vector: Sequence[float], k: int
    ) -> list[SearchHit]:
        """The ``k`` best chunks of a generation for a query: both channels' top candidates,
        each scored on both channels, fused (see :mod:`avatarstack.core.lexical`). A generation
        without a lexical index (built before there was one) ranks by cosine alone."""
        depth = max(k, self._config.candidates)
        dense = await self._store.query(generation_id, vector, depth)
        lexical = await self._lexical.load(generation_id)
        if lexical is None:
            return [h.model_copy(update={"channels": ("dense",)}) for h in dense[:k]]
        question = query_tokens(text)
        terms = question + expand(question, self._related)
        found = await asyncio.to_thread(lexical.index.search, terms, depth) if terms else []
        ceiling = lexical.index.ceiling(question)
        candidates: dict[str, Candidate] = {}
        by_id = {h.chunk_id: h for h in dense}
        for hit in dense:
            candidates[hit.chunk_id] = Candidate(
                hit.chunk_id, dense=normalised_dense(hit.score), channels={"dense"}
            )
        for position, score in found:
            cid = lexical.chunk_ids[position]
            candidate = candidates.setdefault(cid, Candidate(cid))
            candidate.lexical = normalised_lexical(score, ceiling)
            candidate.channels.add("lexical")
        dense_only = [c for c in candidates.values() if "lexical" not in c.channels]
        if terms and dense_only:
            positions = [lexical.positions.get(c.chunk_id, -1) for c in dense_only]
            for candidate, score in zip(
                dense_only, lexical.index.scores(terms, positions), strict=True
            ):
                candidate.lexical = normalised_lexical(score, ceiling)
        missing = [c.chunk_id for c in candidates.values() if c.chunk_id not in by_id]
        if missing:
            for hit in await self._store.fetch(generation_id, missing, vector):
                by_id[hit.chunk_id] = hit
                candidates[hit.chunk_id].dense = normalised_dense(hit.score)
        ranked = fuse(
            (c for c in candidates.values() if c.chunk_id in by_id), self._config.dense_weight
        )
        return [
            by_id[c.chunk_id].model_copy(
                update={"score": c.score, "channels": tuple(channel_names(sorted(c.channels)))}
            )
            for c in ranked[:k]
        ]

    async def _visible(self, hits: list[SearchHit]) -> list[SearchHit]:
        """Drop hits of documents deleted after the generation was built."""
        if not hits:
            return hits
        async with self._storage.unit_of_work() as uow:
            alive = {
                document_id
                for document_id in {h.document_id for h in hits}
                if await uow.documents.get(document_id) is not None
            }
        return [h for h in hits if h.document_id in alive]
