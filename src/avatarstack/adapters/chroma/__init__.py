"""Chroma adapters: the knowledge store on an embedded or remote Chroma."""

from avatarstack.adapters.chroma.knowledge import ChromaKnowledgeStore

__all__ = ["ChromaKnowledgeStore"]
