"""Built-in plugin: HeyGen's legacy Interactive Avatar, registered when
`AVATARSTACK_AVATAR__HEYGEN__API_KEY` is set (choose it with `AVATARSTACK_AVATAR__PROVIDER=heygen`).
"""

from __future__ import annotations

from collections.abc import Callable

from avatarstack.adapters.heygen import HeyGenAvatarProvider
from avatarstack.plugins.builtin.settings import HeyGenSettings
from avatarstack.plugins.markers import hookimpl
from avatarstack.ports.avatar import AvatarProvider, AvatarProviderContext

#: handed to the hooks below as ``settings`` (``AVATARSTACK_AVATAR__HEYGEN__*``), nothing else
settings_model = HeyGenSettings
settings_section = "avatar.heygen"


@hookimpl
def register_avatar_providers(
    register: Callable[[AvatarProvider], None],
    settings: HeyGenSettings,
    context: AvatarProviderContext,
) -> None:
    if settings.api_key is None or not settings.api_key.get_secret_value():
        return
    register(
        HeyGenAvatarProvider(
            settings.api_key.get_secret_value(), settings.base_url, clock=context.clock
        )
    )
