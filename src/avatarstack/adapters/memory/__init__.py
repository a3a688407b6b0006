"""In-memory adapters: real implementations of the ports, kept in one process."""

from avatarstack.adapters.memory.commands import CommandRelay
from avatarstack.adapters.memory.storage import MemoryStorage

__all__ = ["CommandRelay", "MemoryStorage"]
