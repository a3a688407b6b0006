"""Chroma adapters: the knowledge store on an embedded or remote Chroma."""

from avatarstack.adapters.chroma.folder import copy_embedded, folder_holder, holding_folder
from avatarstack.adapters.chroma.knowledge import ChromaKnowledgeStore, HnswOptions

__all__ = [
    "ChromaKnowledgeStore",
    "HnswOptions",
    "copy_embedded",
    "folder_holder",
    "holding_folder",
]
