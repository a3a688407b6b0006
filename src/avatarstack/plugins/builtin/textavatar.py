"""Built-in plugin: the offline text avatar (provider ``text``), always on; the default provider."""

from __future__ import annotations

from collections.abc import Callable

from avatarstack.adapters.textavatar import TextAvatarProvider
from avatarstack.plugins.markers import hookimpl
from avatarstack.ports.avatar import AvatarProvider, AvatarProviderContext


@hookimpl
def register_avatar_providers(
    register: Callable[[AvatarProvider], None], context: AvatarProviderContext
) -> None:
    register(TextAvatarProvider(clock=context.clock))
