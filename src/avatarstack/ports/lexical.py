"""The lexical-index port: a BM25 index over the chunks of one index generation.

The knowledge service tokenises the chunks (``avatarstack.core.lexical.tokens``) and hands the
token lists to :meth:`LexicalIndexer.build`, which returns the index as bytes; those bytes are
stored with the generation in the database (``GenerationRepository.put_lexical``), so every
instance loads the same bytes (:meth:`LexicalIndexer.load`) and ranks the same way. Documents are
addressed by their position in the list given to ``build``.

Scores are BM25 in Lucene's form: ``Σ idf(t) · tf / (tf + k1 · (1 - b + b · dl / avgdl))`` with
``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))``, so one query token adds at most ``idf(t)`` and
:meth:`LexicalIndex.ceiling` (the sum of the query tokens' idf) bounds every document's score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

#: BM25 parameters shared by every implementation (the same bytes must rank the same way).
#: ``b`` is 0.3, not Lucene's 0.75: a chunk is bounded in length by the chunker, counts each token
#: once and carries the document title and heading, so a longer chunk is not a less focused one;
#: at 0.75 the chunk that holds the answer lost to short boilerplate chunks that share only the
#: title (generated manuals, offline default, unseen wording: hit@1 0.800 → 0.908, hit@5 0.921
#: → 0.988; bm25s bakes b into the index, so older generations keep the b they were built with)
K1 = 1.2
B = 0.3


class LexicalIndex(Protocol):
    """A loaded, read-only index. Methods are synchronous and CPU-bound (call them off the event
    loop for large indexes)."""

    @property
    def size(self) -> int:
        """How many documents the index holds."""

    def search(self, tokens: Sequence[str], k: int) -> list[tuple[int, float]]:
        """The ``k`` best documents with a score above 0 as (position, score), best first, ties
        by position."""

    def scores(self, tokens: Sequence[str], positions: Sequence[int]) -> list[float]:
        """The score of each given document (0.0 when no query token occurs in it)."""

    def ceiling(self, tokens: Sequence[str]) -> float:
        """Σ idf(t) over the query tokens (unknown tokens count with df = 0): no document can
        score more; divide by it for a 0..1 score."""


class LexicalIndexer(Protocol):
    name: str

    def build(self, documents: Sequence[Sequence[str]]) -> bytes:
        """The index of the documents' token lists, serialised."""

    def load(self, data: bytes) -> LexicalIndex:
        """An index from :meth:`build`'s bytes; InvalidInputError when they are not one."""
