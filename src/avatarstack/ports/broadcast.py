"""The broadcaster port: wakes every watcher of a topic, on this instance and on the others.

A broadcaster is a *notification* channel, not a data channel. The data (conversation events
with their per-conversation ``seq``) is already in storage when it is published, so a consumer
treats a :class:`Notice` as "something changed on this topic, re-read storage after the last
seq you saw". That is also how it recovers from every gap::

    async with broadcaster.subscribe(f"conversation:{conversation_id}") as subscription:
        last_seq = await send_events_after(last_seq)          # catch up *after* subscribing
        async for notice in subscription:                      # a wake-up, or a resync marker
            last_seq = await send_events_after(last_seq)

Delivery is at most once per subscription and never blocks the publisher: each subscription has
a bounded queue; when it overflows the oldest notice is dropped and the consumer later receives
``Notice(topic, {"overflow": True})``. When a broadcaster loses its connection to other
instances and gets it back, every subscription receives ``Notice(topic, {"reconnected": True})``
for each of its topics. Both mean the same to a consumer: notices may have been missed, re-read
storage (:attr:`Notice.resync`).

Lifecycle: ``subscribe()`` works at any time before ``close()`` (subscriptions made before
``start()`` receive notices once it has started); ``publish()`` needs ``start()`` and raises
:class:`~avatarstack.ports.errors.UnavailableError` before it and after ``close()``. Closing the
broadcaster ends every subscription's iteration.

Every adapter passes ``tests/contract/test_broadcaster_contract.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field

from avatarstack.ports.errors import FieldError, InvalidInputError

__all__ = [
    "DEFAULT_MAX_QUEUE",
    "MAX_PAYLOAD_BYTES",
    "MAX_TOPIC_LENGTH",
    "OVERFLOW",
    "RECONNECTED",
    "Broadcaster",
    "Notice",
    "Subscription",
    "check_topic",
    "encode_payload",
]

#: the largest payload, as compact UTF-8 JSON; PostgreSQL's NOTIFY takes < 8000 bytes, and the
#: rest is room for the topic and the envelope
MAX_PAYLOAD_BYTES = 7_000
MAX_TOPIC_LENGTH = 200
#: notices a subscription buffers before it drops the oldest
DEFAULT_MAX_QUEUE = 1_000
#: payload key of the synthetic notice after a subscription's queue overflowed
OVERFLOW = "overflow"
#: payload key of the synthetic notice after the broadcaster reconnected
RECONNECTED = "reconnected"


class Notice(BaseModel):
    """One notification: a topic (``conversation:<id>``, ``user:<id>``) and a small JSON object.

    The payload is shared by every subscription that receives the notice: treat it as read-only.
    """

    model_config = ConfigDict(frozen=True)

    topic: str
    payload: dict[str, Any] = Field(default_factory=dict)

    @property
    def resync(self) -> bool:
        """True for the synthetic overflow/reconnected notices: notices may have been missed."""
        return self.payload.get(OVERFLOW) is True or self.payload.get(RECONNECTED) is True


def check_topic(topic: object) -> str:
    """Return ``topic`` if it is valid: a string of 1 to 200 characters without control characters
    (so no NUL); raise :class:`InvalidInputError` otherwise."""
    problem: str | None = None
    if not isinstance(topic, str):
        problem = "must be a string"
    elif not 1 <= len(topic) <= MAX_TOPIC_LENGTH:
        problem = f"must have 1 to {MAX_TOPIC_LENGTH} characters"
    elif any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in topic):
        problem = "must not contain control characters such as NUL"
    elif any(0xD800 <= ord(c) <= 0xDFFF for c in topic):
        problem = "must be valid Unicode text"
    if problem is None:
        assert isinstance(topic, str)
        return topic
    raise InvalidInputError(f"invalid topic: {problem}", [FieldError("topic", problem)])


def encode_payload(payload: Mapping[str, Any]) -> str:
    """The payload as compact JSON (UTF-8, non-ASCII kept) of at most MAX_PAYLOAD_BYTES bytes.

    Raises :class:`InvalidInputError` for anything else: not a mapping, not JSON-serialisable
    (including NaN and infinities), or too large.
    """
    if not isinstance(payload, Mapping):
        problem = "must be a JSON object"
        raise InvalidInputError(f"invalid payload: {problem}", [FieldError("payload", problem)])
    try:
        text = json.dumps(dict(payload), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        problem = f"is not serialisable as JSON ({exc.__class__.__name__})"
        raise InvalidInputError(
            f"invalid payload: {problem}", [FieldError("payload", problem)]
        ) from exc
    if size > MAX_PAYLOAD_BYTES:
        problem = f"is {size} bytes as JSON; the limit is {MAX_PAYLOAD_BYTES}"
        raise InvalidInputError(f"payload too large: {problem}", [FieldError("payload", problem)])
    return text


class Subscription(Protocol):
    """Notices for a fixed set of topics, in the order they arrived; ``async with`` closes it.

    Iteration ends when the subscription or its broadcaster is closed. Receiving never blocks
    publishers: past the queue limit the oldest notice is dropped and a synthetic
    ``Notice(topic, {"overflow": True})`` is delivered (once per topic) before the rest.
    """

    @property
    def topics(self) -> frozenset[str]:
        """The topics this subscription receives."""

    def __aiter__(self) -> AsyncIterator[Notice]:
        """Iterate over notices until the subscription is closed."""

    async def close(self) -> None:
        """Stop receiving; pending notices are discarded and iteration ends. Idempotent."""

    async def __aenter__(self) -> Self:
        """Return the subscription itself."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the subscription."""


class Broadcaster(Protocol):
    name: str

    async def start(self) -> None:
        """Connect; raise UnavailableError if that is impossible. Idempotent until closed."""

    async def close(self) -> None:
        """Close every subscription and disconnect. Idempotent; a closed broadcaster stays so."""

    async def publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        """Notify every subscription to ``topic`` on every instance, without waiting for them.

        Raises InvalidInputError for a bad topic or payload (see :func:`check_topic` and
        :func:`encode_payload`), UnavailableError when not started, closed, or the shared
        channel is unreachable.
        """

    def subscribe(self, *topics: str) -> Subscription:
        """Start receiving notices for ``topics`` at once (before this returns).

        Raises InvalidInputError without topics or for a bad one, UnavailableError when closed.
        """

    async def ping(self) -> None:
        """Return when notices reach other instances; raise UnavailableError otherwise."""
