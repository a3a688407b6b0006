"""Built-in plugin: Sign in with GitHub, on when `AVATARSTACK_OAUTH__GITHUB__CLIENT_ID` is set."""

from __future__ import annotations

from collections.abc import Callable

from avatarstack.adapters.oauth.github import GitHubOAuthProvider
from avatarstack.plugins.builtin.settings import GitHubSettings
from avatarstack.plugins.markers import hookimpl
from avatarstack.ports.oauth import OAuthProvider

#: handed to the hooks below as ``settings`` (``AVATARSTACK_OAUTH__GITHUB__*``), nothing else
settings_model = GitHubSettings
settings_section = "oauth.github"


@hookimpl
def register_oauth_providers(
    register: Callable[[OAuthProvider], None], settings: GitHubSettings
) -> None:
    if not settings.client_id:
        return
    if settings.client_secret is None or not settings.client_secret.get_secret_value():
        raise ValueError(
            "AVATARSTACK_OAUTH__GITHUB__CLIENT_SECRET must be set when "
            "AVATARSTACK_OAUTH__GITHUB__CLIENT_ID is set"
        )
    register(
        GitHubOAuthProvider(
            settings.client_id,
            settings.client_secret.get_secret_value(),
            settings.authorize_url,
            settings.token_url,
            settings.api_base_url,
        )
    )
