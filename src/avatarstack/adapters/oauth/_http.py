"""HTTP plumbing shared by the OAuth adapters: one lazy authlib client and the error mapping.

Each provider owns one :class:`authlib.integrations.httpx_client.AsyncOAuth2Client` (an
``httpx2.AsyncClient``), created on first use and closed by ``close()``. authlib builds the
authorization URL, authenticates the client at the token endpoint (``client_secret_post``),
sends the authorization-code grant with the PKCE verifier and parses the token response.

What stays here is the mapping onto our errors: connection failures and timeouts become
:class:`UnavailableError`; a 5xx answer, an oversized or non-JSON body become
:class:`UpstreamError`; an OAuth error answer of the token endpoint becomes
:class:`TokenRefused` for the provider to judge. Messages name the provider and the endpoint's
role, never a URL's query, a header, a form field or a body.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import structlog
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from avatarstack.ports.errors import UnavailableError, UpstreamError

log = structlog.get_logger("avatarstack.oauth")

#: seconds for one whole request (connect, send, read), as the port's contract asks
DEFAULT_TIMEOUT = 10.0
#: bodies larger than this are not an OAuth or OIDC answer
MAX_BODY_BYTES = 1024 * 1024
_SAFE_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TOKEN_ENDPOINT = "token endpoint"  # noqa: S105 - the role named in errors


@dataclass(frozen=True, slots=True)
class JsonAnswer:
    status: int
    body: Any


class TokenRefused(Exception):
    """The token endpoint answered an OAuth error (``code`` is safe to show, or None)."""

    def __init__(self, status: int, code: str | None) -> None:
        super().__init__(f"HTTP {status}, {code or 'no error code'}")
        self.status = status
        self.code = code


class _AnswerTooLarge(Exception):
    pass


class OAuthHttpClient:
    """One authlib ``AsyncOAuth2Client`` per provider, created on first use."""

    def __init__(
        self,
        provider: str,
        display_name: str,
        *,
        client_id: str,
        client_secret: str,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.provider = provider
        self.display_name = display_name
        self._client_id = client_id
        self._client_secret = client_secret
        self._timeout = timeout
        self._client: AsyncOAuth2Client | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider!r})"

    def _oauth(self) -> Any:
        if self._client is None or self._client.is_closed:
            client = AsyncOAuth2Client(
                self._client_id,
                self._client_secret,
                token_endpoint_auth_method="client_secret_post",  # noqa: S106 - a method name
                timeout=self._timeout,
                trust_env=False,
                follow_redirects=False,
                # the size cap counts the bytes on the wire: ask for them uncompressed
                headers={"Accept-Encoding": "identity"},
                transport=_CappedTransport(httpx2.AsyncHTTPTransport(trust_env=False)),
            )
            client.register_compliance_hook("access_token_response", self._check_token_answer)
            self._client = client
        return self._client

    # ------------------------------------------------------------------ requests

    def authorization_url(self, endpoint: str, **params: str) -> str:
        """``endpoint`` with the authorization request's query (RFC 6749 §4.1.1)."""
        url, _state = self._oauth().create_authorization_url(endpoint, **params)
        return str(url)

    async def fetch_token(
        self, url: str, *, code: str, code_verifier: str, redirect_uri: str
    ) -> dict[str, Any]:
        """The token response of the authorization-code grant with PKCE (RFC 7636 §4.5).

        Raises :class:`TokenRefused` when the token endpoint answers an OAuth error.
        """
        client = self._oauth()
        async with self._guard(_TOKEN_ENDPOINT):
            try:
                token = await client.fetch_token(
                    url,
                    grant_type="authorization_code",
                    code=code,
                    redirect_uri=redirect_uri,
                    code_verifier=code_verifier,
                )
            except OAuthError as exc:  # an error answered with HTTP 200 (GitHub does)
                raise TokenRefused(200, oauth_error_code({"error": exc.error})) from None
            finally:
                client.token = None  # the caller gets the token; the shared client keeps none
        return dict(token)

    async def request_json(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
    ) -> JsonAnswer:
        """Send one request and parse its JSON answer; ``endpoint`` names it in errors."""
        async with self._guard(endpoint):
            response = await self._oauth().request(
                method, url, headers=dict(headers or {}), withhold_token=True
            )
        return JsonAnswer(response.status_code, self._json(response, endpoint))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ------------------------------------------------------------------ answers and errors

    def _check_token_answer(self, response: httpx2.Response) -> httpx2.Response:
        """authlib's hook before it parses a token response: our checks come first."""
        body = self._json(response, _TOKEN_ENDPOINT)
        if not isinstance(body, dict):
            raise UpstreamError(f"{self.display_name} token endpoint answered an unexpected shape")
        if not response.is_success:
            raise TokenRefused(response.status_code, oauth_error_code(body))
        return response

    def _json(self, response: httpx2.Response, endpoint: str) -> Any:
        where = f"{self.display_name} {endpoint}"
        status = response.status_code
        if status == 429:
            raise UnavailableError(f"{where} is rate limiting us; try again later")
        if status >= 500:
            log.warning(
                "oauth_upstream_error", provider=self.provider, endpoint=endpoint, status=status
            )
            raise UpstreamError(f"{where} answered HTTP {status}")
        try:
            return json.loads(response.content)
        except ValueError as exc:  # UnicodeDecodeError is a ValueError too
            log.warning(
                "oauth_upstream_malformed", provider=self.provider, endpoint=endpoint, status=status
            )
            raise UpstreamError(f"{where} answered HTTP {status} without valid JSON") from exc

    @asynccontextmanager
    async def _guard(self, endpoint: str) -> AsyncIterator[None]:
        where = f"{self.display_name} {endpoint}"
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except (TimeoutError, httpx2.TimeoutException) as exc:
            log.warning("oauth_upstream_timeout", provider=self.provider, endpoint=endpoint)
            raise UnavailableError(f"{where} did not answer in time") from exc
        except httpx2.NetworkError as exc:
            log.warning("oauth_upstream_unreachable", provider=self.provider, endpoint=endpoint)
            raise UnavailableError(f"{where} cannot be reached") from exc
        except _AnswerTooLarge as exc:
            raise UpstreamError(
                f"{where} sent an answer larger than {MAX_BODY_BYTES} bytes"
            ) from exc
        except httpx2.HTTPError as exc:
            log.warning("oauth_upstream_broken", provider=self.provider, endpoint=endpoint)
            raise UpstreamError(f"{where} sent a broken HTTP answer") from exc


def oauth_error_code(body: Any) -> str | None:
    """The ``error`` of an RFC 6749 error body, if it is a plain code (safe to show)."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, str) and _SAFE_CODE.fullmatch(error):
        return error
    return None


class _CappedTransport(httpx2.AsyncBaseTransport):
    """Stops reading an answer past :data:`MAX_BODY_BYTES`; refuses compressed ones."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        if response.headers.get("Content-Encoding", "identity").lower() != "identity":
            await response.aclose()  # asked for identity; a compressed body could be a bomb
            raise httpx2.DecodingError("compressed answer", request=request)
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=_CappedStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


class _CappedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > MAX_BODY_BYTES:
                raise _AnswerTooLarge
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()
