"""Lifecycles the container runs as resources: start what needs starting, close what holds
connections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol, TypeVar

from avatarstack.adapters.broadcast.commands import BroadcastCommandRelay
from avatarstack.core.identity import (
    IdentityService,
)
from avatarstack.ports.broadcast import Broadcaster
from avatarstack.ports.knowledge import KnowledgeStore
from avatarstack.ports.storage import Storage

if TYPE_CHECKING:
    pass


async def started_storage(storage: Storage) -> AsyncIterator[Storage]:
    """Resource: open the storage's connections for the life of the container."""
    await storage.start()
    try:
        yield storage
    finally:
        await storage.close()


class Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


async def closing_all(items: dict[str, C]) -> AsyncIterator[dict[str, C]]:
    """Resource: close every item (vendor HTTP sessions, timers, clients) on shutdown."""
    try:
        yield items
    finally:
        for item in items.values():
            await item.close()


async def closing_identity(identity: IdentityService) -> AsyncIterator[IdentityService]:
    """Resource: deliver the queued mail and close the OAuth providers' HTTP sessions on
    shutdown."""
    try:
        yield identity
    finally:
        await identity.close()


async def closing_store(store: KnowledgeStore) -> AsyncIterator[KnowledgeStore]:
    try:
        yield store
    finally:
        await store.close()


async def closing_relay(relay: BroadcastCommandRelay) -> AsyncIterator[BroadcastCommandRelay]:
    try:
        yield relay
    finally:
        await relay.close()


async def started_broadcaster(broadcaster: Broadcaster) -> AsyncIterator[Broadcaster]:
    await broadcaster.start()
    try:
        yield broadcaster
    finally:
        await broadcaster.close()
