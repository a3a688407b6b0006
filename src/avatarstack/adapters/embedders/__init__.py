"""Embedders: the offline feature-hashing default and a memoising wrapper for any embedder."""

from avatarstack.adapters.embedders.cached import CachedEmbedder
from avatarstack.adapters.embedders.hashing import HashingEmbedder

__all__ = ["CachedEmbedder", "HashingEmbedder"]
