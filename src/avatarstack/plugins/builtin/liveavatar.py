"""Built-in plugin: HeyGen LiveAvatar (provider ``liveavatar``), on when
`AVATARSTACK_AVATAR__LIVEAVATAR__API_KEY` is set."""

from __future__ import annotations

from collections.abc import Callable

from avatarstack.adapters.liveavatar import LiveAvatarProvider
from avatarstack.plugins.builtin.settings import LiveAvatarSettings
from avatarstack.plugins.markers import hookimpl
from avatarstack.ports.avatar import AvatarProvider, AvatarProviderContext

#: handed to the hooks below as ``settings`` (``AVATARSTACK_AVATAR__LIVEAVATAR__*``), nothing else
settings_model = LiveAvatarSettings
settings_section = "avatar.liveavatar"


@hookimpl
def register_avatar_providers(
    register: Callable[[AvatarProvider], None],
    settings: LiveAvatarSettings,
    context: AvatarProviderContext,
) -> None:
    if settings.api_key is None or not settings.api_key.get_secret_value():
        return
    register(
        LiveAvatarProvider(
            settings.api_key.get_secret_value(),
            settings.base_url,
            commands=context.commands,
            clock=context.clock,
            context_id=settings.context_id,
            sandbox=settings.sandbox,
        )
    )
