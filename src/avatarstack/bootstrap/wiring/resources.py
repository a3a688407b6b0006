"""Lifecycles the container runs as resources: start what needs starting, close what holds
connections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, TypeVar


class Closable(Protocol):
    async def close(self) -> None: ...


class Startable(Closable, Protocol):
    async def start(self) -> None: ...


C = TypeVar("C", bound=Closable)
S = TypeVar("S", bound=Startable)


async def started(item: S) -> AsyncIterator[S]:
    """Resource: start ``item`` (storage connections, the broadcaster's LISTEN) for the life of
    the container, and close it on shutdown."""
    await item.start()
    try:
        yield item
    finally:
        await item.close()


async def closing(item: C) -> AsyncIterator[C]:
    """Resource: close ``item`` on shutdown (the identity services deliver their queued mail
    and close the OAuth providers' HTTP sessions; stores and relays close their clients)."""
    try:
        yield item
    finally:
        await item.close()


async def closing_all(items: dict[str, C]) -> AsyncIterator[dict[str, C]]:
    """Resource: close every item (vendor HTTP sessions, timers, clients) on shutdown."""
    try:
        yield items
    finally:
        for item in items.values():
            await item.close()
