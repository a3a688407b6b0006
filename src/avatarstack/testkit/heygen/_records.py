"""The fake HeyGen's records, codes and error answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from aiohttp import web

from avatarstack.testkit._avatar_fakes import SessionStatus

SUCCESS_CODE = 100
UNAUTHORIZED_CODE = 400112
AVATAR_NOT_FOUND_CODE = 10013
SESSION_STATE_CODE = 400006
#: invented: HeyGen's code for an invalid body is not known
INVALID_PARAMETER_CODE = 400
#: invented: HeyGen's answer for an unknown session_id is not known
UNKNOWN_SESSION_CODE = 400404
#: invented code; the message is the one users report
CONCURRENT_LIMIT_CODE = 10007
CONCURRENT_LIMIT_MESSAGE = (
    "Concurrent limit reached, please make sure you have closed other testing sessions "
    "under the same account"
)

#: route names for :meth:`FakeHeyGen.fail`, :meth:`FakeHeyGen.rewrite` and :meth:`calls`
ROUTES: dict[str, tuple[str, str]] = {
    "create_token": ("POST", "/v1/streaming.create_token"),
    "new": ("POST", "/v1/streaming.new"),
    "start": ("POST", "/v1/streaming.start"),
    "task": ("POST", "/v1/streaming.task"),
    "interrupt": ("POST", "/v1/streaming.interrupt"),
    "keep_alive": ("POST", "/v1/streaming.keep_alive"),
    "stop": ("POST", "/v1/streaming.stop"),
    "start_listening": ("POST", "/v1/streaming.start_listening"),
    "stop_listening": ("POST", "/v1/streaming.stop_listening"),
    "list": ("GET", "/v1/streaming.list"),
    "history": ("GET", "/v2/streaming.list"),
    "avatar.list": ("GET", "/v1/streaming/avatar.list"),
    "voice.list": ("GET", "/v1/voice.list"),
}

#: routes a session token cannot call: minting one, and the account-wide ``voice.list``
CloseReason = Literal["stopped", "idle_timeout", "max_duration"]


@dataclass
class FakeAvatar:
    avatar_id: str
    avatar_name: str
    status: str = "ACTIVE"
    default_voice: str | None = None
    preview_url: str | None = None
    is_public: bool = True


@dataclass
class FakeVoice:
    """A voice of ``voice.list``; only ``support_realtime`` ones can stream."""

    voice_id: str
    name: str
    language: str = "English"
    gender: str = "female"
    support_realtime: bool = True


@dataclass
class FakeTask:
    task_id: str
    session_id: str
    text: str
    task_type: str
    task_mode: str
    duration_ms: int
    received_at: datetime
    #: when the avatar starts and stops saying it (tasks queue one after another)
    starts_at: datetime
    ends_at: datetime
    interrupted: bool = False


@dataclass
class FakeSession:
    session_id: str
    api_key: str = field(repr=False)
    avatar_id: str
    #: the ``streaming.new`` body as received
    request: dict[str, Any]
    activity_idle_timeout: int
    idle_disabled: bool
    session_duration_limit: int
    created_at: datetime
    status: SessionStatus = "created"
    close_reason: CloseReason | None = None
    started_at: datetime | None = None
    closed_at: datetime | None = None
    last_activity: datetime | None = None
    busy_until: datetime | None = None
    listening: bool = False
    token: str | None = field(default=None, repr=False)
    access_token: str = field(default="", repr=False)
    tasks: list[FakeTask] = field(default_factory=list)
    keep_alives: int = 0
    interrupts: int = 0
    stop_calls: int = 0

    @property
    def open(self) -> bool:
        return self.status != "closed"


@dataclass
class FakeRequest:
    route: str | None
    method: str
    path: str
    #: ``api_key``, ``bearer`` or ``none`` (which credential the request carried, not its value)
    credential: str
    body: Any


@dataclass
class FakeFault:
    """What :meth:`FakeHeyGen.fail` makes a route do instead of its normal answer."""

    status: int | None = None
    code: int | None = None
    message: str | None = None
    #: seconds to wait first (real time, cut short when the server stops)
    delay: float = 0.0
    malformed_json: bool = False
    null_data: bool = False
    #: how many requests it affects; None = all until :meth:`FakeHeyGen.clear_faults`
    times: int | None = 1


@dataclass
class Token:
    api_key: str = field(repr=False)
    issued_at: datetime
    session_id: str | None = None


class Refuse(Exception):  # control flow inside the fake
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def default_avatars() -> list[FakeAvatar]:
    return [
        FakeAvatar(
            "Anna_public_3_20240108",
            "Anna in Brown T-shirt",
            default_voice="1bd001e7e50f421d891986aad5158bc8",
        ),
        FakeAvatar("Wayne_20240711", "Wayne", default_voice="f38a635bee7a4d1f9b0a654a31d050d2"),
        FakeAvatar("Old_avatar_2023", "Retired avatar", status="INACTIVE"),
    ]


def default_voices() -> list[FakeVoice]:
    return [
        FakeVoice("1bd001e7e50f421d891986aad5158bc8", "Sara"),
        FakeVoice("f38a635bee7a4d1f9b0a654a31d050d2", "Paul", gender="male"),
        FakeVoice("77c3b7b1e2a64a4e8c2f1a9d0b3e5f60", "Lena", language="German"),
        FakeVoice("0f3c1a7d9e2b4c6a8d5e7f9a1b3c5d7e", "Studio only", support_realtime=False),
    ]


@dataclass(frozen=True)
class Caller:
    api_key: str = field(repr=False)
    token: Token | None = None

    @property
    def credential(self) -> str:
        return "bearer" if self.token is not None else "api_key"


Handler = Callable[[web.Request, Caller, dict[str, Any]], Awaitable[Any]]


def credential(request: web.Request) -> str:
    if "x-api-key" in request.headers:
        return "api_key"
    if request.headers.get("Authorization", "").lower().startswith("bearer "):
        return "bearer"
    return "none"


def error_response(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def unauthorized() -> Refuse:
    return Refuse(401, UNAUTHORIZED_CODE, "Unauthorized")


def wrong_state() -> Refuse:
    return Refuse(400, SESSION_STATE_CODE, "Session is not in correct state")


def invalid(message: str) -> Refuse:
    return Refuse(400, INVALID_PARAMETER_CODE, message)
