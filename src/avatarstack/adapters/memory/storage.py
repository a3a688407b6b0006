"""In-memory storage for unit tests and throwaway development servers.

Transactions are real: a unit of work edits a copy of the state under a lock and commit swaps it
in, so a failed or abandoned unit of work leaves nothing behind — the same contract suite as the
SQL adapters runs against it.
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from avatarstack.adapters.memory.repositories._base import _State
from avatarstack.adapters.memory.repositories.avatars import _AvatarSessions
from avatarstack.adapters.memory.repositories.conversations import _Conversations
from avatarstack.adapters.memory.repositories.identity import (
    _Audit,
    _Identities,
    _RateLimits,
    _RefreshTokens,
    _Roles,
    _Sessions,
    _Tokens,
    _Users,
)
from avatarstack.adapters.memory.repositories.jobs import _Jobs
from avatarstack.adapters.memory.repositories.knowledge import (
    _Blobs,
    _Chunks,
    _Documents,
    _Embeddings,
    _Generations,
    _GoldenSet,
    _Searches,
)
from avatarstack.ports.errors import StorageUnavailableError
from avatarstack.ports.storage import PoolStats, StorageTimings, UnitOfWork

_MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def shipped_migrations() -> list[str]:
    """The versions of the migrations the SQL adapters ship, read from their ``migrations``
    folders as package data (without importing those adapters): the in-memory storage has no
    schema but records the same versions, so ``schema_version`` agrees across adapters."""
    adapters = resources.files("avatarstack.adapters")
    versions: set[str] = set()
    for dialect in ("sqlite", "postgres"):
        for entry in adapters.joinpath(dialect, "migrations").iterdir():
            match = _MIGRATION_FILE.match(entry.name)
            if match:
                versions.add(match[1])
    return sorted(versions)


MIGRATIONS = shipped_migrations()


class _UnitOfWork:
    def __init__(self, storage: MemoryStorage, state: _State) -> None:
        self._storage = storage
        self._state = state
        self.finished = False
        self.users = _Users(state)
        self.roles = _Roles(state)
        self.identities = _Identities(state)
        self.tokens = _Tokens(state)
        self.sessions = _Sessions(state)
        self.refresh_tokens = _RefreshTokens(state)
        self.rate_limits = _RateLimits(state)
        self.audit = _Audit(state)
        self.documents = _Documents(state)
        self.chunks = _Chunks(state)
        self.generations = _Generations(state)
        self.golden_set = _GoldenSet(state)
        self.blobs = _Blobs(state)
        self.embeddings = _Embeddings(state)
        self.searches = _Searches(state)
        self.jobs = _Jobs(state)
        self.avatar_sessions = _AvatarSessions(state)
        self.conversations = _Conversations(state)

    async def lock(self, name: str) -> None:
        """Units of work already run one at a time here."""

    async def commit(self) -> None:
        if self.finished:
            raise RuntimeError("this unit of work has already finished")
        self.finished = True
        self._storage._state = self._state

    async def rollback(self) -> None:
        self.finished = True


class MemoryStorage:
    """Process-local storage with real transactions; not shared between processes."""

    name = "memory"

    def __init__(self) -> None:
        self._state = _State()
        self._lock = asyncio.Lock()
        #: units of work taking the lock (no statements: nothing is sent anywhere)
        self.timings = StorageTimings()
        self._started = False
        #: set to True to simulate an outage (ping and units of work raise 503 errors)
        self.unavailable = False

    async def start(self) -> None:
        self._started = True

    async def close(self) -> None:
        self._started = False

    def _check(self) -> None:
        if not self._started or self.unavailable:
            raise StorageUnavailableError("the in-memory storage is not available")

    async def ping(self) -> None:
        self._check()

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        self._check()
        waited = self._lock.locked()
        started = time.perf_counter()
        async with self._lock:
            self.timings.acquired(waited=waited, seconds=time.perf_counter() - started)
            uow = _UnitOfWork(self, copy.deepcopy(self._state))
            try:
                yield uow
            finally:
                await uow.rollback()

    async def migrate(self) -> list[str]:
        self._check()
        todo = [v for v in MIGRATIONS if v not in self._state.applied]
        self._state.applied.extend(todo)
        return todo

    async def pending_migrations(self) -> list[str]:
        self._check()
        return [v for v in MIGRATIONS if v not in self._state.applied]

    async def schema_version(self) -> str | None:
        self._check()
        return self._state.applied[-1] if self._state.applied else None

    def pool_stats(self) -> PoolStats:
        return PoolStats(size=1, idle=0 if self._lock.locked() else 1, max_size=1)
