"""Avatar routes: /api/v1/avatar (docs/avatar.md, docs/api.md). Every route needs ``avatar:use``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from avatarstack.adapters.http import keys
from avatarstack.adapters.http.auth import principal
from avatarstack.adapters.http.body import fields_in, model_response, path_id, read_json
from avatarstack.adapters.http.routing import Route
from avatarstack.ports.avatar import LANGUAGE_PATTERN, Quality, SessionRequest
from avatarstack.ports.storage import AvatarSession

API = "/api/v1/avatar"
TAGS = ("avatar",)
USE = "avatar:use"


class AvatarOut(BaseModel):
    id: str
    name: str
    preview_url: str | None = None
    default_voice_id: str | None = None


class AvatarsOut(BaseModel):
    provider: str
    avatars: list[AvatarOut]


class VoiceOut(BaseModel):
    id: str
    name: str
    language: str
    gender: str | None = None


class VoicesOut(BaseModel):
    provider: str
    voices: list[VoiceOut]
    #: the language codes ``POST /sessions`` and ``avatar.start`` accept (empty: no choice)
    languages: list[str]


class StartIn(BaseModel):
    avatar_id: str | None = Field(None, max_length=128)
    voice_id: str | None = Field(None, max_length=128)
    quality: Quality | None = None
    language: str | None = Field(None, max_length=35, pattern=LANGUAGE_PATTERN)


class LiveKitOut(BaseModel):
    url: str
    access_token: str


class SessionOut(BaseModel):
    session_id: str
    provider: str
    status: str
    started_at: datetime
    expires_at: datetime | None
    ended_at: datetime | None = None
    livekit: LiveKitOut | None = None

    @classmethod
    def of(cls, session: AvatarSession, livekit: LiveKitOut | None = None) -> SessionOut:
        return cls(
            session_id=session.id,
            provider=session.provider,
            status=session.status,
            started_at=session.started_at,
            expires_at=session.expires_at,
            ended_at=session.ended_at,
            livekit=livekit,
        )


class SessionsOut(BaseModel):
    sessions: list[SessionOut]


class SpeakIn(BaseModel):
    text: str = Field(min_length=1, max_length=20_000)
    mode: Literal["repeat", "talk"] = "repeat"


class SpeakOut(BaseModel):
    task_id: str
    #: one per sentence chunk when the text was split to fit the vendor's limit
    task_ids: list[str]


def _session_id(request: web.Request) -> str:
    return path_id(request, "session_id", "avatar session")


async def list_avatars(request: web.Request) -> web.Response:
    service = request.app[keys.AVATARS]
    avatars = await service.list_avatars()
    return model_response(
        AvatarsOut(
            provider=service.provider.name,
            avatars=[AvatarOut.model_validate(a.model_dump()) for a in avatars],
        )
    )


async def list_voices(request: web.Request) -> web.Response:
    service = request.app[keys.AVATARS]
    voices, languages = await service.list_voices()
    return model_response(
        VoicesOut(
            provider=service.provider.name,
            voices=[VoiceOut.model_validate(v.model_dump()) for v in voices],
            languages=list(languages),
        )
    )


async def start_session(request: web.Request) -> web.Response:
    body = await read_json(request, StartIn, max_bytes=request.app[keys.CONFIG].max_body_bytes)
    started = await request.app[keys.AVATARS].start(
        principal(request).user.id, SessionRequest(**body.model_dump())
    )
    livekit = (
        LiveKitOut(url=started.livekit.url, access_token=started.livekit.access_token)
        if started.livekit
        else None
    )
    return model_response(SessionOut.of(started.session, livekit), 201)


async def list_sessions(request: web.Request) -> web.Response:
    sessions = await request.app[keys.AVATARS].list_sessions(principal(request).user.id)
    return model_response(SessionsOut(sessions=[SessionOut.of(s) for s in sessions]))


async def speak(request: web.Request) -> web.Response:
    body = await read_json(request, SpeakIn, max_bytes=request.app[keys.CONFIG].max_body_bytes)
    session_id = _session_id(request)
    with fields_in("body"):
        tasks = await request.app[keys.AVATARS].speak(
            principal(request).user.id, session_id, body.text, body.mode
        )
    return model_response(SpeakOut(task_id=tasks[0], task_ids=tasks), 202)


async def interrupt(request: web.Request) -> web.Response:
    await request.app[keys.AVATARS].interrupt(principal(request).user.id, _session_id(request))
    return web.Response(status=204)


async def stop(request: web.Request) -> web.Response:
    await request.app[keys.AVATARS].stop(principal(request).user.id, _session_id(request))
    return web.Response(status=204)


_LIMITS = {
    429: "Too many sessions (yours or the deployment's)",
    502: "The vendor refused",
    503: "The vendor is unreachable",
}

ROUTES = [
    Route(
        "GET",
        f"{API}/avatars",
        list_avatars,
        USE,
        "avatar_list",
        "Avatars of the configured provider.",
        TAGS,
        response_model=AvatarsOut,
        responses={502: "The vendor refused", 503: "The vendor is unreachable"},
    ),
    Route(
        "GET",
        f"{API}/voices",
        list_voices,
        USE,
        "avatar_voices",
        "Voices and language codes of the configured provider (both empty when it offers no "
        "choice).",
        TAGS,
        response_model=VoicesOut,
        responses={502: "The vendor refused", 503: "The vendor is unreachable"},
    ),
    Route(
        "POST",
        f"{API}/sessions",
        start_session,
        USE,
        "avatar_session_start",
        "Start an avatar session; returns the browser's LiveKit URL and token (never the API key).",
        TAGS,
        request_model=StartIn,
        response_model=SessionOut,
        status=201,
        responses={404: "Unknown avatar", **_LIMITS},
    ),
    Route(
        "GET",
        f"{API}/sessions",
        list_sessions,
        USE,
        "avatar_sessions",
        "Your avatar sessions.",
        TAGS,
        response_model=SessionsOut,
    ),
    Route(
        "POST",
        f"{API}/sessions/{{session_id}}/speak",
        speak,
        USE,
        "avatar_session_speak",
        "Make the avatar say a text (split into sentences within the vendor's limit).",
        TAGS,
        request_model=SpeakIn,
        response_model=SpeakOut,
        status=202,
        responses={404: "No such session", 409: "The session is not active", **_LIMITS},
    ),
    Route(
        "POST",
        f"{API}/sessions/{{session_id}}/interrupt",
        interrupt,
        USE,
        "avatar_session_interrupt",
        "Stop the current utterance.",
        TAGS,
        status=204,
        responses={404: "No such session", 409: "The session is not active"},
    ),
    Route(
        "DELETE",
        f"{API}/sessions/{{session_id}}",
        stop,
        USE,
        "avatar_session_stop",
        "Stop the session (it stops costing money).",
        TAGS,
        status=204,
        responses={404: "No such session"},
    ),
]
