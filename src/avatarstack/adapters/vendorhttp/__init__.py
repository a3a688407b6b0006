"""JSON over HTTP to an avatar vendor: what the HeyGen and LiveAvatar adapters share.

One lazy ``aiohttp.ClientSession`` per provider (:class:`VendorHttp`), one request read with a
size cap, its JSON parsed (with a sentinel for a body that is not JSON), vendor messages made
safe to show, and retries with exponential backoff and jitter for the calls that may be repeated.

Failures that say nothing about the request are mapped here: a timeout, a refused connection or
a 5xx answer is :class:`Retryable` (the caller retries it or turns it into
:class:`~avatarstack.ports.errors.UnavailableError` in its own words), broken HTTP and a body
over the cap are :class:`~avatarstack.ports.errors.UpstreamError`. What a 4xx *means* is the
vendor adapter's business: each reads its vendor's envelope and maps it to a port error.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import aiohttp

from avatarstack.ports.errors import UpstreamError

__all__ = [
    "NOT_JSON",
    "Answer",
    "Retryable",
    "VendorHttp",
    "backoff_delay",
    "clean_message",
    "retry_after_seconds",
    "with_retries",
]

T = TypeVar("T")

#: what :meth:`VendorHttp.decode` returns for a body that is not JSON (an empty body is None)
NOT_JSON: Any = object()
#: how much of a vendor's message goes into our error messages
MESSAGE_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_CHUNK = 64 * 1024


class Retryable(Exception):
    """A failure worth another attempt of an idempotent call: a timeout, a connection that
    failed, a 5xx answer or (for a vendor that retries it) a 429. The transport exception, if
    any, is its ``__cause__``."""

    def __init__(
        self,
        reason: Literal["timeout", "unreachable", "server", "throttled"],
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Answer:
    """A vendor's answer below 500: its status, a ``Retry-After`` in seconds if it sent one,
    and its body (at most the cap plus one byte, so an oversized body can be told)."""

    status: int
    retry_after: float | None
    raw: bytes


class VendorHttp:
    """One ``aiohttp.ClientSession`` for a vendor's API, created on first use and closed by
    ``close()``. ``vendor`` names it in error messages; ``max_body_bytes`` caps what is read."""

    def __init__(
        self,
        vendor: str,
        *,
        timeout: float,
        max_body_bytes: int,
        headers: Mapping[str, str] | None = None,
        broken_hint: str = "",
    ) -> None:
        self.vendor = vendor
        self.max_body_bytes = max_body_bytes
        self.client_timeout = aiohttp.ClientTimeout(total=timeout)
        self._headers = dict(headers) if headers else None
        self._broken_hint = broken_hint
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.client_timeout, headers=self._headers, raise_for_status=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str],
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        time_limit: aiohttp.ClientTimeout | None = None,
    ) -> Answer:
        """One request, never redirected; ``what`` names it in errors ("streaming.new", "the
        session start"). Raises :class:`Retryable` for a timeout, a failed connection or a
        5xx answer, ``UpstreamError`` for broken HTTP. ``time_limit`` replaces the session's
        timeout for this request."""
        try:
            async with self._client().request(
                method,
                url,
                json=dict(body) if body is not None else None,
                params=params,
                headers=headers,
                allow_redirects=False,
                timeout=time_limit or self.client_timeout,
            ) as response:
                status = response.status
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                raw = await self._read_capped(response)
        except TimeoutError as exc:
            raise Retryable("timeout") from exc
        except aiohttp.ClientConnectionError as exc:
            raise Retryable("unreachable") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"{self.vendor} sent a broken HTTP answer to {what}{self._broken_hint}"
            ) from exc
        if status >= 500:
            raise Retryable("server", status)
        return Answer(status, retry_after, raw)

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, or its first ``max_body_bytes + 1`` bytes when it is larger."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(_CHUNK):
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_body_bytes:
                break
        return b"".join(chunks)

    def decode(self, answer: Answer, what: str) -> Any:
        """The answer's JSON: None for an empty body, :data:`NOT_JSON` for one that is not
        JSON; ``UpstreamError`` for a body over the cap."""
        if len(answer.raw) > self.max_body_bytes:
            raise UpstreamError(
                f"{self.vendor} answered {what} with more than {self.max_body_bytes} bytes"
            )
        try:
            return json.loads(answer.raw) if answer.raw.strip() else None
        except ValueError:  # UnicodeDecodeError is a ValueError too
            return NOT_JSON


def clean_message(value: str, *, secrets: Iterable[str | None] = ()) -> str:
    """A vendor's message safe to show: one line, at most :data:`MESSAGE_CHARS` characters,
    with each of ``secrets`` replaced by ``***``; empty if nothing is left."""
    text = _CONTROL.sub(" ", value).strip()
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    if len(text) > MESSAGE_CHARS:
        text = text[: MESSAGE_CHARS - 1] + "…"
    return text


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (None for none, or an HTTP date: not worth parsing
    for a hint); a negative number counts as 0."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def backoff_delay(first: float, retry: int) -> float:
    """The wait before retry number ``retry`` (1 for the first): ``first`` doubled each time,
    with jitter between half of it and all of it (it spreads the retries of many sessions; it
    is not security-sensitive)."""
    ceiling = first * 2.0 ** (retry - 1)
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311


async def with_retries(
    once: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    first_delay: float,
    max_delay: float | None = None,
    on_retry: Callable[[int, Retryable, float], None] | None = None,
) -> T:
    """``await once()`` up to ``attempts`` times while it raises :class:`Retryable`, waiting
    :func:`backoff_delay` (at least a ``Retry-After``, at most ``max_delay``) in between;
    ``on_retry(attempt, failure, delay)`` is told before each wait. The last
    :class:`Retryable` is raised when every attempt failed."""
    attempt = 1
    while True:
        try:
            return await once()
        except Retryable as failure:
            if attempt >= attempts:
                raise
            delay = backoff_delay(first_delay, attempt)
            if failure.retry_after is not None:
                delay = max(delay, failure.retry_after)
            if max_delay is not None:
                delay = min(delay, max_delay)
            if on_retry is not None:
                on_retry(attempt, failure, delay)
            await asyncio.sleep(delay)
            attempt += 1
