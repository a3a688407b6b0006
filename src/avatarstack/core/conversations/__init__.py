"""Conversations: persisted event streams, the knowledge-grounded answer pipeline, and the
conversation's avatar.

:class:`ConversationService` groups the parts (the container builds each):

* ``log`` (:class:`ConversationLog`): conversations and their events, stored with the next
  ``seq`` before a notice goes out; the user's messages, each stored with its answer job in one
  transaction (``client_id`` makes a retry idempotent);
* ``answers`` (:class:`ConversationAnswers`): the answer job (search, ``answer.delta`` parts,
  sentences spoken by the avatar, ``answer.completed``) and interruptions;
* ``avatar`` (:class:`ConversationAvatar`): the conversation's avatar session, its
  ``avatar.*`` events, renewals, and what the browser reports from the avatar's room.

``config`` holds their settings and storage protocol, ``topics`` the broadcaster topics.
"""

from avatarstack.core.conversations.answers import UNAVAILABLE, WINDOW, ConversationAnswers
from avatarstack.core.conversations.avatar import ConversationAvatar
from avatarstack.core.conversations.config import (
    ConversationConfig,
    ConversationServiceStorage,
    ConversationServiceUnitOfWork,
)
from avatarstack.core.conversations.log import (
    ANSWER_JOB,
    MAX_CLIENT_ID,
    MAX_MESSAGE_CHARS,
    ConversationLog,
    check_after_seq,
)
from avatarstack.core.conversations.service import ConversationService
from avatarstack.core.conversations.topics import (
    avatar_events_topic,
    conversation_topic,
    user_topic,
)

__all__ = [
    "ANSWER_JOB",
    "MAX_CLIENT_ID",
    "MAX_MESSAGE_CHARS",
    "UNAVAILABLE",
    "WINDOW",
    "ConversationAnswers",
    "ConversationAvatar",
    "ConversationConfig",
    "ConversationLog",
    "ConversationService",
    "ConversationServiceStorage",
    "ConversationServiceUnitOfWork",
    "avatar_events_topic",
    "check_after_seq",
    "conversation_topic",
    "user_topic",
]
