"""Reading HeyGen's answers defensively: the docs, the SDK and third-party clients disagree on
some field names and shapes, and optional fields are often missing.

Variants accepted (HeyGen's API reference, https://docs.heygen.com/reference, its
StreamingAvatarSDK, and third-party clients):

- ``create_token``: ``data.token`` (``data.session_token`` as LiveAvatar names it);
- ``new``: ``session_id``, ``url`` (or ``livekit_url``), ``access_token`` (or
  ``livekit_client_token``); ``session_duration_limit`` (or ``max_session_duration``) may be
  missing, a number or a numeric string;
- ``task``: ``task_id``; ``duration_ms`` may be missing, ``null``, ``0`` or late (forum reports);
- ``avatar.list``: ``data`` is an array, or an object with ``avatars`` (or ``list``); a name in
  ``avatar_name``, ``pose_name`` or ``name``; entries repeat an ``avatar_id`` per revision;
- ``streaming.list``: ``data.sessions``, or ``data`` itself an array; ``session_id`` or ``id``;
- ``voice.list``: ``data.voices`` (or ``data`` itself an array); ``voice_id`` (or ``id``), a name
  in ``display_name`` or ``name``; only voices with ``support_realtime: true`` can stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from avatarstack.ports.avatar import AvatarInfo, VoiceInfo
from avatarstack.ports.errors import UpstreamError

VENDOR = "HeyGen"
#: streaming.list statuses that mean the session is no longer running
_ENDED_STATUSES = {"closed", "closing", "stopped", "ended", "expired", "failed", "error"}


def _fail(endpoint: str, what: str) -> UpstreamError:
    return UpstreamError(
        f"{VENDOR} answered {endpoint} without {what}; its API may have changed — report this "
        "with the time it happened"
    )


def data_of(envelope: dict[str, Any], endpoint: str) -> Any:
    """The envelope's ``data``; ``null`` or missing is an answer we cannot act on."""
    data = envelope.get("data")
    if data is None:
        raise _fail(endpoint, "data")
    return data


def _text(mapping: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = mapping.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def _number(mapping: dict[str, Any], *names: str) -> float | None:
    for name in names:
        value = mapping.get(name)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                continue
    return None


def _object(data: Any, endpoint: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _fail(endpoint, "a data object")
    return data


def session_token(envelope: dict[str, Any]) -> str:
    data = _object(data_of(envelope, "streaming.create_token"), "streaming.create_token")
    token = _text(data, "token", "session_token")
    if token is None:
        raise _fail("streaming.create_token", "a session token (data.token)")
    return token


@dataclass(frozen=True, slots=True)
class NewSession:
    session_id: str
    url: str | None
    access_token: str | None = field(repr=False)
    duration_limit: float | None


def new_session(envelope: dict[str, Any]) -> NewSession:
    """The created session; ``url``/``access_token`` are checked by the caller, which must stop
    the session (its id is known now) when they are missing."""
    data = _object(data_of(envelope, "streaming.new"), "streaming.new")
    session_id = _text(data, "session_id")
    if session_id is None:
        raise _fail("streaming.new", "a session_id")
    limit = _number(data, "session_duration_limit", "max_session_duration")
    return NewSession(
        session_id=session_id,
        url=_text(data, "url", "livekit_url"),
        access_token=_text(data, "access_token", "livekit_client_token"),
        duration_limit=limit if limit and limit > 0 else None,
    )


def task(envelope: dict[str, Any]) -> tuple[str | None, float | None]:
    """``(task_id, seconds)``; either may be unknown (the caller fills them in)."""
    data = _object(data_of(envelope, "streaming.task"), "streaming.task")
    milliseconds = _number(data, "duration_ms")
    seconds = milliseconds / 1000.0 if milliseconds and milliseconds > 0 else None
    return _text(data, "task_id"), seconds


def _entries(data: Any, endpoint: str, *keys: str) -> Sequence[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in keys:
            value = data.get(key)
            if isinstance(value, list):
                return value
        if not any(key in data for key in keys):
            return []  # an object without a list: nothing listed
    raise _fail(endpoint, "a list")


def _voice_id(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, dict):
        return _text(value, "voice_id", "id")
    return None


def avatars(envelope: dict[str, Any]) -> list[AvatarInfo]:
    """The usable (``ACTIVE`` or status-less) avatars, each id once, in the vendor's order."""
    endpoint = "streaming/avatar.list"
    found: dict[str, AvatarInfo] = {}
    for entry in _entries(data_of(envelope, endpoint), endpoint, "avatars", "list"):
        if not isinstance(entry, dict):
            continue
        avatar_id = _text(entry, "avatar_id", "id")
        if avatar_id is None or avatar_id in found:
            continue
        status = entry.get("status")
        if isinstance(status, str) and status.strip().upper() != "ACTIVE":
            continue
        found[avatar_id] = AvatarInfo(
            id=avatar_id,
            name=_text(entry, "avatar_name", "pose_name", "name") or avatar_id,
            preview_url=_text(
                entry, "normal_preview", "preview_image_url", "preview_url", "image_url"
            ),
            default_voice_id=_voice_id(entry.get("default_voice"))
            or _text(entry, "default_voice_id"),
        )
    return list(found.values())


def voices(envelope: dict[str, Any]) -> list[VoiceInfo]:
    """The streaming-capable voices (``support_realtime: true``), each id once."""
    endpoint = "voice.list"
    found: dict[str, VoiceInfo] = {}
    for entry in _entries(data_of(envelope, endpoint), endpoint, "voices", "list"):
        if not isinstance(entry, dict) or entry.get("support_realtime") is not True:
            continue
        voice_id = _text(entry, "voice_id", "id")
        if voice_id is None or voice_id in found:
            continue
        found[voice_id] = VoiceInfo(
            id=voice_id,
            name=_text(entry, "display_name", "name") or voice_id,
            language=_text(entry, "language") or "",
            gender=_text(entry, "gender"),
        )
    return list(found.values())


def running_session_ids(envelope: dict[str, Any]) -> list[str]:
    endpoint = "streaming.list"
    ids: list[str] = []
    for entry in _entries(data_of(envelope, endpoint), endpoint, "sessions", "list"):
        if isinstance(entry, str):
            ids.append(entry)
            continue
        if not isinstance(entry, dict):
            continue
        session_id = _text(entry, "session_id", "id")
        status = entry.get("status")
        if session_id is None:
            continue
        if isinstance(status, str) and status.strip().lower() in _ENDED_STATUSES:
            continue
        ids.append(session_id)
    return _unique(ids)


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))
