"""Sign in with any OpenID Connect issuer: an example avatarstack plugin.

Configuration (all under ``AVATARSTACK_PLUGINS__OIDC__``): ``CLIENT_ID``, ``CLIENT_SECRET``,
``SERVER_METADATA_URL`` (the issuer's ``.well-known/openid-configuration``), and optionally
``NAME`` (default ``oidc``) and ``DISPLAY_NAME`` (default ``Single sign-on``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from avatarstack import hookimpl
from avatarstack.adapters.oauth import OpenIDConnectProvider
from avatarstack.ports.oauth import OAuthProvider

PLUGIN = "oidc"


@hookimpl
def register_oauth_providers(register: Callable[[OAuthProvider], None], settings: Any) -> None:
    config: dict[str, Any] = settings.plugins.get(PLUGIN, {})
    if not config.get("client_id"):
        return  # installed but not configured: offer nothing
    missing = [k for k in ("client_secret", "server_metadata_url") if not config.get(k)]
    if missing:
        names = ", ".join(f"AVATARSTACK_PLUGINS__OIDC__{k.upper()}" for k in missing)
        raise ValueError(f"the oidc plugin needs {names}")
    register(
        OpenIDConnectProvider(
            str(config["client_id"]),
            str(config["client_secret"]),
            str(config["server_metadata_url"]),
            name=str(config.get("name", PLUGIN)),
            display_name=str(config.get("display_name", "Single sign-on")),
        )
    )
