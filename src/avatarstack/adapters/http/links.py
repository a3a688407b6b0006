"""The web addresses of the identity flows (the ``Links`` port): API paths and front-end
pages under ``PUBLIC_URL``. Mails and redirects are built from these, so they must stay as the
front end and the API routes expect them."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

#: the prefix of the versioned API (see routes.identity)
API_PREFIX = "/api/v1"


class HttpLinks:
    """``Links`` for this HTTP API and its front end, rooted at ``public_url``."""

    def __init__(self, public_url: str, api_prefix: str = API_PREFIX) -> None:
        self.public_url = public_url.rstrip("/")
        self._api = f"{self.public_url}{api_prefix}"

    def verify_email(self, token: str) -> str:
        return f"{self._api}/auth/verify?token={token}"

    def reset_password(self, token: str) -> str:
        return f"{self.public_url}/reset-password#token={token}"

    def oauth_callback(self, provider: str) -> str:
        return f"{self._api}/auth/oauth/{provider}/callback"

    def oauth_complete(self, *, login_code: str, redirect_to: str) -> str:
        return self._complete({"code": login_code, "redirect_to": redirect_to})

    def oauth_failed(self, error: str) -> str:
        return self._complete({"error": error})

    def _complete(self, fragment: Mapping[str, str]) -> str:
        parts = "&".join(f"{k}={quote(v, safe='')}" for k, v in fragment.items())
        return f"{self.public_url}/oauth/complete#{parts}"
