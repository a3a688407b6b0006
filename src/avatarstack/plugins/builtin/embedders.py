"""Built-in plugin: the offline feature-hashing embedder, registered as ``hashing``."""

from __future__ import annotations

from collections.abc import Callable

from avatarstack.adapters.embedders import HashingEmbedder
from avatarstack.plugins.markers import hookimpl
from avatarstack.ports.embeddings import Embedder


@hookimpl
def register_embedders(register: Callable[[Embedder], None]) -> None:
    register(HashingEmbedder())
