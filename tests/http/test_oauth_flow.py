"""OAuth sign-in over HTTP, end to end against the fake Google and GitHub servers.

The test drives the browser by hand: our ``/authorize`` answers 302 to the fake provider, an
``aiohttp.ClientSession`` (the "browser") follows that to the fake, which logs its test user in
and answers 302 back to our callback URL under ``PUBLIC_URL``; the callback (called on the
test client) answers 302 to ``PUBLIC_URL/oauth/complete#code=…`` (or ``#error=…``), and the
front end trades the one-time code at ``POST /auth/oauth/exchange`` for a token pair.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import aiohttp
import pytest

from avatarstack.adapters.argon2 import Argon2PasswordHasher
from avatarstack.adapters.http import keys
from avatarstack.core.identity import IdentityService, RequestContext
from avatarstack.testkit.clock import ManualClock
from avatarstack.testkit.oauth import (
    FakeGitHub,
    FakeGitHubEmail,
    FakeGitHubUser,
    FakeGoogle,
    FakeGoogleUser,
)

APP = "http://app.test"
API = "/api/v1"
COMPLETE = f"{APP}/oauth/complete#"
PROBLEM = "application/problem+json"
PASSWORD = "correct horse battery staple"


def callback_url(provider: str) -> str:
    return f"{APP}{API}/auth/oauth/{provider}/callback"


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def oauth_settings(google: FakeGoogle | None, github: FakeGitHub | None) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if google is not None:
        settings["google"] = {
            "client_id": google.client_id,
            "client_secret": google.client_secret,
            "server_metadata_url": f"{google.base_url}/.well-known/openid-configuration",
        }
    if github is not None:
        settings["github"] = {
            "client_id": github.client_id,
            "client_secret": github.client_secret,
            "authorize_url": github.authorize_url,
            "token_url": github.token_url,
            "api_base_url": github.api_base_url,
        }
    return settings


# =========================================================================== fixtures


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def google(fake_google: FakeGoogle) -> FakeGoogle:
    fake_google.redirect_uris.append(callback_url("google"))
    return fake_google


@pytest.fixture
def github(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.callback_url = callback_url("github")
    return fake_github


@pytest.fixture
async def client(
    avatarstack_client: Any, google: FakeGoogle, github: FakeGitHub, clock: ManualClock
) -> Any:
    return await avatarstack_client(
        providers_={
            "password_hasher": Argon2PasswordHasher(memory_cost=1024, time_cost=1, parallelism=1),
            "clock": clock,
        },
        public_url=APP,
        oauth=oauth_settings(google, github),
    )


# =========================================================================== the browser


@dataclass(frozen=True)
class Outcome:
    """Where the callback sent the browser: the fragment of PUBLIC_URL/oauth/complete."""

    fragment: dict[str, str]

    @property
    def code(self) -> str:
        assert "error" not in self.fragment, self.fragment
        return self.fragment["code"]

    @property
    def error(self) -> str:
        assert "code" not in self.fragment, "a login code was issued"
        return self.fragment["error"]


def identity_of(client: Any) -> IdentityService:
    return client.server.app[keys.IDENTITY]


async def authorize(client: Any, provider: str, redirect_to: str | None = None) -> str:
    """GET our authorize route; returns the provider URL it redirects to."""
    params = {} if redirect_to is None else {"redirect_to": redirect_to}
    response = await client.get(
        f"{API}/auth/oauth/{provider}/authorize", params=params, allow_redirects=False
    )
    assert response.status == 302, await response.text()
    return response.headers["Location"]


async def at_provider(url: str) -> str:
    """The browser at the provider: returns where the provider sends it back."""
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(url, allow_redirects=False) as response,
    ):
        assert response.status == 302, await response.text()
        return response.headers["Location"]


async def back_at(client: Any, url: str) -> Outcome:
    """The browser back at our callback URL (under PUBLIC_URL): follow it on the test client."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == APP, url
    response = await client.get(f"{parts.path}?{parts.query}", allow_redirects=False)
    assert response.status == 302, await response.text()
    location = response.headers["Location"]
    assert location.startswith(COMPLETE), location
    return Outcome(dict(parse_qsl(urlsplit(location).fragment)))


async def provider_callback(client: Any, provider: str, redirect_to: str | None = None) -> str:
    """Start a login and go through the provider, up to (not including) our callback."""
    callback = await at_provider(await authorize(client, provider, redirect_to))
    assert callback.startswith(callback_url(provider) + "?"), callback
    return callback


async def sign_in(client: Any, provider: str, redirect_to: str | None = None) -> Outcome:
    return await back_at(client, await provider_callback(client, provider, redirect_to))


async def exchange(client: Any, code: str) -> Any:
    return await client.post(f"{API}/auth/oauth/exchange", json={"code": code})


async def tokens_for(client: Any, provider: str) -> dict[str, Any]:
    response = await exchange(client, (await sign_in(client, provider)).code)
    assert response.status == 200, await response.text()
    return await response.json()


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def me(client: Any, tokens: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(f"{API}/users/me", headers=bearer(tokens))
    assert response.status == 200, await response.text()
    return await response.json()


async def password_user(client: Any, email: str) -> dict[str, Any]:
    """A verified member with a password, logged in."""
    await identity_of(client).admin.create_user(
        email, PASSWORD, frozenset({"member"}), RequestContext()
    )
    response = await client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status == 200, await response.text()
    return await response.json()


async def user_count(client: Any) -> int:
    async with client.server.app[keys.STORAGE].unit_of_work() as uow:
        return await uow.users.count()


async def audit_actions(client: Any, subject_id: str) -> list[str]:
    events = await identity_of(client).admin.audit_log(
        limit=100, before_id=None, subject_id=subject_id
    )
    return [event.action for event in events]


async def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body = await response.json()
    assert body["status"] == status
    assert body["type"].endswith(code), body
    return body


async def link_url(client: Any, tokens: dict[str, Any], provider: str, **body: Any) -> str:
    response = await client.post(
        f"{API}/auth/oauth/{provider}/link", json=body, headers=bearer(tokens)
    )
    assert response.status == 200, await response.text()
    return (await response.json())["authorize_url"]


def unverified_github_user(user_id: int = 777, email: str = "nobody@example.org") -> FakeGitHubUser:
    return FakeGitHubUser(
        id=user_id,
        login=f"user{user_id}",
        emails=[FakeGitHubEmail(email, primary=True, verified=False)],
    )


# =========================================================================== providers


@pytest.mark.parametrize(
    ("enabled", "listed"),
    [((), []), (("google",), ["google"]), (("google", "github"), ["github", "google"])],
)
async def test_the_providers_route_lists_exactly_the_providers_with_a_client_id(
    avatarstack_client: Any,
    fake_google: FakeGoogle,
    fake_github: FakeGitHub,
    enabled: tuple[str, ...],
    listed: list[str],
) -> None:
    client = await avatarstack_client(
        public_url=APP,
        oauth=oauth_settings(
            fake_google if "google" in enabled else None,
            fake_github if "github" in enabled else None,
        ),
    )
    response = await client.get(f"{API}/auth/providers")
    assert response.status == 200
    body = await response.json()
    assert body["password"] is True
    assert [p["name"] for p in body["oauth"]] == listed
    for provider in body["oauth"]:
        assert provider["display_name"] in {"Google", "GitHub"}
        assert provider["authorize_url"] == f"{APP}{API}/auth/oauth/{provider['name']}/authorize"
    if "github" not in enabled:
        response = await client.get(f"{API}/auth/oauth/github/authorize", allow_redirects=False)
        await assert_problem(response, 404, "not-found")


async def test_an_unknown_provider_is_a_404_problem(client: Any) -> None:
    response = await client.get(f"{API}/auth/oauth/facebook/authorize", allow_redirects=False)
    await assert_problem(response, 404, "not-found")
    tokens = await password_user(client, "ann@example.com")
    response = await client.post(f"{API}/auth/oauth/facebook/link", json={}, headers=bearer(tokens))
    await assert_problem(response, 404, "not-found")
    response = await client.get(
        f"{API}/auth/oauth/facebook/callback?code=x&state=y", allow_redirects=False
    )
    assert response.status == 302  # the browser still lands on a page, never a 5xx
    assert response.headers["Location"] == f"{COMPLETE}error=not-found"


# =========================================================================== sign-in


async def test_a_google_sign_in_creates_a_verified_member_account(
    client: Any, google: FakeGoogle
) -> None:
    outcome = await sign_in(client, "google")
    assert outcome.fragment["redirect_to"] == "/"
    response = await exchange(client, outcome.code)
    assert response.status == 200, await response.text()
    tokens = await response.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["access_token"]
    assert tokens["refresh_token"]
    user = tokens["user"]
    assert user["email"] == google.user.email
    assert user["email_verified"] is True
    assert user["roles"] == ["member"]
    assert user["has_password"] is False
    assert user["display_name"] == "Ada Lovelace"
    assert [i["provider"] for i in user["identities"]] == ["google"]
    assert (await me(client, tokens))["id"] == user["id"]
    assert "user_registered_oauth" in await audit_actions(client, user["id"])


async def test_a_second_sign_in_reuses_the_account(client: Any) -> None:
    first = await tokens_for(client, "google")
    second = await tokens_for(client, "google")
    assert second["user"]["id"] == first["user"]["id"]
    assert len(second["user"]["identities"]) == 1
    assert await user_count(client) == 1


async def test_a_github_sign_in_creates_an_account_from_the_verified_primary_email(
    client: Any, github: FakeGitHub
) -> None:
    tokens = await tokens_for(client, "github")
    assert tokens["user"]["email"] == "octocat@github.com"
    assert tokens["user"]["email_verified"] is True
    assert [i["provider"] for i in tokens["user"]["identities"]] == ["github"]
    again = await tokens_for(client, "github")
    assert again["user"]["id"] == tokens["user"]["id"]


async def test_a_verified_email_of_an_existing_password_account_links_to_it(
    client: Any, google: FakeGoogle
) -> None:
    existing = await password_user(client, "Ada@Example.com")
    tokens = await tokens_for(client, "google")  # the fake's user is ada@example.com
    assert tokens["user"]["id"] == existing["user"]["id"]
    profile = await me(client, existing)
    assert [i["provider"] for i in profile["identities"]] == ["google"]
    assert profile["identities"][0]["email"] == "ada@example.com"
    assert profile["has_password"] is True
    assert await user_count(client) == 1
    assert "identity_linked" in await audit_actions(client, existing["user"]["id"])


async def test_a_sign_in_taking_over_an_unverified_registration_drops_its_password(
    client: Any,
) -> None:
    """Pre-account hijacking: someone registers the victim's address with their own password
    (never verified); the victim later signs in with Google. The account becomes the victim's,
    and the squatter's password must not open it."""
    response = await client.post(
        f"{API}/auth/register", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert response.status == 202
    tokens = await tokens_for(client, "google")
    assert tokens["user"]["email_verified"] is True
    assert tokens["user"]["has_password"] is False
    response = await client.post(
        f"{API}/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    await assert_problem(response, 401, "unauthenticated")


async def test_github_without_a_verified_primary_email_and_no_account_is_refused(
    client: Any, github: FakeGitHub
) -> None:
    github.login_as(unverified_github_user())
    outcome = await sign_in(client, "github")
    assert outcome.error == "unauthenticated"
    assert await user_count(client) == 0


async def test_github_with_only_a_non_primary_verified_email_is_refused(
    client: Any, github: FakeGitHub
) -> None:
    existing = await password_user(client, "second@example.com")
    github.login_as(
        FakeGitHubUser(
            id=31337,
            login="two-mails",
            emails=[
                FakeGitHubEmail("first@example.com", primary=True, verified=False),
                FakeGitHubEmail("second@example.com", primary=False, verified=True),
            ],
        )
    )
    outcome = await sign_in(client, "github")
    assert outcome.error == "unauthenticated"
    assert await user_count(client) == 1
    assert (await me(client, existing))["identities"] == []


async def test_an_unverified_google_email_does_not_link_to_an_existing_account(
    client: Any, google: FakeGoogle
) -> None:
    existing = await password_user(client, "victim@example.com")
    google.login_as(FakeGoogleUser(sub="999", email="victim@example.com", email_verified=False))
    outcome = await sign_in(client, "google")
    assert outcome.error == "unauthenticated"
    assert (await me(client, existing))["identities"] == []


# =========================================================================== login code


async def test_a_login_code_works_once(client: Any) -> None:
    code = (await sign_in(client, "google")).code
    assert (await exchange(client, code)).status == 200
    await assert_problem(await exchange(client, code), 400, "invalid-token")


async def test_a_login_code_expires_after_60_seconds(client: Any, clock: ManualClock) -> None:
    code = (await sign_in(client, "google")).code
    clock.advance(59)
    assert (await exchange(client, code)).status == 200

    code = (await sign_in(client, "google")).code
    clock.advance(61)
    await assert_problem(await exchange(client, code), 400, "invalid-token")


async def test_a_forged_login_code_is_refused(client: Any) -> None:
    await assert_problem(await exchange(client, secrets.token_urlsafe(32)), 400, "invalid-token")


# =========================================================================== state


def with_query(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    for name, value in changes.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = value
    return parts._replace(query=urlencode(query)).geturl()


async def test_a_callback_without_state_is_refused(client: Any, google: FakeGoogle) -> None:
    callback = await provider_callback(client, "google")
    assert (await back_at(client, with_query(callback, state=None))).error == "invalid-token"
    assert google.token_requests == []  # refused before the code was spent


async def test_a_callback_with_a_forged_state_is_refused(client: Any, google: FakeGoogle) -> None:
    callback = await provider_callback(client, "google")
    forged = with_query(callback, state=secrets.token_urlsafe(32))
    assert (await back_at(client, forged)).error == "invalid-token"
    assert google.token_requests == []
    # the genuine state is untouched by the forgery
    assert (await back_at(client, callback)).code


async def test_a_callback_in_another_browser_is_refused(client: Any, google: FakeGoogle) -> None:
    """Login CSRF: an attacker's own callback URL, opened in the victim's browser, fails
    because the victim's browser does not hold the cookie the login was bound to."""
    callback = await provider_callback(client, "google")
    client.session.cookie_jar.clear()  # the same URL, another browser
    assert (await back_at(client, callback)).error == "invalid-token"
    assert google.token_requests == []


async def test_the_binding_cookie_is_http_only_and_scoped_to_the_oauth_routes(
    client: Any,
) -> None:
    response = await client.get(f"{API}/auth/oauth/google/authorize", allow_redirects=False)
    cookie = response.cookies["avatarstack_oauth"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == f"{API}/auth/oauth/"
    assert int(cookie["max-age"]) == 600
    assert cookie.value not in response.headers["Location"]


async def test_a_replayed_callback_is_refused(client: Any, google: FakeGoogle) -> None:
    callback = await provider_callback(client, "google")
    assert (await back_at(client, callback)).code
    assert (await back_at(client, callback)).error == "invalid-token"
    assert len(google.token_requests) == 1  # the state was refused before the code was tried


async def test_a_state_older_than_10_minutes_is_refused(
    client: Any, clock: ManualClock, google: FakeGoogle
) -> None:
    callback = await provider_callback(client, "google")
    clock.advance(minutes=10, seconds=1)
    assert (await back_at(client, callback)).error == "invalid-token"
    assert google.token_requests == []


async def test_a_state_younger_than_10_minutes_is_accepted(client: Any, clock: ManualClock) -> None:
    callback = await provider_callback(client, "google")
    clock.advance(minutes=9, seconds=50)
    assert (await back_at(client, callback)).code


async def test_the_state_of_one_provider_is_refused_at_another_providers_callback(
    client: Any, google: FakeGoogle, github: FakeGitHub
) -> None:
    google_state = parse_qs(urlsplit(await provider_callback(client, "google")).query)["state"][0]
    github_callback = await provider_callback(client, "github")
    crossed = with_query(github_callback, state=google_state)
    assert (await back_at(client, crossed)).error == "invalid-token"
    assert github.token_requests == []
    assert google.token_requests == []


async def test_pkce_uses_s256_and_the_verifier_never_travels_through_the_browser(
    client: Any, google: FakeGoogle, github: FakeGitHub
) -> None:
    for fake, provider in ((google, "google"), (github, "github")):
        provider_url = await authorize(client, provider)
        callback = await at_provider(provider_url)
        assert (await back_at(client, callback)).code
        (asked,) = fake.authorize_requests
        (exchanged,) = fake.token_requests
        assert asked["code_challenge_method"] == "S256"
        verifier = exchanged["code_verifier"]
        assert 43 <= len(verifier) <= 128
        assert s256(verifier) == asked["code_challenge"]
        assert verifier not in provider_url
        assert verifier not in callback
        assert asked["state"] != verifier


# =========================================================================== redirect_to


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "https://app.test@evil.example/",
        "http://app.test@evil.example/",
        "http://app.test.evil.example/",
        "https://app.test/x",  # another origin: the scheme differs
        "javascript:alert(1)",
        "evil.example",
    ],
)
async def test_an_off_site_redirect_target_is_refused_at_authorize(
    client: Any, google: FakeGoogle, target: str
) -> None:
    response = await client.get(
        f"{API}/auth/oauth/google/authorize",
        params={"redirect_to": target},
        allow_redirects=False,
    )
    body = await assert_problem(response, 422, "validation-error")
    assert [e["field"] for e in body["errors"]] == ["query.redirect_to"]
    assert google.authorize_requests == []


async def test_an_off_site_redirect_target_is_refused_when_linking(client: Any) -> None:
    tokens = await password_user(client, "ann@example.com")
    response = await client.post(
        f"{API}/auth/oauth/github/link",
        json={"redirect_to": "//evil.example"},
        headers=bearer(tokens),
    )
    await assert_problem(response, 422, "validation-error")


@pytest.mark.parametrize("target", ["/dashboard", "/docs?tab=1", "http://app.test/x"])
async def test_a_same_site_redirect_target_comes_back_in_the_fragment(
    client: Any, target: str
) -> None:
    outcome = await sign_in(client, "google", redirect_to=target)
    assert outcome.code
    assert outcome.fragment["redirect_to"] == target


# =========================================================================== failures


async def test_a_provider_error_at_the_callback_is_provider_denied(client: Any) -> None:
    callback = await provider_callback(client, "google")
    denied = with_query(callback, code=None, error="access_denied")
    assert (await back_at(client, denied)).error == "provider-denied"


async def test_an_unreachable_provider_sends_the_browser_to_an_error_page(
    client: Any, google: FakeGoogle
) -> None:
    callback = await provider_callback(client, "google")
    await google.stop()
    assert (await back_at(client, callback)).error == "service-unavailable"
    assert await user_count(client) == 0


async def test_an_unreachable_provider_at_authorize_sends_the_browser_to_an_error_page(
    client: Any, google: FakeGoogle
) -> None:
    await google.stop()  # its discovery document is not cached yet
    response = await client.get(f"{API}/auth/oauth/google/authorize", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == f"{COMPLETE}error=service-unavailable"


@pytest.mark.parametrize("provider", ["google", "github"])
async def test_a_failing_token_endpoint_sends_the_browser_to_an_error_page(
    client: Any, google: FakeGoogle, github: FakeGitHub, provider: str
) -> None:
    callback = await provider_callback(client, provider)
    (google if provider == "google" else github).fail_token_with_status = 500
    assert (await back_at(client, callback)).error == "upstream-error"
    assert await user_count(client) == 0


# =========================================================================== linking


async def test_a_logged_in_user_links_github_even_with_another_unverified_email(
    client: Any, github: FakeGitHub
) -> None:
    tokens = await password_user(client, "alice@example.com")
    github.login_as(unverified_github_user(4242, "alice-old@example.org"))
    url = await link_url(client, tokens, "github", redirect_to="/settings")
    callback = await at_provider(url)
    outcome = await back_at(client, callback)
    assert outcome.fragment["redirect_to"] == "/settings"
    profile = await me(client, tokens)
    # GitHub vouches for no address here, so the identity records none
    assert [(i["provider"], i["email"]) for i in profile["identities"]] == [("github", None)]
    assert profile["email"] == "alice@example.com"  # the account's address is unchanged
    # the login code of a link flow logs into the linking user, and GitHub now logs in too
    response = await exchange(client, outcome.code)
    assert (await response.json())["user"]["id"] == tokens["user"]["id"]
    assert (await tokens_for(client, "github"))["user"]["id"] == tokens["user"]["id"]
    assert "identity_linked" in await audit_actions(client, tokens["user"]["id"])


async def test_linking_an_external_account_linked_to_another_user_is_a_conflict(
    client: Any,
) -> None:
    owner = await tokens_for(client, "github")  # creates octocat@github.com's account
    other = await password_user(client, "bob@example.com")
    outcome = await back_at(client, await at_provider(await link_url(client, other, "github")))
    assert outcome.error == "conflict"
    assert (await me(client, other))["identities"] == []
    assert len((await me(client, owner))["identities"]) == 1


# =========================================================================== unlinking


async def test_a_user_with_a_password_can_unlink_an_identity(client: Any) -> None:
    tokens = await password_user(client, "ada@example.com")
    await tokens_for(client, "google")  # links by the verified e-mail
    (linked,) = (await me(client, tokens))["identities"]
    response = await client.delete(
        f"{API}/users/me/identities/{linked['id']}", headers=bearer(tokens)
    )
    assert response.status == 204
    assert (await me(client, tokens))["identities"] == []
    assert "identity_unlinked" in await audit_actions(client, tokens["user"]["id"])
    response = await client.delete(
        f"{API}/users/me/identities/{linked['id']}", headers=bearer(tokens)
    )
    await assert_problem(response, 404, "not-found")


async def test_the_only_login_method_cannot_be_unlinked(client: Any) -> None:
    tokens = await tokens_for(client, "google")
    (only,) = tokens["user"]["identities"]
    response = await client.delete(
        f"{API}/users/me/identities/{only['id']}", headers=bearer(tokens)
    )
    await assert_problem(response, 409, "conflict")
    assert len((await me(client, tokens))["identities"]) == 1


async def test_an_oauth_only_user_with_two_identities_can_unlink_one(client: Any) -> None:
    tokens = await tokens_for(client, "google")
    await back_at(client, await at_provider(await link_url(client, tokens, "github")))
    identities = {i["provider"]: i["id"] for i in (await me(client, tokens))["identities"]}
    assert set(identities) == {"google", "github"}
    response = await client.delete(
        f"{API}/users/me/identities/{identities['google']}", headers=bearer(tokens)
    )
    assert response.status == 204
    response = await client.delete(
        f"{API}/users/me/identities/{identities['github']}", headers=bearer(tokens)
    )
    await assert_problem(response, 409, "conflict")


async def test_nobody_can_unlink_another_users_identity(client: Any) -> None:
    owner = await tokens_for(client, "google")
    (theirs,) = owner["user"]["identities"]
    other = await password_user(client, "mallory@example.com")
    response = await client.delete(
        f"{API}/users/me/identities/{theirs['id']}", headers=bearer(other)
    )
    await assert_problem(response, 404, "not-found")
    assert len((await me(client, owner))["identities"]) == 1
