"""Identity wiring: signing keys, the access-token issuer, the identity policy, the OAuth providers
plugins register."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from pydantic import SecretStr

from avatarstack.adapters.jwt import JwtAccessTokens
from avatarstack.bootstrap.settings import Settings
from avatarstack.core.identity import IdentityPolicy
from avatarstack.plugins.manager import PluginManager, collect
from avatarstack.ports.oauth import OAuthProvider


def reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def key_id(secret: str) -> str:
    """A public identifier of a signing secret (the JWT ``kid``): a hash prefix."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def make_access_tokens(settings: Settings) -> JwtAccessTokens:
    current = settings.resolved_secret_key().get_secret_value()
    keys = {
        key_id(old.get_secret_value()): old.get_secret_value()
        for old in settings.auth.previous_secret_keys
    }
    keys[key_id(current)] = current
    return JwtAccessTokens(
        keys,
        key_id(current),
        algorithm=settings.auth.jwt_algorithm,
        issuer=settings.auth.jwt_issuer or settings.resolved_public_url,
        audience=settings.auth.jwt_audience,
        lifetime_seconds=settings.auth.access_token_ttl,
    )


def make_server_key(settings: Settings) -> bytes:
    """The identity services' key (device cookies, refresh successors): derived from the
    secret key with HMAC and a label, so it is the same on every instance and across restarts,
    and never the token-signing key itself."""
    secret = settings.resolved_secret_key().get_secret_value().encode()
    return hmac.new(secret, b"avatarstack identity key v1", hashlib.sha256).digest()


def make_identity_policy(settings: Settings) -> IdentityPolicy:
    auth = settings.auth
    return IdentityPolicy(
        verification_ttl=timedelta(hours=auth.verification_ttl_hours),
        reset_ttl=timedelta(minutes=auth.reset_ttl_minutes),
        refresh_ttl=timedelta(days=auth.refresh_token_ttl_days),
        expose_dev_links=not settings.is_production,
        first_account_admin=auth.first_account_admin and not settings.is_production,
        principal_cache=timedelta(seconds=auth.principal_cache_seconds),
        refresh_grace=timedelta(seconds=auth.refresh_reuse_grace_seconds),
    )


def collect_oauth_providers(pm: PluginManager, settings: Settings) -> dict[str, OAuthProvider]:
    providers_: dict[str, OAuthProvider] = collect(
        pm,
        "register_oauth_providers",
        key=lambda p: p.name,
        kind="OAuth provider",
        settings=settings,
    )
    return providers_
