"""Google and GitHub logins against faithful fake servers on 127.0.0.1, end to end over HTTP."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from avatarstack.adapters.oauth import GitHubOAuthProvider, GoogleOAuthProvider
from avatarstack.bootstrap.settings import (
    GitHubSettings,
    GoogleSettings,
    OAuthSettings,
    Settings,
)
from avatarstack.plugins.manager import collect, make_plugin_manager
from avatarstack.ports.errors import AuthenticationError, UnavailableError, UpstreamError
from avatarstack.ports.oauth import AuthorizationRequest, OAuthProfile, OAuthProvider
from avatarstack.testkit.oauth import (
    OMIT,
    FakeGitHub,
    FakeGitHubEmail,
    FakeGitHubUser,
    FakeGoogle,
    FakeGoogleUser,
)

GOOGLE_CALLBACK = "http://127.0.0.1:8080/api/v1/auth/oauth/google/callback"
GITHUB_CALLBACK = "http://127.0.0.1:8080/api/v1/auth/oauth/github/callback"


# =========================================================================== helpers


@dataclass(frozen=True)
class Login:
    """What the core keeps between the redirect and the callback, plus what came back."""

    code: str
    state: str
    nonce: str
    verifier: str
    redirect_uri: str


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def start_login(provider: OAuthProvider, redirect_uri: str) -> Login:
    """Build the authorization URL and follow it like a browser, up to the redirect back."""
    verifier = secrets.token_urlsafe(48)
    request = AuthorizationRequest(
        redirect_uri=redirect_uri,
        state=secrets.token_urlsafe(16),
        nonce=secrets.token_urlsafe(16),
        code_challenge=s256(verifier),
    )
    url = await provider.authorization_url(request)
    assert url.startswith("http://127.0.0.1:")
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(url, allow_redirects=False) as response,
    ):
        assert response.status == 302, await response.text()
        location = response.headers["Location"]
    assert location.startswith(redirect_uri + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [request.state]
    return Login(query["code"][0], request.state, request.nonce, verifier, redirect_uri)


async def finish_login(provider: OAuthProvider, login: Login, **changes: str) -> OAuthProfile:
    arguments = {
        "code": login.code,
        "code_verifier": login.verifier,
        "redirect_uri": login.redirect_uri,
        "nonce": login.nonce,
        **changes,
    }
    return await provider.complete(**arguments)


def assert_no_secrets(error: BaseException, *secret_values: str) -> None:
    """Neither the error nor what it was raised from mentions any of the values."""
    seen: BaseException | None = error
    while seen is not None:
        for text in (str(seen), repr(seen), str(getattr(seen, "detail", ""))):
            for value in secret_values:
                assert value not in text, f"{value[:6]}… leaked into {type(seen).__name__}"
        seen = seen.__cause__ or seen.__context__


@pytest.fixture
async def google(fake_google: FakeGoogle) -> AsyncIterator[GoogleOAuthProvider]:
    provider = GoogleOAuthProvider(
        fake_google.client_id, fake_google.client_secret, fake_google.metadata_url
    )
    yield provider
    await provider.close()


@pytest.fixture
async def github(fake_github: FakeGitHub) -> AsyncIterator[GitHubOAuthProvider]:
    provider = GitHubOAuthProvider(
        fake_github.client_id,
        fake_github.client_secret,
        fake_github.authorize_url,
        fake_github.token_url,
        fake_github.api_base_url,
    )
    yield provider
    await provider.close()


# =========================================================================== Google


async def test_a_google_login_returns_the_profile_with_a_verified_email(
    google: GoogleOAuthProvider, fake_google: FakeGoogle
) -> None:
    login = await start_login(google, GOOGLE_CALLBACK)

    profile = await finish_login(google, login)

    assert profile == OAuthProfile(
        provider="google",
        subject="108234567890123456789",
        email="ada@example.com",
        email_verified=True,
        name="Ada Lovelace",
    )
    (sent,) = fake_google.token_requests
    assert sent["code_verifier"] == login.verifier
    assert sent["redirect_uri"] == GOOGLE_CALLBACK
    assert sent["grant_type"] == "authorization_code"


async def test_the_google_authorization_url_asks_for_a_code_with_pkce_state_and_nonce(
    google: GoogleOAuthProvider, fake_google: FakeGoogle
) -> None:
    login = await start_login(google, GOOGLE_CALLBACK)

    (query,) = fake_google.authorize_requests
    assert query["response_type"] == "code"
    assert query["scope"] == "openid email profile"
    assert query["client_id"] == fake_google.client_id
    assert query["redirect_uri"] == GOOGLE_CALLBACK
    assert query["state"] == login.state
    assert query["nonce"] == login.nonce
    assert query["code_challenge"] == s256(login.verifier)
    assert query["code_challenge_method"] == "S256"


async def test_google_sending_email_verified_as_a_string_still_counts_as_verified(
    google: GoogleOAuthProvider, fake_google: FakeGoogle
) -> None:
    fake_google.login_as(FakeGoogleUser(sub="42", email="b@example.com", email_verified="true"))

    profile = await finish_login(google, await start_login(google, GOOGLE_CALLBACK))

    assert (profile.subject, profile.email, profile.email_verified) == ("42", "b@example.com", True)


async def test_an_unverified_google_email_is_returned_as_unverified(
    google: GoogleOAuthProvider, fake_google: FakeGoogle
) -> None:
    fake_google.login_as(FakeGoogleUser(email="c@example.com", email_verified=False, name=None))

    profile = await finish_login(google, await start_login(google, GOOGLE_CALLBACK))

    assert (profile.email, profile.email_verified, profile.name) == ("c@example.com", False, None)


async def test_a_wrong_code_verifier_fails_the_google_login(
    google: GoogleOAuthProvider,
) -> None:
    login = await start_login(google, GOOGLE_CALLBACK)

    with pytest.raises(AuthenticationError):
        await finish_login(google, login, code_verifier=secrets.token_urlsafe(48))


async def test_a_replayed_google_code_fails(google: GoogleOAuthProvider) -> None:
    login = await start_login(google, GOOGLE_CALLBACK)
    await finish_login(google, login)

    with pytest.raises(AuthenticationError):
        await finish_login(google, login)


async def test_a_different_redirect_uri_at_the_exchange_fails_the_google_login(
    google: GoogleOAuthProvider, fake_google: FakeGoogle
) -> None:
    other = "http://127.0.0.1:8080/elsewhere"
    fake_google.redirect_uris.append(other)
    login = await start_login(google, GOOGLE_CALLBACK)

    with pytest.raises(AuthenticationError):
        await finish_login(google, login, redirect_uri=other)


async def test_a_nonce_from_another_login_fails_the_id_token_check(
    google: GoogleOAuthProvider,
) -> None:
    login = await start_login(google, GOOGLE_CALLBACK)

    with pytest.raises(AuthenticationError, match="nonce"):
        await finish_login(google, login, nonce="the-nonce-of-another-login")


NOW = int(time.time())


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"aud": "another-client.apps.googleusercontent.com"}, id="wrong audience"),
        pytest.param({"iss": "https://accounts.evil.example"}, id="wrong issuer"),
        pytest.param({"nonce": "not-the-login-nonce"}, id="wrong nonce"),
        pytest.param({"nonce": OMIT}, id="no nonce"),
        pytest.param({"iat": NOW - 7200, "exp": NOW - 3600}, id="expired"),
        pytest.param({"exp": OMIT}, id="no expiry"),
        pytest.param({"iat": NOW + 3600, "exp": NOW + 7200}, id="issued in the future"),
        pytest.param({"iat": NOW - 3000, "exp": NOW + 600}, id="issued too long ago"),
        pytest.param({"sub": OMIT}, id="no subject"),
        pytest.param({"sub": 12345}, id="subject is not a string"),
        pytest.param({"exp": "never"}, id="expiry is not a number"),
        pytest.param({"exp": True}, id="expiry is a boolean"),
        pytest.param({"azp": "another-client"}, id="authorized party is another client"),
        pytest.param({"aud": ["CLIENT", "another-client"], "azp": OMIT}, id="two audiences"),
    ],
)
async def test_an_id_token_failing_a_claim_check_fails_the_google_login(
    google: GoogleOAuthProvider, fake_google: FakeGoogle, overrides: dict[str, Any]
) -> None:
    fake_google.id_token_overrides = {
        name: [fake_google.client_id if v == "CLIENT" else v for v in value]
        if isinstance(value, list)
        else value
        for name, value in overrides.items()
    }
    login = await start_login(google, GOOGLE_CALLBACK)

    with pytest.raises(AuthenticationError):
        await finish_login(google, login)


async def test_an_id_token_for_several_audiences_is_accepted_when_we_are_the_authorized_party(
    google: GoogleOAuthProvider, fake_google: FakeGoogle
) -> None:
    fake_google.id_token_overrides = {"aud": [fake_google.client_id, "another-client"]}

    profile = await finish_login(google, await start_login(google, GOOGLE_CALLBACK))

    assert profile.subject == fake_google.user.sub


async def test_an_id_token_with_a_bad_signature_fails_the_google_login(
    google: GoogleOAuthProvider, fake_google: FakeGoogle
) -> None:
    fake_google.sign_with_other_key = True
    login = await start_login(google, GOOGLE_CALLBACK)

    with pytest.raises(AuthenticationError, match="signature"):
        await finish_login(google, login)


@pytest.mark.parametrize("alg", ["none", "HS256", "RS512"])
async def test_an_id_token_signed_with_an_algorithm_outside_the_allow_list_is_refused(
    google: GoogleOAuthProvider, fake_google: FakeGoogle, alg: str
) -> None:
    fake_google.id_token_alg = alg
    login = await start_login(google, GOOGLE_CALLBACK)

    with pytest.raises(AuthenticationError, match="algorithm"):
        await finish_login(google, login)


async def test_google_logins_keep_working_after_the_signing_keys_rotate(
    google: GoogleOAuthProvider, fake_google: FakeGoogle
) -> None:
    await finish_login(google, await start_login(google, GOOGLE_CALLBACK))
    await finish_login(google, await start_login(google, GOOGLE_CALLBACK))
    assert fake_google.requests.count("GET /oauth2/v3/certs") == 1  # keys are cached

    fake_google.rotate_keys()
    profile = await finish_login(google, await start_login(google, GOOGLE_CALLBACK))

    assert profile.email_verified
    assert fake_google.requests.count("GET /oauth2/v3/certs") == 2  # one refetch, new kid
    assert fake_google.requests.count("GET /.well-known/openid-configuration") == 1


@pytest.mark.parametrize("status", [500, 503])
async def test_a_failing_google_token_endpoint_is_an_upstream_error(
    google: GoogleOAuthProvider, fake_google: FakeGoogle, status: int
) -> None:
    login = await start_login(google, GOOGLE_CALLBACK)
    fake_google.fail_token_with_status = status

    with pytest.raises(UpstreamError, match=str(status)):
        await finish_login(google, login)


async def test_malformed_json_from_the_google_token_endpoint_is_an_upstream_error(
    google: GoogleOAuthProvider, fake_google: FakeGoogle
) -> None:
    fake_google.malformed_token_json = True
    login = await start_login(google, GOOGLE_CALLBACK)

    with pytest.raises(UpstreamError, match="JSON"):
        await finish_login(google, login)


async def test_a_wrong_client_secret_is_an_upstream_error_not_a_failed_login(
    fake_google: FakeGoogle,
) -> None:
    provider = GoogleOAuthProvider(
        fake_google.client_id, "not-the-secret", fake_google.metadata_url
    )
    try:
        login = await start_login(provider, GOOGLE_CALLBACK)
        with pytest.raises(UpstreamError, match="invalid_client") as caught:
            await finish_login(provider, login)
    finally:
        await provider.close()
    assert_no_secrets(caught.value, "not-the-secret", login.code, login.verifier)


async def test_an_unreachable_google_is_unavailable(
    google: GoogleOAuthProvider, fake_google: FakeGoogle
) -> None:
    login = await start_login(google, GOOGLE_CALLBACK)
    await fake_google.stop()

    with pytest.raises(UnavailableError):
        await finish_login(google, login)


async def test_a_google_token_endpoint_that_does_not_answer_in_time_is_unavailable(
    fake_google: FakeGoogle,
) -> None:
    provider = GoogleOAuthProvider(
        fake_google.client_id, fake_google.client_secret, fake_google.metadata_url, timeout=0.3
    )
    fake_google.delay_token_seconds = 30
    try:
        login = await start_login(provider, GOOGLE_CALLBACK)
        started = time.monotonic()
        with pytest.raises(UnavailableError, match="in time"):
            await finish_login(provider, login)
    finally:
        await provider.close()
    assert time.monotonic() - started < 5


async def test_an_unreachable_discovery_document_is_unavailable(fake_google: FakeGoogle) -> None:
    metadata_url = fake_google.metadata_url
    await fake_google.stop()
    provider = GoogleOAuthProvider("id", "secret", metadata_url)
    try:
        with pytest.raises(UnavailableError):
            await start_login(provider, GOOGLE_CALLBACK)
    finally:
        await provider.close()


async def test_google_errors_never_mention_the_secret_the_code_the_verifier_or_tokens(
    google: GoogleOAuthProvider, fake_google: FakeGoogle
) -> None:
    errors: list[BaseException] = []
    logins: list[Login] = []

    async def failing(**changes: str) -> None:
        login = await start_login(google, GOOGLE_CALLBACK)
        logins.append(login)
        with pytest.raises((AuthenticationError, UpstreamError, UnavailableError)) as caught:
            await finish_login(google, login, **changes)
        errors.append(caught.value)

    await failing(code_verifier=secrets.token_urlsafe(48))
    fake_google.id_token_overrides = {"aud": "someone-else"}
    await failing()
    fake_google.id_token_overrides = {}
    fake_google.sign_with_other_key = True
    await failing()
    fake_google.sign_with_other_key = False
    fake_google.malformed_token_json = True
    await failing()
    fake_google.malformed_token_json = False
    fake_google.fail_token_with_status = 500
    await failing()
    fake_google.fail_token_with_status = None
    login = await start_login(google, GOOGLE_CALLBACK)
    logins.append(login)
    await fake_google.stop()
    with pytest.raises(UnavailableError) as caught:
        await finish_login(google, login)
    errors.append(caught.value)

    secret_values = [fake_google.client_secret, *fake_google.issued_id_tokens]
    for login in logins:
        secret_values += [login.code, login.verifier]
    for error in errors:
        assert_no_secrets(error, *secret_values)


async def test_a_google_provider_refuses_symmetric_or_unsigned_algorithms() -> None:
    for algorithms in (["HS256"], ["none"], ["RS256", "HS512"], []):
        with pytest.raises(ValueError, match="asymmetric"):
            GoogleOAuthProvider("id", "secret", algorithms=algorithms)


# =========================================================================== GitHub


async def test_a_github_login_returns_the_numeric_id_and_the_verified_primary_email(
    github: GitHubOAuthProvider, fake_github: FakeGitHub
) -> None:
    login = await start_login(github, GITHUB_CALLBACK)

    profile = await finish_login(github, login)

    assert profile == OAuthProfile(
        provider="github",
        subject="583231",
        email="octocat@github.com",
        email_verified=True,
        name="The Octocat",
    )
    (query,) = fake_github.authorize_requests
    assert query["scope"] == "read:user user:email"
    assert query["code_challenge"] == s256(login.verifier)
    assert query["code_challenge_method"] == "S256"
    (sent,) = fake_github.token_requests
    assert sent["code_verifier"] == login.verifier
    assert sent["redirect_uri"] == GITHUB_CALLBACK
    assert fake_github.api_requests == ["GET /user", "GET /user/emails"]


async def test_the_github_subject_stays_the_same_when_the_login_is_renamed(
    github: GitHubOAuthProvider, fake_github: FakeGitHub
) -> None:
    first = await finish_login(github, await start_login(github, GITHUB_CALLBACK))
    fake_github.login_as(FakeGitHubUser(id=583231, login="octocat-renamed", name=None))

    second = await finish_login(github, await start_login(github, GITHUB_CALLBACK))

    assert first.subject == second.subject == "583231"
    assert second.name == "octocat-renamed"  # no display name: the login stands in


async def test_an_unverified_primary_github_email_is_not_used(
    github: GitHubOAuthProvider, fake_github: FakeGitHub
) -> None:
    fake_github.login_as(
        FakeGitHubUser(emails=[FakeGitHubEmail("new@example.com", primary=True, verified=False)])
    )

    profile = await finish_login(github, await start_login(github, GITHUB_CALLBACK))

    assert (profile.email, profile.email_verified) == (None, False)


async def test_a_verified_but_not_primary_github_email_is_not_used(
    github: GitHubOAuthProvider, fake_github: FakeGitHub
) -> None:
    fake_github.login_as(
        FakeGitHubUser(
            emails=[
                FakeGitHubEmail("main@example.com", primary=True, verified=False),
                FakeGitHubEmail("old@example.com", primary=False, verified=True),
            ]
        )
    )

    profile = await finish_login(github, await start_login(github, GITHUB_CALLBACK))

    assert (profile.email, profile.email_verified) == (None, False)


async def test_a_bad_github_code_answered_with_http_200_fails_the_login(
    github: GitHubOAuthProvider,
) -> None:
    login = await start_login(github, GITHUB_CALLBACK)

    with pytest.raises(AuthenticationError, match="bad_verification_code"):
        await finish_login(github, login, code="0123456789abcdef0123")


async def test_a_replayed_github_code_fails(github: GitHubOAuthProvider) -> None:
    login = await start_login(github, GITHUB_CALLBACK)
    await finish_login(github, login)

    with pytest.raises(AuthenticationError):
        await finish_login(github, login)


async def test_a_wrong_code_verifier_fails_the_github_login(github: GitHubOAuthProvider) -> None:
    login = await start_login(github, GITHUB_CALLBACK)

    with pytest.raises(AuthenticationError):
        await finish_login(github, login, code_verifier=secrets.token_urlsafe(48))


async def test_a_different_redirect_uri_at_the_exchange_fails_the_github_login(
    github: GitHubOAuthProvider,
) -> None:
    login = await start_login(github, GITHUB_CALLBACK)

    with pytest.raises(AuthenticationError, match="redirect_uri_mismatch"):
        await finish_login(github, login, redirect_uri=GITHUB_CALLBACK + "/other")


async def test_github_refusing_its_own_fresh_token_is_an_upstream_error(
    github: GitHubOAuthProvider, fake_github: FakeGitHub
) -> None:
    # The code was accepted, so the person did authenticate; a 401 from /user means GitHub
    # broke or the API URL belongs to another instance: an operator problem (502), not a 401.
    fake_github.fail_api_with_status = 401
    login = await start_login(github, GITHUB_CALLBACK)

    with pytest.raises(UpstreamError, match="401") as caught:
        await finish_login(github, login)
    assert_no_secrets(caught.value, fake_github.client_secret, login.code, login.verifier)


async def test_a_failing_github_token_endpoint_is_an_upstream_error(
    github: GitHubOAuthProvider, fake_github: FakeGitHub
) -> None:
    login = await start_login(github, GITHUB_CALLBACK)
    fake_github.fail_token_with_status = 502

    with pytest.raises(UpstreamError, match="502"):
        await finish_login(github, login)


async def test_malformed_json_from_github_is_an_upstream_error(
    github: GitHubOAuthProvider, fake_github: FakeGitHub
) -> None:
    fake_github.malformed_token_json = True
    login = await start_login(github, GITHUB_CALLBACK)

    with pytest.raises(UpstreamError, match="JSON"):
        await finish_login(github, login)


async def test_wrong_github_client_credentials_are_an_upstream_error(
    fake_github: FakeGitHub,
) -> None:
    provider = GitHubOAuthProvider(
        fake_github.client_id,
        "not-the-secret",
        fake_github.authorize_url,
        fake_github.token_url,
        fake_github.api_base_url,
    )
    try:
        login = await start_login(provider, GITHUB_CALLBACK)
        with pytest.raises(UpstreamError, match="incorrect_client_credentials") as caught:
            await finish_login(provider, login)
    finally:
        await provider.close()
    assert_no_secrets(caught.value, "not-the-secret", login.code, login.verifier)


async def test_an_unreachable_github_is_unavailable(
    github: GitHubOAuthProvider, fake_github: FakeGitHub
) -> None:
    login = await start_login(github, GITHUB_CALLBACK)
    await fake_github.stop()

    with pytest.raises(UnavailableError):
        await finish_login(github, login)


# =========================================================================== plugins


@pytest.fixture
def no_env_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in list(__import__("os").environ):
        if name.startswith("AVATARSTACK_"):
            monkeypatch.delenv(name)


def oauth_providers(settings: Settings) -> dict[str, Any]:
    return collect(
        make_plugin_manager(load_entrypoints=False),
        "register_oauth_providers",
        key=lambda provider: provider.name,
        kind="OAuth provider",
        settings=settings,
    )


@pytest.mark.usefixtures("no_env_settings")
def test_the_builtin_plugins_register_google_and_github_when_their_client_ids_are_set() -> None:
    settings = Settings(
        oauth=OAuthSettings(
            google=GoogleSettings(client_id="g-id", client_secret="g-secret"),
            github=GitHubSettings(client_id="gh-id", client_secret="gh-secret"),
        )
    )

    providers = oauth_providers(settings)

    assert sorted(providers) == ["github", "google"]
    assert isinstance(providers["google"], GoogleOAuthProvider)
    assert isinstance(providers["github"], GitHubOAuthProvider)
    assert providers["github"].display_name == "GitHub"
    assert "g-secret" not in repr(providers["google"])


@pytest.mark.usefixtures("no_env_settings")
def test_no_oauth_provider_is_registered_without_client_ids() -> None:
    assert oauth_providers(Settings()) == {}


@pytest.mark.usefixtures("no_env_settings")
@pytest.mark.parametrize(
    ("oauth", "variable"),
    [
        (
            OAuthSettings(google=GoogleSettings(client_id="g-id")),
            "AVATARSTACK_OAUTH__GOOGLE__CLIENT_SECRET",
        ),
        (
            OAuthSettings(github=GitHubSettings(client_id="gh-id")),
            "AVATARSTACK_OAUTH__GITHUB__CLIENT_SECRET",
        ),
    ],
)
def test_a_client_id_without_its_secret_is_an_error_naming_the_variable(
    oauth: OAuthSettings, variable: str
) -> None:
    with pytest.raises(ValueError, match=variable):
        oauth_providers(Settings(oauth=oauth))
