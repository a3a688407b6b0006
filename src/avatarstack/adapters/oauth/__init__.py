"""OAuth login providers: Google (OpenID Connect), GitHub (OAuth 2 + REST API), any OIDC issuer.

Built on authlib: each provider owns one ``AsyncOAuth2Client`` (httpx2), created on first use
and closed by ``close()``; authlib's ``CodeIDToken`` checks ID token claims, and joserfc (the
JOSE library authlib uses) verifies their signatures.
"""

from avatarstack.adapters.oauth.github import GitHubOAuthProvider
from avatarstack.adapters.oauth.google import GOOGLE_METADATA_URL, GoogleOAuthProvider
from avatarstack.adapters.oauth.oidc import OpenIDConnectProvider, ProviderMetadata

__all__ = [
    "GOOGLE_METADATA_URL",
    "GitHubOAuthProvider",
    "GoogleOAuthProvider",
    "OpenIDConnectProvider",
    "ProviderMetadata",
]
