"""The fake LiveAvatar's records: avatars, voices, contexts, sessions and what it saw."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from aiohttp import web

from avatarstack.testkit._avatar_fakes import SessionStatus

#: the one avatar sandbox sessions may use
WAYNE_AVATAR_ID = "dd73ea75-1218-4ef3-92ce-606d5f7fbc0a"
#: SessionEndReasonEnum
END_REASONS = frozenset(
    {
        "UNKNOWN",
        "USER_DISCONNECTED",
        "SERVER_ERROR",
        "IDLE_TIMEOUT",
        "NO_CREDITS",
        "USER_CLOSED",
        "AVATAR_DELETED",
        "MAX_DURATION_REACHED",
        "ZOMBIE_SESSION_REAP",
        "AGENT_HANG_UP",
    }
)
#: route names for :meth:`FakeLiveAvatar.inject` and :attr:`FakeLiveAvatar.calls`
ROUTES = (
    "token",
    "start",
    "keep-alive",
    "stop",
    "delete-session",
    "sessions",
    "session",
    "transcript",
    "avatars",
    "avatars-public",
    "avatar",
    "voices",
    "contexts",
    "create-context",
    "context",
    "update-context",
    "delete-context",
    "websocket",
)
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAMESPACE = uuid.UUID("5a2f0d1e-7c3b-4e8a-9f61-2b4d8c0e7a13")


def fixed_id(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, name))


def is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# =========================================================================== records


@dataclass
class FakeAvatar:
    id: str
    name: str
    #: ACTIVE | INIT | DEPLOYING | FAILED (only ACTIVE avatars can start sessions)
    status: str = "ACTIVE"
    type: str = "VIDEO"
    #: listed by /v1/avatars/public (else by /v1/avatars, for the key in ``owner``)
    public: bool = False
    #: the API key that owns a private avatar (None: the fake's main key)
    owner: str | None = None
    preview_url: str | None = None
    default_voice: dict[str, str] | None = None
    is_expired: bool = False

    def as_json(self, created_at: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "space_id": None if self.public else fixed_id(f"space:{self.owner}"),
            "type": self.type,
            "status": self.status,
            "name": self.name,
            "preview_url": self.preview_url,
            "is_expired": self.is_expired,
            "default_voice": self.default_voice,
            "is_1080p": False,
            "created_at": iso(created_at),
            "updated_at": iso(created_at),
            "error_message": "avatar training failed" if self.status == "FAILED" else None,
        }


@dataclass
class FakeVoice:
    id: str
    name: str
    language: str = "en"
    gender: str = "female"
    public: bool = True

    def as_json(self, created_at: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": None,
            "language": self.language,
            "gender": self.gender,
            "created_at": iso(created_at),
            "updated_at": iso(created_at),
            "tags": [],
        }


@dataclass
class FakeContext:
    id: str
    name: str
    prompt: str
    opening_text: str
    created_at: datetime
    updated_at: datetime
    links: list[dict[str, Any]] = field(default_factory=list)

    @property
    def required_dynamic_variables(self) -> list[str]:
        return sorted(set(_PLACEHOLDER.findall(self.prompt + "\n" + self.opening_text)))

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }

    def detail(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "prompt": self.prompt,
            "opening_text": self.opening_text,
            "links": self.links,
            "required_dynamic_variables": self.required_dynamic_variables,
        }


@dataclass(frozen=True)
class DataChannelCommand:
    """One message published on a session's ``agent-control`` topic."""

    session_id: str
    event_type: str | None
    event_id: str | None
    #: the whole message, as it arrived (after a JSON round trip)
    payload: dict[str, Any]
    at: datetime
    #: False when the session was not one that acts on it (LITE, or an unknown type)
    accepted: bool


@dataclass(frozen=True)
class WebSocketMessage:
    """One frame a client sent on a LITE session's websocket."""

    session_id: str
    type: str | None
    event_id: str | None
    at: datetime
    #: ``accepted``, ``dropped`` (before ``connected``) or ``rejected`` (ignored or fatal)
    outcome: Literal["accepted", "dropped", "rejected"]
    size: int


@dataclass(frozen=True)
class StopCall:
    """One stop request the fake accepted (``POST /stop`` or ``DELETE /v1/sessions``)."""

    session_id: str
    reason: str
    auth: Literal["bearer", "api_key"]
    route: str
    #: the session's status when the stop arrived (``closed``: a repeated stop)
    status_before: str
    at: datetime


@dataclass
class Fault:
    """What :meth:`FakeLiveAvatar.inject` makes one route do."""

    #: answer this status (with the error envelope) before doing anything
    status: int | None = None
    #: wait this many (real) seconds before answering
    delay: float = 0.0
    #: on a 2xx, send a body that is not JSON (the route did its work)
    malformed_json: bool = False
    #: on a 2xx, send ``data: null`` (the route did its work)
    data_null: bool = False
    #: Retry-After for an injected 429
    retry_after: float | None = None
    #: how many requests it affects (None: until cleared)
    times: int | None = None


@dataclass
class Utterance:
    event_id: str | None
    text: str
    starts_at: datetime
    ends_at: datetime
    started: bool = False


@dataclass
class Account:
    credits: float


@dataclass
class FakeSession:
    id: str
    api_key: str
    token: str = field(repr=False)
    mode: Literal["FULL", "LITE"]
    avatar_id: str
    is_sandbox: bool
    #: the token request's body
    config: dict[str, Any]
    created_at: datetime
    status: SessionStatus = "created"
    started_at: datetime | None = None
    last_activity_at: datetime | None = None
    max_duration: float | None = None
    end_at: datetime | None = None
    end_reason: str | None = None
    keep_alives: int = 0
    credits_consumed: float = 0.0
    livekit_url: str | None = None
    livekit_client_token: str | None = field(default=None, repr=False)
    livekit_agent_token: str | None = field(default=None, repr=False)
    ws_url: str | None = None
    #: FULL data channel: commands received and ``agent-response`` events sent, in order
    commands: list[DataChannelCommand] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    #: LITE websocket: frames received and events sent
    ws_messages: list[WebSocketMessage] = field(default_factory=list)
    ws_events: list[dict[str, Any]] = field(default_factory=list)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    _ws_secret: str | None = field(default=None, repr=False)
    _utterances: list[Utterance] = field(default_factory=list, repr=False)
    _speech_free_at: datetime | None = field(default=None, repr=False)
    _sockets: list[web.WebSocketResponse] = field(default_factory=list, repr=False)
    _lite_audio: dict[str, int] = field(default_factory=dict, repr=False)
    _lite_pending: list[tuple[str, datetime]] = field(default_factory=list, repr=False)
    _lite_free_at: datetime | None = field(default=None, repr=False)
    _billed_minutes: int = field(default=0, repr=False)

    @property
    def hybrid(self) -> bool:
        """LITE with the ElevenLabs agent: no ``ws_url``, FULL's data-channel events."""
        return self.mode == "LITE" and bool(self.config.get("elevenlabs_agent_config"))

    @property
    def context_id(self) -> str | None:
        persona = self.config.get("avatar_persona")
        value = persona.get("context_id") if isinstance(persona, dict) else None
        return value if isinstance(value, str) else None

    def spoken(self) -> list[str]:
        """What the avatar was told to say or answered, in order."""
        return [e["transcript"] for e in self.transcript if e["role"] == "avatar"]


def canned_reply(text: str, context: FakeContext | None) -> str:
    who = context.name if context is not None else "the assistant"
    return f"This is {who}. You said: {text.strip()}"


def default_avatars() -> list[FakeAvatar]:
    return [
        FakeAvatar(
            id=fixed_id("avatar:ada"),
            name="Ada",
            preview_url="https://files.fake-liveavatar.invalid/ada.webp",
            default_voice={"id": fixed_id("voice:june"), "name": "June"},
        ),
        FakeAvatar(id=fixed_id("avatar:draft"), name="Draft (still training)", status="INIT"),
        FakeAvatar(
            id=WAYNE_AVATAR_ID,
            name="Wayne",
            public=True,
            preview_url="https://files.fake-liveavatar.invalid/wayne.webp",
            default_voice={"id": fixed_id("voice:oliver"), "name": "Oliver"},
        ),
        FakeAvatar(
            id=fixed_id("avatar:grace"),
            name="Grace",
            type="IMAGE",
            public=True,
            preview_url="https://files.fake-liveavatar.invalid/grace.webp",
        ),
        FakeAvatar(id=fixed_id("avatar:broken"), name="Broken", status="FAILED", public=True),
    ]


def default_voices() -> list[FakeVoice]:
    return [
        FakeVoice(id=fixed_id("voice:june"), name="June"),
        FakeVoice(id=fixed_id("voice:oliver"), name="Oliver", gender="male"),
        FakeVoice(id=fixed_id("voice:lena"), name="Lena", language="de"),
        FakeVoice(id=fixed_id("voice:mine"), name="My cloned voice", public=False),
    ]
