"""The offline text avatar: no video and no network, the embedded default avatar provider."""

from avatarstack.adapters.textavatar.provider import DEFAULT_AVATARS, TextAvatarProvider

__all__ = ["DEFAULT_AVATARS", "TextAvatarProvider"]
