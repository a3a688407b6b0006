"""Built-in plugin: Sign in with GitHub, on when `AVATARSTACK_OAUTH__GITHUB__CLIENT_ID` is set."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from avatarstack.adapters.oauth.github import GitHubOAuthProvider
from avatarstack.plugins.markers import hookimpl
from avatarstack.ports.oauth import OAuthProvider

if TYPE_CHECKING:
    from avatarstack.bootstrap.settings import Settings


@hookimpl
def register_oauth_providers(register: Callable[[OAuthProvider], None], settings: Settings) -> None:
    github = settings.oauth.github
    if not github.client_id:
        return
    if github.client_secret is None or not github.client_secret.get_secret_value():
        raise ValueError(
            "AVATARSTACK_OAUTH__GITHUB__CLIENT_SECRET must be set when "
            "AVATARSTACK_OAUTH__GITHUB__CLIENT_ID is set"
        )
    register(
        GitHubOAuthProvider(
            github.client_id,
            github.client_secret.get_secret_value(),
            github.authorize_url,
            github.token_url,
            github.api_base_url,
        )
    )
