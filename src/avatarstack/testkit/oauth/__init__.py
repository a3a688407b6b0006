"""Fake Google (OpenID Connect) and GitHub (OAuth 2) servers: real aiohttp servers on 127.0.0.1.

They implement the parts of the real services a login uses, with the same checks and the same
error bodies: client credentials, registered redirect URIs, single-use codes that expire, PKCE
S256, signed ID tokens and a JWKS (Google), bearer-protected ``/user`` and ``/user/emails``
(GitHub). The authorize endpoints log a configurable test user in at once and redirect back.
Public switches inject faults (``fail_token_with_status``, ``malformed_token_json``, …); lists
record what clients sent (``token_requests``, …). Use them as async context managers::

    async with FakeGoogle() as google:
        provider = GoogleOAuthProvider(google.client_id, google.client_secret, google.metadata_url)

The package holds one module per provider, ``_google`` and ``_github``, over ``_common`` (PKCE,
redirects, single-use grants and the request log they share).
"""

from avatarstack.testkit.oauth._github import FakeGitHub, FakeGitHubEmail, FakeGitHubUser
from avatarstack.testkit.oauth._google import OMIT, FakeGoogle, FakeGoogleUser

__all__ = [
    "OMIT",
    "FakeGitHub",
    "FakeGitHubEmail",
    "FakeGitHubUser",
    "FakeGoogle",
    "FakeGoogleUser",
]
