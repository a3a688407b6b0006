"""HTTP plumbing of the LiveAvatar adapter on top of the shared
:mod:`avatarstack.adapters.vendorhttp`: the response envelope, retries, and the mapping of
LiveAvatar's answers onto the avatar port's error contract.

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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from avatarstack.adapters.vendorhttp import (
    MESSAGE_CHARS,
    NOT_JSON,
    Answer,
    Retryable,
    VendorHttp,
    clean_message,
    with_retries,
)
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
_PAGE_SIZE = 100
#: a bound on pagination, in case ``next`` never ends
_MAX_PAGES = 50
#: the longest wait between two attempts, whatever backoff or Retry-After say
MAX_BACKOFF_SECONDS = 10.0
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
        self._http = VendorHttp("LiveAvatar", timeout=timeout, max_body_bytes=MAX_BODY_BYTES)
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        await self._http.close()

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

        def retrying(attempt: int, failure: Retryable, delay: float) -> None:
            log.warning(
                "liveavatar_retry",
                endpoint=endpoint.label,
                attempt=attempt,
                reason=failure.reason,
                status=failure.status,
                delay=round(delay, 3),
            )

        try:
            return await with_retries(
                lambda: self._once(method, path, endpoint, auth, body, params, require_data),
                attempts=attempts,
                # the first wait is between backoff and twice it, then doubled each time
                first_delay=2 * self.backoff,
                max_delay=MAX_BACKOFF_SECONDS,
                on_retry=retrying,
            )
        except Retryable as failure:
            raise self._gave_up(endpoint, failure, attempts) from None

    async def session_post(
        self,
        path: str,
        endpoint: Endpoint,
        session_id: str,
        token: str | None,
        body: dict[str, Any],
    ) -> None:
        """A per-session POST: with the session token, else (or when LiveAvatar refuses the
        token) with the API key and the ``session_id`` in the body."""
        if token is not None:
            try:
                await self.call(
                    "POST",
                    path,
                    endpoint,
                    auth=Auth(session_token=token),
                    body=body,
                    require_data=False,
                )
                return
            except SessionTokenRejectedError:
                log.info(
                    "liveavatar_session_token_refused",
                    session_id=session_id,
                    endpoint=endpoint.label,
                )
        await self.call("POST", path, endpoint, auth=API_KEY, body=body, require_data=False)

    async def pages(
        self, path: str, endpoint: Endpoint, params: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Every ``results`` item of a paginated list (``{count, next, previous, results}``)."""
        items: list[dict[str, Any]] = []
        for page in range(1, _MAX_PAGES + 1):
            data = await self.call(
                "GET",
                path,
                endpoint,
                params={**(params or {}), "page": str(page), "page_size": str(_PAGE_SIZE)},
            )
            results = data.get("results") if isinstance(data, dict) else None
            if not isinstance(results, list):
                raise UpstreamError(
                    f"LiveAvatar answered the {endpoint.label} without a list of results"
                )
            items.extend(item for item in results if isinstance(item, dict))
            if not data.get("next") or not results:
                break
        return items

    async def discard(self, session_id: str, token: str | None) -> None:
        """Stop a session whose start failed half-way, so nothing is left running (or billed)."""
        try:
            await self.session_post(
                "/v1/sessions/stop",
                STOP,
                session_id,
                token,
                {"session_id": session_id, "reason": "USER_CLOSED"},
            )
        except (ConflictError, NotFoundError):
            pass
        except AvatarstackError as exc:
            log.warning(
                "liveavatar_failed_start_not_stopped", session_id=session_id, error=exc.code
            )
        else:
            log.info("liveavatar_failed_start_stopped", session_id=session_id)

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
        if self._closed:
            raise UnavailableError("the LiveAvatar provider has been shut down")
        headers = {"Accept": "application/json"}
        if auth.session_token is not None:
            headers["Authorization"] = f"Bearer {auth.session_token}"
        else:
            headers["X-API-KEY"] = self._api_key
        what = f"the {endpoint.label}"
        answer: Answer = await self._http.send(
            method, self.base_url + path, what=what, headers=headers, body=body, params=params
        )
        status = answer.status
        if status == 429:
            raise Retryable("throttled", status, answer.retry_after or 1.0)
        parsed = self._http.decode(answer, what)
        if 200 <= status < 300:
            return self._data(endpoint, status, parsed, require_data)
        raise self._refusal(endpoint, status, parsed, answer.raw, auth)

    def _data(self, endpoint: Endpoint, status: int, parsed: Any, require_data: bool) -> Any:
        if parsed is NOT_JSON:
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

    def _gave_up(self, endpoint: Endpoint, retryable: Retryable, attempts: int) -> AvatarstackError:
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
        return clean_message(message, secrets=(self._api_key, auth.session_token)) or "no message"


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
    if parsed is NOT_JSON or parsed is None:
        return raw[:MESSAGE_CHARS].decode("utf-8", "replace")
    return ""
