"""How the fake LiveAvatar validates ``POST /v1/sessions/token`` (the FULL/LITE union)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from avatarstack.testkit.liveavatar._http import _Http
from avatarstack.testkit.liveavatar._records import (
    WAYNE_AVATAR_ID,
    is_uuid,
)

_QUALITIES = ("very_high", "high", "medium", "low")
_ENCODINGS = ("VP8", "H264")
_INTERACTIVITY = ("CONVERSATIONAL", "PUSH_TO_TALK")
_STT_PROVIDERS = ("deepgram", "assembly_ai", "gladia", "elevenlabs")
_ELEVENLABS_MODELS = ("eleven_flash_v2_5", "eleven_multilingual_v2")
_FISH_MODELS = ("s1", "s2")


class _TokenValidation(_Http):
    """The token request's schema (422) and business rules (400), as LiveAvatar checks them
    (https://docs.liveavatar.com/)."""

    def _validate_token(self, body: dict[str, Any], key: str) -> tuple[Any, str, bool]:
        mode = body.get("mode", "FULL")
        if mode not in ("FULL", "LITE"):
            raise self._invalid(
                ["body", "mode"], "Input should be 'FULL' or 'LITE'", "literal_error", mode
            )
        branch = "Full Mode" if mode == "FULL" else "Lite Mode"
        loc = ["body", branch]
        avatar_id = body.get("avatar_id")
        if not isinstance(avatar_id, str):
            raise self._invalid([*loc, "avatar_id"], "Field required", "missing")
        sandbox = body.get("is_sandbox", False)
        if not isinstance(sandbox, bool):
            raise self._invalid(
                [*loc, "is_sandbox"], "Input should be a valid boolean", "bool_parsing", sandbox
            )
        self._check_object(
            body,
            "video_settings",
            loc,
            {"quality": _QUALITIES, "encoding": _ENCODINGS},
        )
        duration = body.get("max_session_duration")
        if duration is not None and (
            isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0
        ):
            raise self._invalid(
                [*loc, "max_session_duration"],
                "Input should be a positive integer",
                "int_parsing",
                duration,
            )
        self._check_dynamic_variables(body.get("dynamic_variables"), loc)
        memory = body.get("memory")
        if memory is not None:
            if not isinstance(memory, dict):
                raise self._invalid([*loc, "memory"], "Input should be an object", "dict_type")
            for name in ("prev_session_id", "session_memory_id"):
                if memory.get(name) is not None and not is_uuid(memory[name]):
                    raise self._invalid(
                        [*loc, "memory", name], "Input should be a valid UUID", "uuid_parsing"
                    )
        if mode == "FULL":
            self._validate_full(body, loc)
        else:
            self._validate_lite(body, loc)
        # business rules (400/4000) after the schema
        avatar = self._visible_avatar(avatar_id, key) if is_uuid(avatar_id) else None
        if avatar is None:
            raise self._error(400, f"Avatar {avatar_id} not found in your space")
        if avatar.status != "ACTIVE" or avatar.is_expired:
            raise self._error(400, f"Avatar {avatar_id} is not ready (status {avatar.status})")
        if sandbox and avatar_id != WAYNE_AVATAR_ID:
            raise self._error(
                400, f"Sandbox mode only supports the Wayne avatar ({WAYNE_AVATAR_ID})"
            )
        if duration is not None and duration > self.tier_max_session_duration:
            raise self._error(
                400,
                f"max_session_duration exceeds your plan's limit of "
                f"{self.tier_max_session_duration} seconds",
            )
        if mode == "FULL":
            persona = body.get("avatar_persona") or {}
            voice_id = persona.get("voice_id")
            if voice_id and not any(v.id == voice_id for v in self.voices):
                raise self._error(400, f"Voice {voice_id} not found")
            context_id = persona.get("context_id")
            if context_id:
                context = self.contexts.get(context_id)
                if context is None:
                    raise self._error(400, f"Context {context_id} not found")
                given = body.get("dynamic_variables") or {}
                missing = [v for v in context.required_dynamic_variables if v not in given]
                if missing:
                    raise self._error(
                        400, f"Missing required dynamic variables: {', '.join(missing)}"
                    )
        return mode, avatar_id, sandbox

    def _check_object(
        self,
        body: Mapping[str, Any],
        name: str,
        loc: list[Any],
        enums: Mapping[str, tuple[str, ...]],
        required: tuple[str, ...] = (),
    ) -> dict[str, Any] | None:
        value = body.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._invalid([*loc, name], "Input should be an object", "dict_type", value)
        for key in required:
            if not isinstance(value.get(key), str) or not value.get(key):
                raise self._invalid([*loc, name, key], "Field required", "missing")
        for key, allowed in enums.items():
            if key in value and value[key] is not None and value[key] not in allowed:
                raise self._invalid(
                    [*loc, name, key],
                    "Input should be " + ", ".join(repr(a) for a in allowed),
                    "enum",
                    value[key],
                )
        return value

    def _check_dynamic_variables(self, variables: Any, loc: list[Any]) -> None:
        if variables is None:
            return
        where = [*loc, "dynamic_variables"]
        if not isinstance(variables, dict):
            raise self._invalid(where, "Input should be a valid dictionary", "dict_type")
        if len(variables) > 50:
            raise self._invalid(where, "At most 50 dynamic variables", "too_long")
        for name, value in variables.items():
            if len(name) > 64:
                raise self._invalid([*where, name], "Keys are at most 64 characters", "too_long")
            if not isinstance(value, str) or len(value) > 1000:
                raise self._invalid(
                    [*where, name], "Values are strings of at most 1000 characters", "string_type"
                )

    def _validate_full(self, body: dict[str, Any], loc: list[Any]) -> None:
        persona, agent = body.get("avatar_persona"), body.get("voice_agent")
        if persona is None and agent is None:
            raise self._invalid([*loc, "avatar_persona"], "Field required", "missing")
        if persona is not None and agent is not None:
            raise self._invalid(
                loc, "avatar_persona and voice_agent are mutually exclusive", "value_error"
            )
        kind = body.get("interactivity_type")
        if kind is not None and kind not in _INTERACTIVITY:
            raise self._invalid(
                [*loc, "interactivity_type"],
                "Input should be 'CONVERSATIONAL' or 'PUSH_TO_TALK'",
                "enum",
                kind,
            )
        if body.get("llm_configuration_id") is not None and not is_uuid(
            body["llm_configuration_id"]
        ):
            raise self._invalid(
                [*loc, "llm_configuration_id"], "Input should be a valid UUID", "uuid_parsing"
            )
        if agent is not None:
            agent_obj = self._check_object(body, "voice_agent", loc, {})
            if agent_obj is not None and not is_uuid(agent_obj.get("id")):
                raise self._invalid(
                    [*loc, "voice_agent", "id"], "Input should be a valid UUID", "uuid_parsing"
                )
            return
        persona_obj = self._check_object(body, "avatar_persona", loc, {})
        assert persona_obj is not None
        where = [*loc, "avatar_persona"]
        for name in ("voice_id", "context_id"):
            value = persona_obj.get(name)
            if value not in (None, "") and not is_uuid(value):
                raise self._invalid(
                    [*where, name], "Input should be a valid UUID", "uuid_parsing", value
                )
        language = persona_obj.get("language")
        if language is not None and not isinstance(language, str):
            raise self._invalid(
                [*where, "language"], "Input should be a valid string", "string_type"
            )
        self._check_object(persona_obj, "stt_config", where, {"provider": _STT_PROVIDERS})
        self._check_voice_settings(persona_obj.get("voice_settings"), [*where, "voice_settings"])

    def _check_voice_settings(self, settings: Any, where: list[Any]) -> None:
        if settings is None:
            return
        if not isinstance(settings, dict):
            raise self._invalid(where, "Input should be an object", "dict_type")
        provider = settings.get("provider")
        if provider == "elevenLabs":
            ranges = {
                "speed": (0.8, 1.2),
                "stability": (0.0, 1.0),
                "similarity_boost": (0.0, 1.0),
                "style": (0.0, 1.0),
            }
            models: tuple[str, ...] = _ELEVENLABS_MODELS
        elif provider == "fish":
            ranges = {"speed": (0.8, 1.2)}
            models = _FISH_MODELS
        else:
            raise self._invalid(
                [*where, "provider"], "Input should be 'elevenLabs' or 'fish'", "union_tag_invalid"
            )
        for name, (low, high) in ranges.items():
            value = settings.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self._invalid([*where, name], "Input should be a number", "float_parsing")
            if not low <= value <= high:
                raise self._invalid(
                    [*where, name], f"Input should be between {low} and {high}", "range", value
                )
        model = settings.get("model")
        if model is not None and model not in models:
            raise self._invalid([*where, "model"], "Input should be a known model", "enum", model)

    def _validate_lite(self, body: dict[str, Any], loc: list[Any]) -> None:
        self._check_object(
            body,
            "livekit_config",
            loc,
            {},
            required=("livekit_url", "livekit_room", "livekit_client_token"),
        )
        self._check_object(
            body,
            "agora_config",
            loc,
            {},
            required=("agora_app_id", "agora_token", "agora_channel"),
        )
        agora = body.get("agora_config")
        if isinstance(agora, dict) and "agora_uid" not in agora:
            raise self._invalid([*loc, "agora_config", "agora_uid"], "Field required", "missing")
        eleven = self._check_object(body, "elevenlabs_agent_config", loc, {}, ("agent_id",))
        for name, config in (
            ("elevenlabs_agent_config", eleven),
            ("openai_realtime_config", self._check_object(body, "openai_realtime_config", loc, {})),
            ("gemini_realtime_config", self._check_object(body, "gemini_realtime_config", loc, {})),
        ):
            if config is not None and not is_uuid(config.get("secret_id")):
                raise self._invalid(
                    [*loc, name, "secret_id"], "Input should be a valid UUID", "uuid_parsing"
                )
