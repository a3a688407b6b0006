"""Google sign-in: OpenID Connect with Google's discovery document and quirks."""

from __future__ import annotations

from typing import Any

from avatarstack.adapters.oauth.oidc import OpenIDConnectProvider, ProviderMetadata

__all__ = ["GOOGLE_METADATA_URL", "GoogleOAuthProvider"]

GOOGLE_METADATA_URL = "https://accounts.google.com/.well-known/openid-configuration"
_GOOGLE_ISSUER = "https://accounts.google.com"


class GoogleOAuthProvider(OpenIDConnectProvider):
    """Sign in with Google; every keyword of :class:`OpenIDConnectProvider` applies."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        server_metadata_url: str = GOOGLE_METADATA_URL,
        *,
        name: str = "google",
        display_name: str = "Google",
        **options: Any,
    ) -> None:
        super().__init__(
            client_id,
            client_secret,
            server_metadata_url,
            name=name,
            display_name=display_name,
            **options,
        )

    def accepted_issuers(self, metadata: ProviderMetadata) -> list[str]:
        # Google documents that its ID tokens carry either form of its issuer.
        issuers = [metadata.issuer]
        if metadata.issuer == _GOOGLE_ISSUER:
            issuers.append("accounts.google.com")
        return issuers
