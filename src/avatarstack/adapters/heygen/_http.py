"""HTTP plumbing for HeyGen's legacy streaming API on top of the shared
:mod:`avatarstack.adapters.vendorhttp`: HeyGen's envelope and credentials, retries for idempotent
calls, and transport failures mapped to port errors in HeyGen's words.

What the wire looks like (HeyGen's Streaming API reference,
https://docs.heygen.com/reference): JSON over HTTPS, success is a 2xx with
``{"code": 100, "data": …, "message": …}``, errors are non-2xx with
``{"code": <int>, "message": <str>}``. Like HeyGen's SDK and pipecat we judge success by the HTTP
status only (the success ``code`` is not confirmed for every endpoint).

This module decides nothing about what a 4xx *means*: it raises :class:`HeyGenRefusal` with the
status, code and message, and the provider maps it for the operation it was doing. Transport
failures are final here: timeouts, refused connections and 5xx answers become
:class:`UnavailableError` (after retries, for idempotent calls only), broken HTTP or a 2xx body
that is not a JSON object become :class:`UpstreamError`. No message ever contains a credential.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import structlog

from avatarstack.adapters.vendorhttp import (
    NOT_JSON,
    Answer,
    Retryable,
    VendorHttp,
    clean_message,
    with_retries,
)
from avatarstack.ports.errors import UnavailableError, UpstreamError

log = structlog.get_logger("avatarstack.heygen")

#: the setting that holds the API key (named in errors, so a person knows what to fix)
API_KEY_SETTING = "AVATARSTACK_AVATAR__HEYGEN__API_KEY"
#: the largest answer we read (an avatar list with a few hundred entries is far below this)
MAX_BODY_BYTES = 4 * 1024 * 1024
#: HeyGen's body ``code`` for a bad, missing or used credential (sent with HTTP 401)
UNAUTHORIZED_CODE = 400112


@dataclass(frozen=True, slots=True)
class Credential:
    """How one request authenticates: the API key (``x-api-key``) or a session token
    (``Authorization: Bearer``). The value never appears in a repr, a log or an error."""

    kind: Literal["api_key", "session_token"]
    value: str = field(repr=False)

    def headers(self) -> dict[str, str]:
        if self.kind == "api_key":
            return {"x-api-key": self.value}
        return {"Authorization": f"Bearer {self.value}"}


class HeyGenRefusal(Exception):
    """HeyGen answered a 4xx: the caller knows what it means for the operation it was doing."""

    def __init__(
        self, endpoint: str, status: int, code: int | None, message: str | None, *, via: str
    ) -> None:
        self.endpoint = endpoint
        self.status = status
        self.code = code
        self.message = message
        #: ``api_key`` or ``session_token``: which credential the refused request carried
        self.via = via
        #: seconds from a ``Retry-After`` header, if the answer had one
        self.retry_after: float | None = None
        super().__init__(f"{endpoint} answered HTTP {status} (code {code}): {message}")

    @property
    def unauthorized(self) -> bool:
        return self.status == 401 or self.code == UNAUTHORIZED_CODE

    def describe(self) -> str:
        """``HTTP 400, code 10013: avatar not found`` (the vendor's own words, shortened)."""
        parts = f"HTTP {self.status}"
        if self.code is not None:
            parts += f", code {self.code}"
        return f"{parts}: {self.message}" if self.message else parts


def _clean_message(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return clean_message(value) or None


def _int_code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


class HeyGenHttp:
    """HeyGen's API over the shared :class:`~avatarstack.adapters.vendorhttp.VendorHttp`.

    ``retries`` extra attempts with exponential backoff and jitter are made for idempotent calls
    only, and only after a timeout, a connection failure or a 5xx answer.
    """

    def __init__(
        self, base_url: str, *, timeout: float, retries: int, backoff: float, vendor: str
    ) -> None:
        base = base_url.rstrip("/")
        if base.endswith("/v1"):  # pipecat configures "https://api.heygen.com/v1"
            base = base[:-3]
        self.base_url = base
        self.vendor = vendor
        self._retries = max(0, retries)
        self._backoff = max(0.0, backoff)
        self._http = VendorHttp(
            vendor,
            timeout=timeout,
            max_body_bytes=MAX_BODY_BYTES,
            headers={"Accept": "application/json"},
            broken_hint="; try again, and report it if it keeps happening",
        )

    async def call(
        self,
        method: Literal["GET", "POST"],
        endpoint: str,
        *,
        credential: Credential,
        body: Mapping[str, Any] | None = None,
        idempotent: bool,
        time_limit: float | None = None,
    ) -> dict[str, Any]:
        """Send one API call (``endpoint`` is the path after the base URL, e.g.
        ``v1/streaming.new``) and return the whole envelope of a 2xx answer."""
        name = endpoint.rsplit("/", 1)[-1]
        url = f"{self.base_url}/{endpoint}"
        attempts = 1 + (self._retries if idempotent else 0)
        timeout = aiohttp.ClientTimeout(total=time_limit) if time_limit else None
        payload = (dict(body) if body is not None else {}) if method == "POST" else None

        async def once() -> Answer:
            try:
                return await self._http.send(
                    method,
                    url,
                    what=name,
                    headers=credential.headers(),
                    body=payload,
                    time_limit=timeout,
                )
            except UpstreamError as exc:
                cause = type(exc.__cause__).__name__
                log.warning("heygen_broken_answer", endpoint=name, error=cause)
                raise

        def retrying(attempt: int, failure: Retryable, delay: float) -> None:
            reason = self._failure(name, failure, timeout)
            log.info("heygen_request_retry", endpoint=name, attempt=attempt, reason=reason)

        try:
            answer = await with_retries(
                once, attempts=attempts, first_delay=self._backoff, on_retry=retrying
            )
        except Retryable as failure:
            reason = self._failure(name, failure, timeout)
            log.warning("heygen_unavailable", endpoint=name, attempts=attempts, reason=reason)
            tries = f" ({attempts} attempts)" if attempts > 1 else ""
            raise UnavailableError(
                f"{self.vendor} is unavailable: it {reason}{tries}; try again later"
            ) from failure.__cause__
        return self._parse(name, answer, credential)

    def _failure(self, name: str, failure: Retryable, timeout: aiohttp.ClientTimeout | None) -> str:
        if failure.reason == "timeout":
            seconds = (timeout or self._http.client_timeout).total
            return f"did not answer {name} within {seconds:g} s"
        if failure.reason == "unreachable":
            return f"cannot be reached ({type(failure.__cause__).__name__})"
        return f"answered {name} with HTTP {failure.status}"

    def _parse(self, name: str, answer: Answer, credential: Credential) -> dict[str, Any]:
        body = self._http.decode(answer, name)
        status = answer.status
        if 200 <= status < 300:
            if body is NOT_JSON or not isinstance(body, dict):
                log.warning("heygen_malformed_answer", endpoint=name, status=status)
                what = "a body that is not JSON" if body is NOT_JSON else "no JSON object"
                raise UpstreamError(
                    f"{self.vendor} answered {name} (HTTP {status}) with {what}; its API may "
                    "have changed — report this with the time it happened"
                )
            return body
        code = message = None
        if isinstance(body, dict):
            code = _int_code(body.get("code"))
            message = _clean_message(body.get("message") or body.get("error"))
        refusal = HeyGenRefusal(name, status, code, message, via=credential.kind)
        refusal.retry_after = answer.retry_after
        raise refusal

    async def close(self) -> None:
        await self._http.close()
