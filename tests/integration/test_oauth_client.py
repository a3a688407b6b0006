"""The OAuth client's own guards around authlib: answer size, encoding, rate limits, at_hash."""

from __future__ import annotations

import gzip
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web

from avatarstack.adapters.oauth import GoogleOAuthProvider, OpenIDConnectProvider
from avatarstack.adapters.oauth._http import MAX_BODY_BYTES
from avatarstack.ports.errors import AuthenticationError, UnavailableError, UpstreamError
from avatarstack.ports.oauth import AuthorizationRequest
from avatarstack.testkit.oauth import FakeGoogle

CALLBACK = "http://127.0.0.1:8080/api/v1/auth/oauth/google/callback"
#: the PKCE example of RFC 7636 appendix B
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


async def _oversized(request: web.Request) -> web.Response:
    return web.Response(
        body=b'{"issuer": "' + b"x" * MAX_BODY_BYTES + b'"}', content_type="application/json"
    )


async def _compressed(request: web.Request) -> web.Response:
    return web.Response(
        body=gzip.compress(b'{"issuer": "x"}'),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )


async def _rate_limited(request: web.Request) -> web.Response:
    return web.json_response({"error": "slow_down"}, status=429)


@pytest.fixture
async def discovery_at(
    aiohttp_server: Callable[[web.Application], Awaitable[Any]],
) -> AsyncIterator[Callable[[str], Awaitable[OpenIDConnectProvider]]]:
    """A provider whose discovery document is served by one of the handlers above."""
    app = web.Application()
    app.add_routes(
        [
            web.get("/oversized", _oversized),
            web.get("/compressed", _compressed),
            web.get("/rate-limited", _rate_limited),
        ]
    )
    server = await aiohttp_server(app)
    providers: list[OpenIDConnectProvider] = []

    async def provider(path: str) -> OpenIDConnectProvider:
        made = OpenIDConnectProvider(
            "id", "secret", str(server.make_url(path)), name="sso", display_name="SSO"
        )
        providers.append(made)
        return made

    yield provider
    for made in providers:
        await made.close()


def _request() -> AuthorizationRequest:
    return AuthorizationRequest(
        redirect_uri=CALLBACK,
        state=secrets.token_urlsafe(16),
        nonce=secrets.token_urlsafe(16),
        code_challenge=CHALLENGE,
    )


async def test_an_answer_larger_than_the_cap_is_an_upstream_error(
    discovery_at: Callable[[str], Awaitable[OpenIDConnectProvider]],
) -> None:
    provider = await discovery_at("/oversized")

    with pytest.raises(UpstreamError, match="larger than"):
        await provider.authorization_url(_request())


async def test_a_compressed_answer_we_did_not_ask_for_is_an_upstream_error(
    discovery_at: Callable[[str], Awaitable[OpenIDConnectProvider]],
) -> None:
    provider = await discovery_at("/compressed")

    with pytest.raises(UpstreamError, match="broken"):
        await provider.authorization_url(_request())


async def test_a_rate_limiting_issuer_is_unavailable(
    discovery_at: Callable[[str], Awaitable[OpenIDConnectProvider]],
) -> None:
    provider = await discovery_at("/rate-limited")

    with pytest.raises(UnavailableError, match="rate limiting"):
        await provider.authorization_url(_request())


@pytest.mark.parametrize(
    ("overrides", "claim"),
    [
        pytest.param({"at_hash": "not-the-hash-of-the-access-token"}, "at_hash", id="at_hash"),
        pytest.param({"sub": ""}, "sub", id="blank subject"),
        pytest.param({"nbf": 4102444800}, "nbf", id="not valid before 2100"),
        pytest.param({"exp": float("nan")}, "exp", id="expiry is NaN"),
    ],
)
async def test_an_id_token_failing_a_further_check_fails_the_login(
    fake_google: FakeGoogle, overrides: dict[str, Any], claim: str
) -> None:
    fake_google.id_token_overrides = overrides
    provider = GoogleOAuthProvider(
        fake_google.client_id, fake_google.client_secret, fake_google.metadata_url
    )
    try:
        request = _request()
        url = await provider.authorization_url(request)
        async with (
            aiohttp.ClientSession() as browser,
            browser.get(url, allow_redirects=False) as at_issuer,
        ):
            location = at_issuer.headers["Location"]
        (code,) = parse_qs(urlsplit(location).query)["code"]
        with pytest.raises(AuthenticationError, match=claim):
            await provider.complete(
                code=code,
                code_verifier=VERIFIER,
                redirect_uri=CALLBACK,
                nonce=request.nonce,
            )
    finally:
        await provider.close()
    (sent,) = fake_google.token_requests
    assert sent["client_secret"] == fake_google.client_secret  # in the form body, never a URL
    assert all(fake_google.client_secret not in str(q) for q in fake_google.authorize_requests)


def test_extra_authorize_params_cannot_replace_the_login_parameters() -> None:
    with pytest.raises(ValueError, match="state"):
        OpenIDConnectProvider(
            "id",
            "secret",
            "https://sso.example/.well-known/openid-configuration",
            name="sso",
            display_name="SSO",
            extra_authorize_params={"state": "fixed"},
        )
