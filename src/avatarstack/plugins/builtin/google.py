"""Built-in plugin: Sign in with Google, on when `AVATARSTACK_OAUTH__GOOGLE__CLIENT_ID` is set."""

from __future__ import annotations

from collections.abc import Callable

from avatarstack.adapters.oauth.google import GoogleOAuthProvider
from avatarstack.plugins.builtin.settings import GoogleSettings
from avatarstack.plugins.markers import hookimpl
from avatarstack.ports.oauth import OAuthProvider

#: handed to the hooks below as ``settings`` (``AVATARSTACK_OAUTH__GOOGLE__*``), nothing else
settings_model = GoogleSettings
settings_section = "oauth.google"


@hookimpl
def register_oauth_providers(
    register: Callable[[OAuthProvider], None], settings: GoogleSettings
) -> None:
    if not settings.client_id:
        return
    if settings.client_secret is None or not settings.client_secret.get_secret_value():
        raise ValueError(
            "AVATARSTACK_OAUTH__GOOGLE__CLIENT_SECRET must be set when "
            "AVATARSTACK_OAUTH__GOOGLE__CLIENT_ID is set"
        )
    register(
        GoogleOAuthProvider(
            settings.client_id,
            settings.client_secret.get_secret_value(),
            settings.server_metadata_url,
        )
    )
