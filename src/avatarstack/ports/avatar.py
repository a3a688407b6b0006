"""The avatar provider port: a streaming video avatar (HeyGen LiveAvatar, legacy HeyGen
Interactive Avatar, the offline text avatar, or a vendor plugin).

The browser renders the video: a provider's ``start_session`` returns what the browser needs
(LiveKit URL and client token) and never the API key. The server drives speech, interruption,
keep-alive and stop, and follows the session through a stream of normalised events.

Error contract for every adapter (tests in ``tests/contract/test_avatar_contract.py``):
- unknown avatar → :class:`~avatarstack.ports.errors.NotFoundError`;
- the vendor's concurrency limit → :class:`~avatarstack.ports.errors.RateLimitedError`;
- a session that is closed or not started → :class:`~avatarstack.ports.errors.ConflictError`;
- bad or missing API key, or any vendor answer we cannot act on → ``UpstreamError`` (502),
  with a message a person can act on (never the key);
- the vendor unreachable, timing out or answering 5xx after retries → ``UnavailableError``;
- text that is empty or longer than ``max_text_length`` → ``InvalidInputError``
  (callers split long text into sentences first).

Voices and languages are optional choices for a session (``SessionRequest.voice_id`` and
``language``): ``list_voices`` and ``list_languages`` say which the vendor offers, and a
provider without a choice answers empty lists (the session then uses the avatar's own voice).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from avatarstack.ports.clock import Clock

SpeakMode = Literal["repeat", "talk"]
Quality = Literal["low", "medium", "high", "very_high"]
AvatarEventType = Literal["speaking", "idle", "closed"]
#: the shape of a language code a session may ask for: a BCP 47 primary language subtag with
#: optional subtags (``en``, ``de``, ``pt-BR``, ``zh-Hant``)
LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class AvatarInfo(_Model):
    id: str
    name: str
    preview_url: str | None = None
    default_voice_id: str | None = None


class VoiceInfo(_Model):
    """A voice a session may speak with (``SessionRequest.voice_id``)."""

    id: str
    name: str
    #: the voice's language as the vendor names it (a code such as ``en``, or ``English``)
    language: str
    gender: str | None = None


class SessionRequest(_Model):
    avatar_id: str | None = None
    voice_id: str | None = None
    quality: Quality | None = None
    language: str | None = None
    #: idle seconds the vendor allows before closing (keep-alive resets it)
    idle_timeout_seconds: int | None = None
    #: a free/sandbox session where the vendor offers one (LiveAvatar ``is_sandbox``)
    sandbox: bool = False


class LiveKitCredentials(_Model):
    """What the browser joins the room with: the server URL and the *client* participant token."""

    url: str
    access_token: str = Field(repr=False)


class ProviderSession(_Model):
    provider_session_id: str
    livekit: LiveKitCredentials | None = None
    #: the vendor's hard cap on the session's length, if it has one
    max_duration_seconds: float | None = None
    #: idle seconds before the vendor closes the session without keep-alive
    idle_timeout_seconds: float | None = None


class AvatarEvent(_Model):
    """A normalised event: the avatar started speaking, went idle, or the session closed."""

    type: AvatarEventType
    provider_session_id: str
    task_id: str | None = None
    #: for ``closed``: ``stopped``, ``idle_timeout``, ``max_duration``, ``error``, … (vendor reason)
    reason: str | None = None
    #: for ``speaking``: the estimated or reported duration
    duration_seconds: float | None = None
    #: for ``speaking``: the text being said, when the provider knows it (captions)
    text: str | None = None
    at: datetime


class CommandChannel(Protocol):
    """Carries realtime commands to a session when the vendor accepts them only on the LiveKit
    data channel (LiveAvatar FULL mode): relayed through the owner's browser, or published by a
    server-side LiveKit participant."""

    async def send(self, provider_session_id: str, command: Mapping[str, Any]) -> None:
        """Deliver one command. NoAvatarViewError (a ConflictError) when no browser of the
        session's owner carries the session's commands; UnavailableError when the channel
        itself cannot carry it now."""


@dataclass(frozen=True)
class AvatarProviderContext:
    """What the host gives provider plugins besides settings."""

    clock: Clock
    #: for vendors whose speak/interrupt travel on the LiveKit data channel only
    commands: CommandChannel


class AvatarProvider(Protocol):
    name: str
    #: the longest text one ``speak`` call accepts
    max_text_length: int

    async def list_avatars(self) -> Sequence[AvatarInfo]: ...

    async def list_voices(self) -> Sequence[VoiceInfo]:
        """The voices a session may ask for; empty when the vendor offers no choice."""

    async def list_languages(self) -> Sequence[str]:
        """The language codes a session may ask for (``LANGUAGE_PATTERN``); empty when the
        vendor offers no choice."""

    async def start_session(self, request: SessionRequest) -> ProviderSession: ...

    async def speak(self, provider_session_id: str, text: str, mode: SpeakMode) -> str:
        """Queue ``text`` (≤ ``max_text_length``); returns a task id."""

    async def interrupt(self, provider_session_id: str) -> None:
        """Stop the current utterance and drop queued ones."""

    async def keep_alive(self, provider_session_id: str) -> None: ...

    async def stop(self, provider_session_id: str) -> None:
        """End the session at the vendor; stopping a session that already ended succeeds."""

    async def active_sessions(self) -> Sequence[str]:
        """Ids of the sessions the vendor considers running (for reconciliation after a crash)."""

    def events(self, provider_session_id: str) -> AsyncIterator[AvatarEvent]:
        """The session's events until it closes (the last one is ``closed``)."""

    async def close(self) -> None:
        """Release HTTP sessions and background tasks."""
