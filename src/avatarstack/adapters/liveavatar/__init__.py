"""HeyGen LiveAvatar (api.liveavatar.com), the successor of the Interactive Avatar API."""

from avatarstack.adapters.liveavatar.provider import (
    IDLE_TIMEOUT_SECONDS,
    MAX_TEXT_LENGTH,
    WAYNE_AVATAR_ID,
    LiveAvatarProvider,
)

__all__ = ["IDLE_TIMEOUT_SECONDS", "MAX_TEXT_LENGTH", "WAYNE_AVATAR_ID", "LiveAvatarProvider"]
