"""Built-in plugin: Sign in with Google, on when `AVATARSTACK_OAUTH__GOOGLE__CLIENT_ID` is set."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from avatarstack.adapters.oauth.google import GoogleOAuthProvider
from avatarstack.plugins.markers import hookimpl
from avatarstack.ports.oauth import OAuthProvider

if TYPE_CHECKING:
    from avatarstack.bootstrap.settings import Settings


@hookimpl
def register_oauth_providers(register: Callable[[OAuthProvider], None], settings: Settings) -> None:
    google = settings.oauth.google
    if not google.client_id:
        return
    if google.client_secret is None or not google.client_secret.get_secret_value():
        raise ValueError(
            "AVATARSTACK_OAUTH__GOOGLE__CLIENT_SECRET must be set when "
            "AVATARSTACK_OAUTH__GOOGLE__CLIENT_ID is set"
        )
    register(
        GoogleOAuthProvider(
            google.client_id,
            google.client_secret.get_secret_value(),
            google.server_metadata_url,
        )
    )
