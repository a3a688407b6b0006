"""The knowledge-store port: the vector index of one index generation.

A generation is built once from an explicit set of document versions into its own collection,
then searched read-only; activation and rollback switch which generation searches use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field


class IndexedChunk(BaseModel):
    model_config = ConfigDict(frozen=True)

    chunk_id: str
    document_id: str
    version: int
    page_start: int
    page_end: int
    text: str
    embedding: list[float] = Field(repr=False)
    #: the document title and section heading carried into the chunk's indexed text
    title: str = ""
    heading: str | None = None


class SearchHit(BaseModel):
    model_config = ConfigDict(frozen=True)

    chunk_id: str
    document_id: str
    version: int
    page: int
    page_end: int
    text: str
    #: the store's cosine similarity (1.0 = same direction); the knowledge service replaces it
    #: with the fused score (0..1) of both channels
    score: float
    #: which channels found the chunk (``lexical``, ``dense``); set by the knowledge service
    channels: tuple[str, ...] = ()
    #: what the chunk is about: its document's title and its section heading (not quoted)
    title: str = ""
    heading: str | None = None


class IndexInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    generation_id: str
    embedder: str
    dimensions: int
    count: int


class KnowledgeStore(Protocol):
    name: str

    async def create(self, generation_id: str, *, embedder: str, dimensions: int) -> None:
        """A new empty index; ConflictError if it exists."""

    async def add(self, generation_id: str, chunks: Sequence[IndexedChunk]) -> None:
        """Add chunks (idempotent per chunk_id); InvalidInputError for wrong dimensions,
        NotFoundError for an unknown generation."""

    async def query(
        self, generation_id: str, embedding: Sequence[float], k: int
    ) -> list[SearchHit]:
        """The ``k`` nearest chunks by cosine similarity, best first."""

    async def fetch(
        self, generation_id: str, chunk_ids: Sequence[str], embedding: Sequence[float]
    ) -> list[SearchHit]:
        """The given chunks (unknown ids left out) scored by cosine similarity to
        ``embedding``, in the order of ``chunk_ids``: how the other channel's finds get a dense
        score. NotFoundError for an unknown generation, InvalidInputError for wrong
        dimensions."""

    async def describe(self, generation_id: str) -> IndexInfo | None: ...

    async def drop(self, generation_id: str) -> None:
        """Delete the index; dropping an unknown one succeeds."""

    async def ping(self) -> None: ...

    async def claim(self) -> None:
        """Open now whatever this process must hold alone: an embedded index takes its lock
        here (:class:`~avatarstack.ports.errors.IndexInUseError` names the process holding
        it). A store shared by several processes (a server) does nothing."""

    async def close(self) -> None: ...
