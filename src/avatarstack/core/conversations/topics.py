"""The broadcaster topics of conversations: what each carries is a notice, never event data
(connections re-read storage), except the renewed avatar credentials, which are never stored."""

from __future__ import annotations


def conversation_topic(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


def avatar_events_topic(session_id: str) -> str:
    """Where browsers' reports of an avatar session's events go (to the instance following
    the session)."""
    return f"avatar-events:{session_id}"


def user_topic(user_id: str) -> str:
    return f"user:{user_id}"
