"""The embedder port: text → vectors for the knowledge index.

Embedders are plugins (``register_embedders(register)``); the default must work offline with no
model download. An index generation records the embedder's name and dimensions, and an index
built by another embedder is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


class Embedder(Protocol):
    #: stable name, part of the embedding-cache key and recorded on each index generation
    name: str
    dimensions: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector of ``dimensions`` floats per text, in order. Must not block
        the event loop for long (run heavy work in a thread)."""


@runtime_checkable
class PreloadingEmbedder(Embedder, Protocol):
    """An optional capability: an embedder with something to load before its first use (a
    model). Startup calls ``ping`` so that a missing model is reported then, not at the first
    question."""

    async def ping(self) -> None:
        """Load what the embedder needs (once); ``UnavailableError`` naming the fetch step when
        it cannot."""
