"""Each generation's lexical index (the BM25 channel of search): built and stored with the
generation, loaded once per instance from storage (the same bytes everywhere) and kept for the
last few generations."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from avatarstack.core.knowledge.models import chunk_id
from avatarstack.core.lexical import TOKENIZER_VERSION, chunk_tokens
from avatarstack.ports.lexical import LexicalIndex, LexicalIndexer
from avatarstack.ports.storage import KnowledgeStorage, StoredChunk, StoredLexicalIndex

__all__ = ["LexicalIndexes", "LoadedLexical"]

log = structlog.get_logger("avatarstack.knowledge")


@dataclass
class LoadedLexical:
    """A loaded index, the chunk id at each of its positions and the way back."""

    index: LexicalIndex
    chunk_ids: list[str]
    positions: dict[str, int]


class LexicalIndexes:
    """The lexical indexes of the generations; without an indexer there are none (search then
    ranks by cosine alone)."""

    def __init__(
        self, storage: KnowledgeStorage, indexer: LexicalIndexer | None, *, cache: int
    ) -> None:
        self._storage = storage
        self._indexer = indexer
        self._cache = cache
        self._loaded: OrderedDict[str, LoadedLexical | None] = OrderedDict()
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self._indexer is not None

    async def build(
        self, generation_id: str, chunks: Sequence[StoredChunk], texts: Sequence[str]
    ) -> None:
        """Index the generation's indexed ``texts`` (one per chunk) and store the index."""
        indexer = self._indexer
        if indexer is None:
            return
        data = await asyncio.to_thread(lambda: indexer.build([chunk_tokens(t) for t in texts]))
        async with self._storage.unit_of_work() as uow:
            await uow.generations.put_lexical(
                StoredLexicalIndex(
                    generation_id=generation_id,
                    indexer=indexer.name,
                    tokenizer=TOKENIZER_VERSION,
                    chunk_ids=[chunk_id(c.document_id, c.version, c.index) for c in chunks],
                    data=data,
                )
            )
            await uow.commit()
        self._loaded.pop(generation_id, None)  # a retried build: load the new bytes

    async def load(self, generation_id: str) -> LoadedLexical | None:
        """The generation's lexical index, loaded once per instance and kept for the last
        ``cache`` generations; None when it has none (built before there was one, or with
        another tokenizer)."""
        if self._indexer is None:
            return None
        if generation_id in self._loaded:
            self._loaded.move_to_end(generation_id)
            return self._loaded[generation_id]
        async with self._lock:
            if generation_id in self._loaded:
                return self._loaded[generation_id]
            async with self._storage.unit_of_work() as uow:
                stored = await uow.generations.get_lexical(generation_id)
            loaded: LoadedLexical | None = None
            if stored is not None and stored.tokenizer == TOKENIZER_VERSION:
                index = await asyncio.to_thread(self._indexer.load, stored.data)
                loaded = LoadedLexical(
                    index, stored.chunk_ids, {c: n for n, c in enumerate(stored.chunk_ids)}
                )
            elif stored is not None:
                log.warning(
                    "kb.lexical.tokenizer_mismatch",
                    generation_id=generation_id,
                    stored=stored.tokenizer,
                    expected=TOKENIZER_VERSION,
                )
            self._loaded[generation_id] = loaded
            while len(self._loaded) > self._cache:
                self._loaded.popitem(last=False)
            return loaded
