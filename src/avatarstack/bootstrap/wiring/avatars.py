"""Avatar wiring: the providers plugins register, the one the settings choose, the limits."""

from __future__ import annotations

from datetime import timedelta

from avatarstack.bootstrap.settings import Settings
from avatarstack.bootstrap.wiring.choosing import pick
from avatarstack.core.avatars import AvatarPolicy
from avatarstack.plugins.manager import PluginManager, collect
from avatarstack.ports.avatar import AvatarProvider, AvatarProviderContext


def collect_avatar_providers(
    pm: PluginManager, settings: Settings, context: AvatarProviderContext
) -> dict[str, AvatarProvider]:
    found: dict[str, AvatarProvider] = collect(
        pm,
        "register_avatar_providers",
        key=lambda p: p.name,
        kind="avatar provider",
        settings=settings,
        context=context,
    )
    return found


def pick_avatar_provider(
    available: dict[str, AvatarProvider], settings: Settings
) -> AvatarProvider:
    return pick(
        available,
        settings.avatar.provider,
        "AVATARSTACK_AVATAR__PROVIDER",
        "; vendor providers need their API key, e.g. AVATARSTACK_AVATAR__LIVEAVATAR__API_KEY",
    )


def make_avatar_policy(settings: Settings) -> AvatarPolicy:
    avatar = settings.avatar
    return AvatarPolicy(
        per_user=avatar.sessions_per_user,
        total=avatar.sessions_total,
        keep_alive_every=timedelta(seconds=avatar.keep_alive_seconds),
        stop_idle_after=timedelta(seconds=avatar.stop_idle_after_seconds),
        renew_before=timedelta(seconds=avatar.renew_before_seconds),
    )
