"""OAuth login providers: Google (OpenID Connect), GitHub (OAuth 2 + REST API), any OIDC issuer.

Each provider owns one ``aiohttp`` session, created on first use and closed by ``close()``.
JOSE (JWKS, ID token signatures and claims) is done by ``joserfc``.
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
