"""The realtime protocol v1's vocabulary (docs/realtime.md): the path, the close codes, the
client frames' envelopes and how server frames are built."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from avatarstack.adapters.http.body import StrictSeq
from avatarstack.ports.avatar import LANGUAGE_PATTERN
from avatarstack.ports.storage import ConversationEvent, new_id

PATH = "/api/v1/ws"
PROTOCOL_VERSION = 1
SUBPROTOCOL = "avatarstack.v1"
PERMISSION = "conversations:use"

# close codes (4000-4999 are the application's)
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_TOO_MANY = 4429
CLOSE_SLOW = 4008
CLOSE_GOING_AWAY = 1001


class Envelope(BaseModel):
    """A client frame: ``{type, id?, conversation_id?, data}``."""

    model_config = ConfigDict(extra="ignore")

    type: str = Field(min_length=1, max_length=64)
    id: str | None = Field(None, max_length=100)
    conversation_id: str | None = Field(None, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict)


class AuthData(BaseModel):
    token: str = Field(min_length=1, max_length=8192)


class OpenData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    conversation_id: str | None = Field(None, max_length=64)
    after_seq: StrictSeq | None = None


class MessageData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    client_id: str = Field(min_length=1, max_length=100)
    text: str = Field(min_length=1, max_length=4000)


class StartData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    avatar_id: str | None = Field(None, max_length=128)
    voice_id: str | None = Field(None, max_length=128)
    language: str | None = Field(None, max_length=35, pattern=LANGUAGE_PATTERN)


class AvatarSessionData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    session_id: str = Field(min_length=1, max_length=64)


class AvatarEventData(AvatarSessionData):
    event: dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def frame(
    type_: str,
    data: dict[str, Any] | None = None,
    *,
    conversation_id: str | None = None,
    seq: int | None = None,
    reply_to: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type_, "id": new_id(), "ts": _now(), "data": data or {}}
    if conversation_id is not None:
        out["conversation_id"] = conversation_id
    if seq is not None:
        out["seq"] = seq
    if reply_to is not None:
        out["data"] = {**out["data"], "reply_to": reply_to}
    return out


def event_frame(event: ConversationEvent) -> dict[str, Any]:
    return {
        "type": event.type,
        "id": f"{event.conversation_id}:{event.seq}",
        "seq": event.seq,
        "conversation_id": event.conversation_id,
        "ts": event.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": event.data,
    }


class Closing(Exception):
    """Raised inside a connection to close it with ``code`` (after the queued frames)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
