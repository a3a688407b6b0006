"""GitHub sign-in: OAuth 2 with PKCE, then the REST API for the user and their e-mails.

authlib builds the authorization URL and exchanges the code (see ``_http``); GitHub answers a
refused exchange with HTTP 200 and an ``error`` field, which authlib reports as an OAuth error.
GitHub is not an OpenID Connect issuer, so there is no ID token to check: the identity comes
from ``GET /user`` (the numeric ``id`` is the subject; the ``login`` can be renamed) and the
e-mail from ``GET /user/emails``, where only the entry that is both ``primary`` and ``verified``
counts. These two REST calls are GitHub's own API, not OAuth, and stay here.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from avatarstack.adapters.oauth._http import (
    DEFAULT_TIMEOUT,
    OAuthHttpClient,
    TokenRefused,
    log,
)
from avatarstack.ports.errors import AuthenticationError, UpstreamError
from avatarstack.ports.oauth import AuthorizationRequest, OAuthProfile

__all__ = ["GitHubOAuthProvider"]

#: token endpoint errors (GitHub sends them with HTTP 200) that reject this login attempt
_REJECTED_GRANT_ERRORS = {"bad_verification_code", "redirect_uri_mismatch", "invalid_grant"}
_API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


class GitHubOAuthProvider:
    """An ``OAuthProvider`` for github.com or a GitHub Enterprise Server (override the URLs)."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        authorize_url: str,
        token_url: str,
        api_base_url: str,
        *,
        name: str = "github",
        display_name: str = "GitHub",
        scopes: Collection[str] = ("read:user", "user:email"),
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not client_id or not client_secret:
            raise ValueError(f"OAuth provider {name!r} needs a client id and a client secret")
        self.name = name
        self.display_name = display_name
        self.client_id = client_id
        self.authorize_url = authorize_url
        self.token_url = token_url
        self.api_base_url = api_base_url.rstrip("/")
        self.scopes = tuple(scopes)
        self._http = OAuthHttpClient(
            name, display_name, client_id=client_id, client_secret=client_secret, timeout=timeout
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, client_id={self.client_id!r})"

    async def authorization_url(self, request: AuthorizationRequest) -> str:
        if request.code_challenge_method != "S256":
            raise ValueError("only the S256 PKCE method is supported")
        return self._http.authorization_url(
            self.authorize_url,
            redirect_uri=request.redirect_uri,
            scope=" ".join(self.scopes),
            state=request.state,
            code_challenge=request.code_challenge,
            code_challenge_method="S256",
        )

    async def complete(
        self, *, code: str, code_verifier: str, redirect_uri: str, nonce: str
    ) -> OAuthProfile:
        del nonce  # GitHub has no ID token; state and PKCE bind the code to this login
        token = await self._exchange(code, code_verifier, redirect_uri)
        user = await self._api(token, "/user", endpoint="user API")
        if not isinstance(user, dict):
            raise UpstreamError(f"{self.display_name} user API answered an unexpected shape")
        user_id = user.get("id")
        if not isinstance(user_id, int) or isinstance(user_id, bool):
            raise UpstreamError(f"{self.display_name} user API answered without a numeric id")
        email = await self._verified_primary_email(token)
        name = user.get("name") or user.get("login")
        return OAuthProfile(
            provider=self.name,
            subject=str(user_id),
            email=email,
            email_verified=email is not None,
            name=name if isinstance(name, str) else None,
        )

    async def close(self) -> None:
        await self._http.close()

    # ------------------------------------------------------------------ steps

    async def _exchange(self, code: str, code_verifier: str, redirect_uri: str) -> str:
        try:
            body = await self._http.fetch_token(
                self.token_url, code=code, code_verifier=code_verifier, redirect_uri=redirect_uri
            )
        except TokenRefused as refused:
            if refused.code in _REJECTED_GRANT_ERRORS:
                raise AuthenticationError(
                    f"{self.display_name} rejected the login ({refused.code}); please sign in again"
                ) from None
            if refused.code is None and refused.status != 200:
                raise UpstreamError(
                    f"{self.display_name} token endpoint answered HTTP {refused.status}"
                ) from None
            raise UpstreamError(
                f"{self.display_name} token endpoint refused the request "
                f"({refused.code or 'unknown'})"
            ) from None
        token = body.get("access_token")
        token_type = body.get("token_type", "bearer")
        if not isinstance(token, str) or not token:
            raise UpstreamError(f"{self.display_name} token endpoint returned no access token")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise UpstreamError(f"{self.display_name} token endpoint returned a non-bearer token")
        return token

    async def _api(self, token: str, path: str, *, endpoint: str) -> Any:
        answer = await self._http.request_json(
            "GET",
            f"{self.api_base_url}{path}",
            endpoint=endpoint,
            headers={**_API_HEADERS, "Authorization": f"Bearer {token}"},
        )
        if answer.status != 200:
            # GitHub refusing the token it issued a moment ago is GitHub's fault or a
            # misconfiguration (API URL of another instance), not a failed login: 502.
            raise UpstreamError(f"{self.display_name} {endpoint} answered HTTP {answer.status}")
        return answer.body

    async def _verified_primary_email(self, token: str) -> str | None:
        answer = await self._http.request_json(
            "GET",
            f"{self.api_base_url}/user/emails",
            endpoint="e-mail API",
            headers={**_API_HEADERS, "Authorization": f"Bearer {token}"},
        )
        if answer.status in {403, 404}:
            # a GitHub App without the "email addresses" permission: no e-mail, still a login
            log.warning("oauth_github_emails_not_accessible", provider=self.name)
            return None
        if answer.status != 200:
            raise UpstreamError(f"{self.display_name} e-mail API answered HTTP {answer.status}")
        emails = answer.body
        if not isinstance(emails, list):
            raise UpstreamError(f"{self.display_name} e-mail API answered an unexpected shape")
        for entry in emails:
            if (
                isinstance(entry, dict)
                and entry.get("primary") is True
                and entry.get("verified") is True
                and isinstance(entry.get("email"), str)
                and entry["email"]
            ):
                return str(entry["email"])
        log.info("oauth_github_no_verified_primary_email", provider=self.name)
        return None
