"""HTTP plumbing shared by the OAuth adapters: one lazy aiohttp session and the error mapping.

Connection failures and timeouts become :class:`UnavailableError`, a 5xx answer, an oversized or
non-JSON body become :class:`UpstreamError`; 4xx answers are returned to the caller, which knows
what they mean for its protocol. Messages name the provider and the endpoint's role, never a
URL's query, a header, a form field or a body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from avatarstack.ports.errors import UnavailableError, UpstreamError

log = structlog.get_logger("avatarstack.oauth")

#: seconds for one whole request (connect, send, read), as the port's contract asks
DEFAULT_TIMEOUT = 10.0
#: bodies larger than this are not an OAuth or OIDC answer
MAX_BODY_BYTES = 1024 * 1024
_SAFE_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True, slots=True)
class JsonAnswer:
    status: int
    body: Any


class OAuthHttpClient:
    """One ``aiohttp.ClientSession`` per provider, created on first use, closed by ``close()``."""

    def __init__(
        self, provider: str, display_name: str, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.provider = provider
        self.display_name = display_name
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def request_json(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> JsonAnswer:
        """Send one request and parse its JSON answer; ``endpoint`` names it in errors."""
        where = f"{self.display_name} {endpoint}"
        try:
            async with self._client().request(
                method, url, data=data, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                raw = await response.content.read(MAX_BODY_BYTES + 1)
        except TimeoutError as exc:
            log.warning("oauth_upstream_timeout", provider=self.provider, endpoint=endpoint)
            raise UnavailableError(f"{where} did not answer in time") from exc
        except aiohttp.ClientConnectionError as exc:
            log.warning("oauth_upstream_unreachable", provider=self.provider, endpoint=endpoint)
            raise UnavailableError(f"{where} cannot be reached") from exc
        except aiohttp.ClientError as exc:
            log.warning("oauth_upstream_broken", provider=self.provider, endpoint=endpoint)
            raise UpstreamError(f"{where} sent a broken HTTP answer") from exc
        if status == 429:
            raise UnavailableError(f"{where} is rate limiting us; try again later")
        if status >= 500:
            log.warning(
                "oauth_upstream_error", provider=self.provider, endpoint=endpoint, status=status
            )
            raise UpstreamError(f"{where} answered HTTP {status}")
        if len(raw) > MAX_BODY_BYTES:
            raise UpstreamError(f"{where} sent an answer larger than {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(raw)
        except ValueError as exc:  # UnicodeDecodeError is a ValueError too
            log.warning(
                "oauth_upstream_malformed", provider=self.provider, endpoint=endpoint, status=status
            )
            raise UpstreamError(f"{where} answered HTTP {status} without valid JSON") from exc
        return JsonAnswer(status, body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def oauth_error_code(body: Any) -> str | None:
    """The ``error`` of an RFC 6749 error body, if it is a plain code (safe to show)."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, str) and _SAFE_CODE.fullmatch(error):
        return error
    return None
