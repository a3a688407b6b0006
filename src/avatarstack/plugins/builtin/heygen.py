"""Built-in plugin: HeyGen's legacy Interactive Avatar, registered when
`AVATARSTACK_AVATAR__HEYGEN__API_KEY` is set (choose it with `AVATARSTACK_AVATAR__PROVIDER=heygen`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from avatarstack.adapters.heygen import HeyGenAvatarProvider
from avatarstack.plugins.markers import hookimpl
from avatarstack.ports.avatar import AvatarProvider, AvatarProviderContext

if TYPE_CHECKING:
    from avatarstack.bootstrap.settings import Settings


@hookimpl
def register_avatar_providers(
    register: Callable[[AvatarProvider], None], settings: Settings, context: AvatarProviderContext
) -> None:
    heygen = settings.avatar.heygen
    if heygen.api_key is None or not heygen.api_key.get_secret_value():
        return
    register(
        HeyGenAvatarProvider(
            heygen.api_key.get_secret_value(), heygen.base_url, clock=context.clock
        )
    )
