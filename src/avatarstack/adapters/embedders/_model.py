"""What the model-backed embedders share: the model loads once, and all model work runs in a
worker thread (it is CPU-bound and would stall the event loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any


class ThreadedModelEmbedder:
    """Subclasses implement ``_load`` (load once, raise ``UnavailableError`` with the fetch hint
    when the model is missing) and ``embed_sync``."""

    def _load(self) -> Any:
        raise NotImplementedError

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        raise NotImplementedError

    async def ping(self) -> None:
        """Loads the model once (in a thread); raises ``UnavailableError`` when it cannot."""
        await asyncio.to_thread(self._load)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        texts = list(texts)
        if not texts:
            return []
        return await asyncio.to_thread(self.embed_sync, texts)
