"""HTTP plumbing of the LiveAvatar adapter: one lazy aiohttp session, the response envelope,
retries, and the mapping of LiveAvatar's answers onto the avatar port's error contract.

LiveAvatar answers ``{"code", "data", "message"}``. On success ``code`` is 1000 in production and
100 in the docs, so it is never checked; ``data`` is. Errors are a 4xx with ``{"code": 4000,
"data": null, "message": "<human text>"}`` (or FastAPI's 422 ``{"detail": [...]}``); there is no
error-code table, so the kind of a business error is read from its message.

Only idempotent calls are retried (``Endpoint.idempotent``): on timeouts, connection errors,
5xx and 429, with exponential backoff and jitter. Minting a token and starting a session are
never retried: a repeat could start a second paid session.

Messages name the endpoint and what a person can do; they never contain the API key, a session
token, a header or a request body.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import structlog

from avatarstack.ports.errors import (
    AvatarstackError,
    ConflictError,
    FieldError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
    UnavailableError,
    UpstreamError,
)

log = structlog.get_logger("avatarstack.avatars.liveavatar")

API_KEY_SETTING = "AVATARSTACK_AVATAR__LIVEAVATAR__API_KEY"
BASE_URL_SETTING = "AVATARSTACK_AVATAR__LIVEAVATAR__BASE_URL"
#: no LiveAvatar answer we read is larger than this
MAX_BODY_BYTES = 1024 * 1024
#: the longest wait between two attempts, whatever backoff or Retry-After say
MAX_BACKOFF_SECONDS = 10.0
#: how much of a vendor message goes into our error messages
_MESSAGE_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_STATE_WORDS = (
    "closed",
    "ended",
    "stopped",
    "not active",
    "inactive",
    "already",
    "state",
    "not found",
    "expired",
    "does not exist",
)
_NOT_FOUND_WORDS = ("not found", "unknown", "does not exist", "not exist", "not ready", "inactive")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One kind of call: how errors read (``label``) and whether it may be retried."""

    label: str
    idempotent: bool
    kind: Literal["token", "start", "session", "account"]


TOKEN = Endpoint("session token", idempotent=False, kind="token")
START = Endpoint("session start", idempotent=False, kind="start")
KEEP_ALIVE = Endpoint("keep-alive", idempotent=True, kind="session")
STOP = Endpoint("session stop", idempotent=True, kind="session")
SESSION = Endpoint("session lookup", idempotent=True, kind="session")
SESSIONS = Endpoint("session list", idempotent=True, kind="account")
AVATARS = Endpoint("avatar list", idempotent=True, kind="account")
VOICES = Endpoint("voice list", idempotent=True, kind="account")


@dataclass(frozen=True, slots=True)
class Auth:
    """``X-API-KEY`` (the default) or ``Authorization: Bearer <session token>``; never both."""

    session_token: str | None = field(default=None, repr=False)

    @property
    def is_bearer(self) -> bool:
        return self.session_token is not None


API_KEY = Auth()


class SessionTokenRejectedError(UpstreamError):
    """LiveAvatar refused a session token (expired or revoked); the API key may still work."""


class _Retryable(Exception):
    """A failure worth another attempt (internal: it never leaves this module)."""

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


class LiveAvatarHttp:
    """The adapter's only door to LiveAvatar: ``call`` one endpoint and get its ``data``."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: float,
        retries: int,
        backoff: float,
    ) -> None:
        if not api_key:
            raise ValueError(f"the LiveAvatar API key is empty; set {API_KEY_SETTING}")
        if retries < 0:
            raise ValueError("retries must not be negative")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._client_timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            raise UnavailableError("the LiveAvatar provider has been shut down")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._client_timeout, raise_for_status=False
            )
        return self._session

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self,
        method: str,
        path: str,
        endpoint: Endpoint,
        *,
        auth: Auth = API_KEY,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        require_data: bool = True,
    ) -> Any:
        """Send one request (retrying idempotent ones) and return the envelope's ``data``.

        ``require_data``: a ``data`` of null is an UpstreamError (it is normal for keep-alive
        and stop, whose ``data`` carries nothing)."""
        attempts = 1 + (self.retries if endpoint.idempotent else 0)
        for attempt in range(1, attempts + 1):
            try:
                return await self._once(method, path, endpoint, auth, body, params, require_data)
            except _Retryable as retryable:
                if attempt >= attempts:
                    raise self._gave_up(endpoint, retryable, attempts) from None
                delay = self._delay(attempt, retryable.retry_after)
                log.warning(
                    "liveavatar_retry",
                    endpoint=endpoint.label,
                    attempt=attempt,
                    reason=retryable.reason,
                    status=retryable.status,
                    delay=round(delay, 3),
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        base = self.backoff * 2.0 ** (attempt - 1)
        # jitter spreads retries of many sessions; it is not security-sensitive
        delay = base + random.uniform(0, base)  # noqa: S311
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, MAX_BACKOFF_SECONDS)

    async def _once(
        self,
        method: str,
        path: str,
        endpoint: Endpoint,
        auth: Auth,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
        require_data: bool,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if auth.session_token is not None:
            headers["Authorization"] = f"Bearer {auth.session_token}"
        else:
            headers["X-API-KEY"] = self._api_key
        try:
            async with self._client().request(
                method,
                self.base_url + path,
                json=dict(body) if body is not None else None,
                params=params,
                headers=headers,
                allow_redirects=False,
            ) as response:
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
                raw = await _read_limited(response)
        except TimeoutError as exc:
            raise _Retryable("timeout") from exc
        except aiohttp.ClientConnectionError as exc:
            raise _Retryable("unreachable") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"LiveAvatar sent a broken HTTP answer to the {endpoint.label}"
            ) from exc
        if status >= 500:
            raise _Retryable("server", status)
        if status == 429:
            raise _Retryable("throttled", status, retry_after or 1.0)
        if len(raw) > MAX_BODY_BYTES:
            raise UpstreamError(
                f"LiveAvatar answered the {endpoint.label} with more than {MAX_BODY_BYTES} bytes"
            )
        try:
            parsed: Any = json.loads(raw) if raw.strip() else None
        except ValueError:  # UnicodeDecodeError is a ValueError too
            parsed = _NOT_JSON
        if 200 <= status < 300:
            return self._data(endpoint, status, parsed, require_data)
        raise self._refusal(endpoint, status, parsed, raw, auth)

    def _data(self, endpoint: Endpoint, status: int, parsed: Any, require_data: bool) -> Any:
        if parsed is _NOT_JSON:
            log.warning("liveavatar_malformed_answer", endpoint=endpoint.label, status=status)
            raise UpstreamError(
                f"LiveAvatar answered the {endpoint.label} with HTTP {status} but no valid JSON"
            )
        if parsed is None and not require_data:
            return None
        if not isinstance(parsed, dict) or "data" not in parsed:
            log.warning("liveavatar_unexpected_answer", endpoint=endpoint.label, status=status)
            raise UpstreamError(
                f"LiveAvatar answered the {endpoint.label} without its usual envelope "
                "(code, data, message); the API may have changed"
            )
        data = parsed["data"]
        if data is None and require_data:
            log.warning("liveavatar_empty_answer", endpoint=endpoint.label, status=status)
            raise UpstreamError(
                f"LiveAvatar answered the {endpoint.label} with no data; try again, and check "
                "LiveAvatar's status page if it persists"
            )
        return data

    def _refusal(
        self, endpoint: Endpoint, status: int, parsed: Any, raw: bytes, auth: Auth
    ) -> AvatarstackError:
        """The port error for a 4xx answer (429 excluded)."""
        message = self._clean(_vendor_message(parsed, raw), auth)
        text = message.lower()
        log.info(
            "liveavatar_refused",
            endpoint=endpoint.label,
            status=status,
            vendor_message=message,
        )
        if status in (401, 403):
            if auth.is_bearer:
                return SessionTokenRejectedError(
                    f"LiveAvatar rejected the session token at the {endpoint.label} "
                    "(expired or revoked)"
                )
            return UpstreamError(
                f"LiveAvatar rejected the API key; check {API_KEY_SETTING}"
                + (
                    " (it must be a LiveAvatar key: HeyGen keys do not work)"
                    if status == 401
                    else ""
                )
            )
        if "concurrent" in text:
            return RateLimitedError(
                "LiveAvatar's concurrent session limit for this account is reached; stop a "
                "running avatar session (or raise the plan's limit) and try again",
                retry_after=30.0,
            )
        if "credit" in text:
            return UpstreamError(
                "LiveAvatar has not enough credits to run a session; top up the account at "
                f"app.liveavatar.com (LiveAvatar said: {message})"
            )
        if endpoint.kind == "token" and status in (400, 404, 422):
            if "sandbox" in text:
                return InvalidInputError(
                    f"LiveAvatar refused the sandbox session: {message}",
                    [FieldError("body.avatar_id", "not available in sandbox mode")],
                )
            for thing in ("avatar", "voice", "context"):
                if thing in text and any(word in text for word in _NOT_FOUND_WORDS):
                    return NotFoundError(f"LiveAvatar cannot use this {thing}: {message}")
        if endpoint.kind in ("start", "session") and (
            status in (404, 410)
            or (status in (400, 409) and any(word in text for word in _STATE_WORDS))
        ):
            return ConflictError(
                f"the LiveAvatar session is closed or was never started ({message})"
            )
        if status == 404 and endpoint.kind == "account":
            return UpstreamError(
                f"LiveAvatar has no {endpoint.label} at {self.base_url} (HTTP 404); check "
                f"{BASE_URL_SETTING}"
            )
        if status == 422:
            return UpstreamError(
                f"LiveAvatar rejected the {endpoint.label} request as invalid ({message}); the "
                "adapter and LiveAvatar's API disagree"
            )
        return UpstreamError(
            f"LiveAvatar refused the {endpoint.label} with HTTP {status}: {message}"
        )

    def _gave_up(
        self, endpoint: Endpoint, retryable: _Retryable, attempts: int
    ) -> AvatarstackError:
        tries = f"{attempts} attempts" if attempts > 1 else "1 attempt, not retried"
        if retryable.reason == "throttled":
            return RateLimitedError(
                f"LiveAvatar is rate limiting the {endpoint.label} ({tries}); try again shortly",
                retry_after=retryable.retry_after or 1.0,
            )
        if retryable.reason == "timeout":
            detail = f"did not answer the {endpoint.label} within {self.timeout:g} s"
        elif retryable.reason == "unreachable":
            detail = (
                f"cannot be reached at {self.base_url} for the {endpoint.label}; check "
                f"{BASE_URL_SETTING} and the network"
            )
        else:
            detail = f"answered the {endpoint.label} with HTTP {retryable.status}"
        log.warning(
            "liveavatar_unavailable",
            endpoint=endpoint.label,
            reason=retryable.reason,
            status=retryable.status,
            attempts=attempts,
        )
        return UnavailableError(f"LiveAvatar {detail} ({tries}); try again later")

    def _clean(self, message: str, auth: Auth) -> str:
        """A vendor message safe to show: one line, short, without our credentials."""
        message = _CONTROL.sub(" ", message).strip()
        for secret in (self._api_key, auth.session_token):
            if secret:
                message = message.replace(secret, "***")
        if len(message) > _MESSAGE_CHARS:
            message = message[: _MESSAGE_CHARS - 1] + "…"
        return message or "no message"


_NOT_JSON = object()


def _vendor_message(parsed: Any, raw: bytes) -> str:
    """LiveAvatar's human text, wherever this error shape keeps it."""
    if isinstance(parsed, dict):
        message = parsed.get("message")
        if isinstance(message, str) and message:
            return message
        detail = parsed.get("detail")
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            msg = detail[0].get("msg")
            loc = detail[0].get("loc")
            if isinstance(msg, str):
                where = ".".join(str(part) for part in loc) if isinstance(loc, list) else ""
                return f"{where}: {msg}" if where else msg
        if isinstance(detail, str) and detail:
            return detail
        data = parsed.get("data")
        if isinstance(data, list) and data and isinstance(data[0], dict):
            msg = data[0].get("message")
            if isinstance(msg, str):
                return msg
        error = parsed.get("error")
        if isinstance(error, str):
            return error
    if parsed is _NOT_JSON or parsed is None:
        return raw[:_MESSAGE_CHARS].decode("utf-8", "replace")
    return ""


async def _read_limited(response: aiohttp.ClientResponse) -> bytes:
    """The whole body, or its first ``MAX_BODY_BYTES + 1`` bytes when it is larger."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            break
    return b"".join(chunks)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
