"""The unit-of-work mechanics every storage context shares: ending the transaction, and named
locks for check-then-write sequences. A context's unit of work (``IdentityUnitOfWork``,
``KnowledgeUnitOfWork``, …) adds its repositories to these."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Locking", "Transaction"]


class Transaction(Protocol):
    """One transaction. Leaving the ``async with`` block without :meth:`commit` rolls back."""

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


class Locking(Protocol):
    async def lock(self, name: str) -> None:
        """Hold the named lock until this unit of work ends: another unit of work asking for
        the same name waits. Use it around check-then-write sequences (limits, claims) that
        must not interleave across instances."""
