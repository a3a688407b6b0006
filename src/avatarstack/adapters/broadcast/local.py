"""The in-process broadcaster: one instance (development, single-process deployments, tests)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import structlog

from avatarstack.adapters.fanout import HubSubscription, SubscriptionHub
from avatarstack.ports.broadcast import DEFAULT_MAX_QUEUE, Notice, check_topic, encode_payload
from avatarstack.ports.errors import UnavailableError

__all__ = ["LocalBroadcaster"]

log = structlog.get_logger("avatarstack.broadcast")


class LocalBroadcaster:
    """Delivers notices to subscriptions in this process only.

    Payloads go through the same JSON encoding as on PostgreSQL, so subscribers see the same
    values (tuples become lists) and the same limits apply on every adapter.
    """

    name = "local"

    def __init__(self, *, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        self._hub = SubscriptionHub(max_queue=max_queue)
        self._started = False
        self._closed = False

    async def start(self) -> None:
        if self._closed:
            raise UnavailableError("the broadcaster is closed")
        self._started = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._hub.close()
        log.debug("broadcast_closed", broadcaster=self.name)

    async def publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        check_topic(topic)
        body = encode_payload(payload)
        self._check_running()
        self._hub.deliver(Notice(topic=topic, payload=json.loads(body)))

    def subscribe(self, *topics: str) -> HubSubscription:
        if self._closed:
            raise UnavailableError("the broadcaster is closed")
        return self._hub.subscribe(topics)

    async def ping(self) -> None:
        self._check_running()

    def _check_running(self) -> None:
        if self._closed:
            raise UnavailableError("the broadcaster is closed")
        if not self._started:
            raise UnavailableError("the broadcaster is not started")
