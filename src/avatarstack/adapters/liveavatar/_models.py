"""LiveAvatar's request and response shapes: the token request's body, the items of the avatar
and voice lists, and the session's end reasons, as LiveAvatar's API reference
(https://docs.liveavatar.com/) describes them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from avatarstack.adapters.liveavatar._http import SESSION, Endpoint, LiveAvatarHttp
from avatarstack.ports.avatar import AvatarInfo, SessionRequest, VoiceInfo
from avatarstack.ports.errors import FieldError, InvalidInputError, UpstreamError

#: SessionEndReasonEnum → the port's ``closed`` reasons
_END_REASONS: dict[str, str] = {
    "USER_CLOSED": "stopped",
    "IDLE_TIMEOUT": "idle_timeout",
    "MAX_DURATION_REACHED": "max_duration",
    "SERVER_ERROR": "error",
    "NO_CREDITS": "no_credits",
    "USER_DISCONNECTED": "user_disconnected",
    "AVATAR_DELETED": "avatar_deleted",
    "ZOMBIE_SESSION_REAP": "reaped",
    "AGENT_HANG_UP": "agent_hang_up",
    "UNKNOWN": "closed",
}


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def required_text(data: Any, key: str, endpoint: Endpoint) -> str:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        raise UpstreamError(
            f"LiveAvatar answered the {endpoint.label} without {key}; the API may have changed"
        )
    return value


def positive_seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)


def port_reason(end_reason: Any) -> str:
    if not isinstance(end_reason, str) or not end_reason:
        return "closed"
    return _END_REASONS.get(end_reason, end_reason.lower())


def avatar_info(item: Mapping[str, Any]) -> AvatarInfo | None:
    avatar_id = item.get("id")
    if item.get("status") != "ACTIVE" or item.get("is_expired") or not isinstance(avatar_id, str):
        return None
    name = item.get("name")
    preview = item.get("preview_url")
    voice = item.get("default_voice")
    voice_id = voice.get("id") if isinstance(voice, dict) else None
    return AvatarInfo(
        id=avatar_id,
        name=name if isinstance(name, str) and name else avatar_id,
        preview_url=preview if isinstance(preview, str) else None,
        default_voice_id=voice_id if isinstance(voice_id, str) else None,
    )


def voice_info(item: Mapping[str, Any]) -> VoiceInfo | None:
    voice_id, name = item.get("id"), item.get("name")
    language, gender = item.get("language"), item.get("gender")
    if not isinstance(voice_id, str) or not voice_id:
        return None
    return VoiceInfo(
        id=voice_id,
        name=name if isinstance(name, str) and name else voice_id,
        language=language if isinstance(language, str) else "",
        gender=gender if isinstance(gender, str) and gender else None,
    )


def token_body(
    request: SessionRequest, avatar_id: str, sandbox: bool, context_id: str | None
) -> dict[str, Any]:
    """The body of ``POST /v1/sessions/token`` for a FULL-mode session."""
    persona: dict[str, Any] = {}
    if request.voice_id is not None:
        if not is_uuid(request.voice_id):
            raise InvalidInputError(
                "LiveAvatar voice ids are UUIDs",
                [FieldError("body.voice_id", "must be a LiveAvatar voice UUID")],
            )
        persona["voice_id"] = request.voice_id
    if request.language:
        persona["language"] = request.language
    if context_id is not None:
        persona["context_id"] = context_id
    body: dict[str, Any] = {
        "mode": "FULL",
        "avatar_id": avatar_id,
        "is_sandbox": sandbox,
        "avatar_persona": persona,
    }
    if request.quality is not None:
        body["video_settings"] = {"quality": request.quality, "encoding": "H264"}
    return body


async def session_end_reason(http: LiveAvatarHttp, session_id: str) -> str | None:
    """None while LiveAvatar runs the session; the port's reason once it ended.
    ConflictError when LiveAvatar does not know it."""
    data = await http.call("GET", f"/v1/sessions/{session_id}", SESSION)
    if not isinstance(data, dict):
        raise UpstreamError("LiveAvatar answered the session lookup with something else")
    if data.get("end_reason") or data.get("end_at"):
        return port_reason(data.get("end_reason"))
    return None
