"""How the fake HeyGen validates ``streaming.new`` (https://docs.heygen.com/reference)."""

from __future__ import annotations

from typing import Any

from avatarstack.testkit.heygen._records import (
    invalid,
)

_QUALITIES = {"low", "medium", "high"}
_ENCODINGS = {"H264", "VP8"}
_EMOTIONS = {"excited", "serious", "friendly", "soothing", "broadcaster"}
_STT_PROVIDERS = {"deepgram", "gladia"}


def _optional_str(body: dict[str, Any], name: str) -> None:
    if name in body and body[name] is not None and not isinstance(body[name], str):
        raise invalid(f"{name} must be a string")


def validate_new(body: dict[str, Any]) -> None:
    """Strict where clients depend on the server (HeyGen's ``streaming.new`` reference,
    https://docs.heygen.com/reference)."""
    if body.get("version") != "v2":
        raise invalid('version must be "v2" (v1 raw WebRTC sessions are no longer supported)')
    for name in ("avatar_id", "avatar_name", "knowledge_base_id", "knowledge_id"):
        _optional_str(body, name)
    for name in ("knowledge_base", "language", "source"):
        _optional_str(body, name)
    quality = body.get("quality")
    if quality is not None and quality not in _QUALITIES:
        raise invalid("quality must be one of low, medium, high")
    encoding = body.get("video_encoding")
    if encoding is not None and encoding not in _ENCODINGS:
        raise invalid("video_encoding must be one of H264, VP8")
    voice = body.get("voice")
    if voice is not None:
        if not isinstance(voice, dict):
            raise invalid("voice must be an object")
        _optional_str(voice, "voice_id")
        rate = voice.get("rate")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)):
            raise invalid("voice.rate must be a number")
        emotion = voice.get("emotion")
        if emotion is not None and (
            not isinstance(emotion, str) or emotion.lower() not in _EMOTIONS
        ):
            raise invalid(
                "voice.emotion must be one of excited, serious, friendly, soothing, broadcaster"
            )
    idle = body.get("activity_idle_timeout")
    if idle is not None and (
        isinstance(idle, bool) or not isinstance(idle, int) or not 30 <= idle <= 3600
    ):
        raise invalid("activity_idle_timeout must be an integer from 30 to 3600")
    disable = body.get("disable_idle_timeout")
    if disable is not None and not isinstance(disable, bool):
        raise invalid("disable_idle_timeout must be a boolean")
    stt = body.get("stt_settings")
    if stt is not None:
        if not isinstance(stt, dict):
            raise invalid("stt_settings must be an object")
        provider = stt.get("provider")
        if provider is not None and provider not in _STT_PROVIDERS:
            raise invalid("stt_settings.provider must be deepgram or gladia")
