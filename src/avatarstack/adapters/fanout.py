"""In-process fan-out shared by every broadcaster: topic index, bounded per-subscription queues.

Everything here runs on the event loop thread and never awaits while delivering, so a publisher
is never blocked by a slow subscriber.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

import structlog

from avatarstack.ports.broadcast import DEFAULT_MAX_QUEUE, OVERFLOW, Notice, check_topic
from avatarstack.ports.errors import FieldError, InvalidInputError

__all__ = ["HubSubscription", "SubscriptionHub"]

log = structlog.get_logger("avatarstack.broadcast")


class HubSubscription:
    """A :class:`~avatarstack.ports.broadcast.Subscription` fed by a :class:`SubscriptionHub`.

    The queue holds at most ``max_queue`` notices. On overflow the oldest is dropped and its
    topic is remembered; the next read returns ``Notice(topic, {"overflow": True})`` for each
    such topic (one per topic however many were dropped) before the remaining queue.
    """

    def __init__(
        self,
        topics: frozenset[str],
        max_queue: int,
        on_close: Callable[[HubSubscription], None],
    ) -> None:
        self._topics = topics
        self._max_queue = max_queue
        self._on_close = on_close
        self._queue: deque[Notice] = deque()
        #: topics that lost notices and still owe the consumer an overflow notice (ordered set)
        self._overflowed: dict[str, None] = {}
        self._wakeup = asyncio.Event()
        self._closed = False
        #: notices dropped because the consumer was too slow (for diagnostics)
        self.dropped = 0

    @property
    def topics(self) -> frozenset[str]:
        return self._topics

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, notice: Notice) -> None:
        """Queue ``notice``; never blocks. Ignored once closed."""
        if self._closed:
            return
        if len(self._queue) >= self._max_queue:
            lost = self._queue.popleft()
            self.dropped += 1
            if lost.topic not in self._overflowed:
                log.warning(
                    "broadcast_subscription_overflow", topic=lost.topic, max_queue=self._max_queue
                )
                self._overflowed[lost.topic] = None
        self._queue.append(notice)
        self._wakeup.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Notice:
        while not self._closed:
            if self._overflowed:
                topic = next(iter(self._overflowed))
                del self._overflowed[topic]
                return Notice(topic=topic, payload={OVERFLOW: True})
            if self._queue:
                return self._queue.popleft()
            self._wakeup.clear()
            await self._wakeup.wait()
        raise StopAsyncIteration

    def close_nowait(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._overflowed.clear()
        self._wakeup.set()
        self._on_close(self)

    async def close(self) -> None:
        self.close_nowait()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_nowait()

    def __repr__(self) -> str:
        return f"<HubSubscription topics={sorted(self._topics)!r} closed={self._closed}>"


class SubscriptionHub:
    """Subscriptions indexed by topic on one instance."""

    def __init__(self, *, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.max_queue = max_queue
        self._by_topic: dict[str, dict[HubSubscription, None]] = {}
        self._subscriptions: dict[HubSubscription, None] = {}

    @property
    def subscription_count(self) -> int:
        return len(self._subscriptions)

    def subscribe(self, topics: tuple[str, ...]) -> HubSubscription:
        """A new subscription, receiving from the moment this returns."""
        if not topics:
            problem = "name at least one topic"
            raise InvalidInputError(
                f"invalid subscription: {problem}", [FieldError("topics", problem)]
            )
        checked = frozenset(check_topic(topic) for topic in topics)
        subscription = HubSubscription(checked, self.max_queue, self._forget)
        self._subscriptions[subscription] = None
        for topic in checked:
            self._by_topic.setdefault(topic, {})[subscription] = None
        return subscription

    def deliver(self, notice: Notice) -> int:
        """Queue ``notice`` on every subscription to its topic; return how many."""
        subscriptions = self._by_topic.get(notice.topic)
        if not subscriptions:
            return 0
        for subscription in list(subscriptions):
            subscription.put(notice)
        return len(subscriptions)

    def deliver_to_every_topic(self, payload: Mapping[str, Any]) -> int:
        """Queue ``Notice(topic, payload)`` on every subscription for each of its topics."""
        count = 0
        for topic, subscriptions in list(self._by_topic.items()):
            notice = Notice(topic=topic, payload=dict(payload))
            for subscription in list(subscriptions):
                subscription.put(notice)
                count += 1
        return count

    def close(self) -> None:
        """Close every subscription: their iterations end."""
        for subscription in list(self._subscriptions):
            subscription.close_nowait()

    def _forget(self, subscription: HubSubscription) -> None:
        self._subscriptions.pop(subscription, None)
        for topic in subscription.topics:
            subscriptions = self._by_topic.get(topic)
            if subscriptions is not None:
                subscriptions.pop(subscription, None)
                if not subscriptions:
                    del self._by_topic[topic]
