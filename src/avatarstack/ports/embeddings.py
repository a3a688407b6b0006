"""The embedder port: text → vectors for the knowledge index.

Embedders are plugins (``register_embedders(register)``); the default must work offline with no
model download. An index generation records the embedder's name and dimensions, and an index
built by another embedder is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Embedder(Protocol):
    #: stable name, part of the embedding-cache key and recorded on each index generation
    name: str
    dimensions: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector of ``dimensions`` floats per text, in order. Must not block
        the event loop for long (run heavy work in a thread)."""
