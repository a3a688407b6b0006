"""Sign in with any OpenID Connect issuer: an example avatarstack plugin.

Configuration (all under ``AVATARSTACK_PLUGINS__OIDC__``): ``CLIENT_ID``, ``CLIENT_SECRET``,
``SERVER_METADATA_URL`` (the issuer's ``.well-known/openid-configuration``), and optionally
``NAME`` (default ``oidc``) and ``DISPLAY_NAME`` (default ``Single sign-on``). The hook receives
exactly these, as an :class:`OIDCSettings`.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, SecretStr

from avatarstack import hookimpl
from avatarstack.adapters.oauth import OpenIDConnectProvider
from avatarstack.ports.oauth import OAuthProvider


class OIDCSettings(BaseModel):
    """``AVATARSTACK_PLUGINS__OIDC__*``."""

    client_id: str | None = None
    client_secret: SecretStr | None = None
    server_metadata_url: str | None = None
    name: str = "oidc"
    display_name: str = "Single sign-on"


#: the model of this plugin's settings: avatarstack validates the section and hands it over
settings_model = OIDCSettings


@hookimpl
def register_oauth_providers(
    register: Callable[[OAuthProvider], None], settings: OIDCSettings
) -> None:
    if not settings.client_id:
        return  # installed but not configured: offer nothing
    secret = settings.client_secret.get_secret_value() if settings.client_secret else ""
    missing = [
        name
        for name, value in (
            ("client_secret", secret),
            ("server_metadata_url", settings.server_metadata_url),
        )
        if not value
    ]
    if missing or settings.server_metadata_url is None:
        names = ", ".join(f"AVATARSTACK_PLUGINS__OIDC__{k.upper()}" for k in missing)
        raise ValueError(f"the oidc plugin needs {names}")
    register(
        OpenIDConnectProvider(
            settings.client_id,
            secret,
            settings.server_metadata_url,
            name=settings.name,
            display_name=settings.display_name,
        )
    )
