"""Built-in plugin: HeyGen LiveAvatar (provider ``liveavatar``), on when
`AVATARSTACK_AVATAR__LIVEAVATAR__API_KEY` is set."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from avatarstack.adapters.liveavatar import LiveAvatarProvider
from avatarstack.plugins.markers import hookimpl
from avatarstack.ports.avatar import AvatarProvider, AvatarProviderContext

if TYPE_CHECKING:
    from avatarstack.bootstrap.settings import Settings


@hookimpl
def register_avatar_providers(
    register: Callable[[AvatarProvider], None],
    settings: Settings,
    context: AvatarProviderContext,
) -> None:
    liveavatar = settings.avatar.liveavatar
    if liveavatar.api_key is None or not liveavatar.api_key.get_secret_value():
        return
    register(
        LiveAvatarProvider(
            liveavatar.api_key.get_secret_value(),
            liveavatar.base_url,
            commands=context.commands,
            clock=context.clock,
            context_id=liveavatar.context_id,
            sandbox=liveavatar.sandbox,
        )
    )
