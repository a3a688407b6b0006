"""The links port: the addresses a service puts in mails and redirects.

The core decides *that* a person gets a link (verify an address, choose a password, finish an
OAuth login) and with which secret; where those pages live (paths, query and fragment names) is
the web adapter's business. ``avatarstack.adapters.http.links`` implements this for the HTTP API
and its front end.
"""

from __future__ import annotations

from typing import Protocol


class Links(Protocol):
    def verify_email(self, token: str) -> str:
        """The link in the verification mail: opening it proves the address."""

    def reset_password(self, token: str) -> str:
        """The front-end page where the holder of ``token`` chooses a new password."""

    def oauth_callback(self, provider: str) -> str:
        """Where ``provider`` sends the browser back after a login (the redirect URI)."""

    def oauth_complete(self, *, login_code: str, redirect_to: str) -> str:
        """The front-end page that exchanges ``login_code`` and then opens ``redirect_to``."""

    def oauth_failed(self, error: str) -> str:
        """The front-end page that shows why an OAuth login failed (an error code)."""
