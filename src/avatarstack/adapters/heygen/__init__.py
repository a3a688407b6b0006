"""HeyGen's legacy Interactive (Streaming) Avatar API (``api.heygen.com/v1/streaming.*``).

HeyGen now recommends LiveAvatar (``adapters/liveavatar``) for new integrations; this adapter
serves accounts that still use the Interactive Avatar API. One ``aiohttp`` session per provider,
created on first use and closed by ``close()``.
"""

from avatarstack.adapters.heygen._http import API_KEY_SETTING
from avatarstack.adapters.heygen.provider import (
    DEFAULT_IDLE_TIMEOUT,
    MAX_IDLE_TIMEOUT,
    MAX_TEXT_LENGTH,
    MIN_IDLE_TIMEOUT,
    STREAMING_LANGUAGES,
    HeyGenAvatarProvider,
)

__all__ = [
    "API_KEY_SETTING",
    "DEFAULT_IDLE_TIMEOUT",
    "MAX_IDLE_TIMEOUT",
    "MAX_TEXT_LENGTH",
    "MIN_IDLE_TIMEOUT",
    "STREAMING_LANGUAGES",
    "HeyGenAvatarProvider",
]
