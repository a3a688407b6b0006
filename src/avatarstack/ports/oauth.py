"""The OAuth provider port: one external login method (Google, GitHub, any OIDC issuer)."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict


class OAuthProfile(BaseModel):
    """What a provider asserts about the person who logged in."""

    model_config = ConfigDict(frozen=True)

    provider: str
    subject: str
    email: str | None = None
    email_verified: bool = False
    name: str | None = None


class AuthorizationRequest(BaseModel):
    """What the provider needs to start a login; ``state``/``nonce``/PKCE come from the core."""

    model_config = ConfigDict(frozen=True)

    redirect_uri: str
    state: str
    nonce: str
    code_challenge: str
    code_challenge_method: str = "S256"


class OAuthProvider(Protocol):
    name: str
    display_name: str

    async def authorization_url(self, request: AuthorizationRequest) -> str:
        """The provider URL the browser is sent to."""

    async def complete(
        self, *, code: str, code_verifier: str, redirect_uri: str, nonce: str
    ) -> OAuthProfile:
        """Exchange the code and return the verified profile.

        Raises AuthenticationError when the provider rejects the code or the identity
        assertion fails its checks (signature, audience, nonce, expiry), UpstreamError or
        UnavailableError when the provider misbehaves or cannot be reached.
        """

    async def close(self) -> None: ...
