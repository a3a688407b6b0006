"""What a HeyGen 4xx means for the operation that got it: the port error, with a sentence a
person can act on.

HeyGen publishes no complete table of its body codes (https://docs.heygen.com/reference
lists the endpoints, not their errors), so the codes below are the ones seen in HeyGen's answers;
where a code is unknown, the message decides.
"""

from __future__ import annotations

import re

from avatarstack.adapters.heygen._http import API_KEY_SETTING, HeyGenRefusal, log
from avatarstack.ports.errors import (
    AvatarstackError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    UpstreamError,
)

# body codes seen in HeyGen's answers; messages matter where codes are unknown
_STATE_WRONG = 400006
_AVATAR_NOT_FOUND = 10013
_TTS_FAILED = 400009
_NO_API_ACCESS = 400599
_CONCURRENT = re.compile(r"concurrent\s+(session\s+)?limit", re.IGNORECASE)
_WRONG_STATE = re.compile(r"not in (the )?correct state|session state wrong", re.IGNORECASE)
_UNKNOWN_SESSION = re.compile(
    r"session\b[^.]*\b(not found|not exist|does not exist|unknown)", re.IGNORECASE
)
_AVATAR_MISSING = re.compile(r"avatar\b[^.]*\bnot found", re.IGNORECASE)


def refusal_error(
    refusal: HeyGenRefusal,
    action: str,
    *,
    session_id: str | None = None,
    avatar_id: str | None = None,
    starting: bool = False,
) -> AvatarstackError:
    """The port error for a 4xx answer, with a sentence a person can act on."""
    message = refusal.message or ""
    said = refusal.describe()
    if refusal.unauthorized:
        log.warning("heygen_api_key_rejected", endpoint=refusal.endpoint)
        return UpstreamError(
            f"HeyGen rejected the API key when asked to {action} ({said}); set "
            f"{API_KEY_SETTING} to an active key from HeyGen → Settings → API "
            "(a LiveAvatar key does not work with this API)"
        )
    if refusal.code == _NO_API_ACCESS or refusal.status == 403:
        return UpstreamError(
            f"HeyGen refused to {action} ({said}): the account of {API_KEY_SETTING} has "
            "no API access to streaming avatars; check its plan"
        )
    if refusal.code == _AVATAR_NOT_FOUND or _AVATAR_MISSING.search(message):
        which = f" {avatar_id!r}" if avatar_id else " (the account default)"
        return NotFoundError(
            f"HeyGen has no interactive avatar{which} for this API key; choose one from "
            "the avatar list"
        )
    if _CONCURRENT.search(message):
        return RateLimitedError(
            "HeyGen's limit of concurrent sessions for this API key is reached (trial keys "
            "allow 3); stop sessions you no longer need, or wait until HeyGen closes idle "
            "ones",
            retry_after=refusal.retry_after or 30.0,
        )
    if refusal.status == 429:
        return RateLimitedError(
            f"HeyGen is rate limiting us; try to {action} again later",
            retry_after=refusal.retry_after or 5.0,
        )
    if refusal.code == _STATE_WRONG or _WRONG_STATE.search(message):
        if starting:
            return UpstreamError(
                f"HeyGen closed the new session before it started ({said}); try again"
            )
        return ConflictError(
            f"HeyGen session {session_id} is closed or not started; start a new session"
        )
    if session_id is not None and _UNKNOWN_SESSION.search(message):
        if starting:
            return UpstreamError(f"HeyGen lost the new session before it started ({said})")
        return ConflictError(
            f"HeyGen has no session {session_id} (never started, or ended long ago); start "
            "a new session"
        )
    if refusal.code == _TTS_FAILED:
        return UpstreamError(
            f"HeyGen's text-to-speech failed when asked to {action} ({said}); check the "
            "voice and its provider settings at HeyGen"
        )
    log.warning(
        "heygen_request_refused",
        endpoint=refusal.endpoint,
        status=refusal.status,
        code=refusal.code,
    )
    return UpstreamError(f"HeyGen refused to {action} ({said})")
