"""In-memory adapters: real implementations of the ports, kept in one process."""

from avatarstack.adapters.memory.knowledge import MemoryKnowledgeStore
from avatarstack.adapters.memory.storage import MemoryStorage

__all__ = ["MemoryKnowledgeStore", "MemoryStorage"]
