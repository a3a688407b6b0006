"""Chroma adapters: the knowledge store on an embedded or remote Chroma."""

from avatarstack.adapters.chroma.knowledge import ChromaKnowledgeStore, HnswOptions

__all__ = ["ChromaKnowledgeStore", "HnswOptions"]
