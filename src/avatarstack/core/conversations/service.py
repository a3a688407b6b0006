"""The conversations context as one object: the parts the callers reach, grouped."""

from __future__ import annotations

from dataclasses import dataclass

from avatarstack.core.conversations.answers import ConversationAnswers
from avatarstack.core.conversations.avatar import ConversationAvatar
from avatarstack.core.conversations.log import ConversationLog


@dataclass(frozen=True, slots=True)
class ConversationService:
    """Use cases of conversations, by part; one per application (built by the container)."""

    #: conversations, their events, the user's messages
    log: ConversationLog
    #: the answer job and interruptions
    answers: ConversationAnswers
    #: the conversation's avatar
    avatar: ConversationAvatar
