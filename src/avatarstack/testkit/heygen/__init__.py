"""A fake HeyGen Interactive (Streaming) Avatar API: a real aiohttp server on 127.0.0.1.

It follows HeyGen's Streaming API reference (https://docs.heygen.com/reference): the
``/v1/streaming.*`` routes and ``GET /v1/voice.list`` with HeyGen's envelope
(``{"code":100,"data":…,"message":"success"}``, errors ``{"code":…,"message":…}`` without
``data``), the three credentials (``x-api-key`` on every route, ``Authorization: Bearer
<session token>`` on every route but ``create_token`` and ``voice.list``; a
token creates one session and then works for that session only), strict validation of
``streaming.new`` and ``streaming.task``, the session state machine ``created`` → ``active`` →
``closed``, a per-key concurrency limit, and the idle timeout and duration cap on an injectable
clock that only moves when a test says so::

    clock = ManualClock()
    async with FakeHeyGen(clock=clock) as heygen:
        provider = HeyGenAvatarProvider(heygen.api_key, heygen.base_url, clock=clock)
        ...
        await heygen.advance(121)   # the session is now closed for idleness

Codes: ``400112`` (401, bad credential), ``10013`` (avatar not found) and ``400006`` (session
not in the right state) are HeyGen's. The real codes for these are unknown, so they are
invented here and documented once: :data:`INVALID_PARAMETER_CODE` (400, invalid body),
:data:`UNKNOWN_SESSION_CODE` (400, ``"Session not found"``) and
:data:`CONCURRENT_LIMIT_CODE` (400, HeyGen's observed message). Clients should key on the
message for the last two, as the adapter does.

Switches: :meth:`fail` (per route: status, code, message, delay, malformed JSON, ``data: null``,
for N requests), :meth:`rewrite` (change a route's ``data`` before it is sent, to serve the field
variants other clients see), ``max_concurrent``, ``session_duration_limit``,
``default_idle_timeout``, ``token_ttl``, ``max_text_length``, ``ms_per_char``,
``sync_delay_fraction``, ``strict_stop``, ``duration_close_answer``, :meth:`revoke_api_key`,
:meth:`add_api_key`. Introspection: ``sessions`` (status, close reason, tasks, keep-alive and
stop counts), ``tasks``, ``stop_calls``, ``requests`` and :meth:`calls`.

The package is laid out in layers, each a mixin over the one before: ``_records`` (records,
codes and error answers), ``_state`` (accounts, sessions, the idle timeout and the duration
cap), ``_faults`` (:meth:`FakeHeyGen.fail`, :meth:`FakeHeyGen.rewrite`), ``_validation`` (the
``streaming.new`` body) and ``_routes`` (the handlers and :class:`FakeHeyGen` itself). What it
shares with the fake LiveAvatar (the session life cycle, Bearer credentials, fault countdowns)
is in ``avatarstack.testkit._avatar_fakes``.
"""

from avatarstack.testkit._avatar_fakes import SessionStatus as SessionStatus
from avatarstack.testkit.heygen._records import (
    AVATAR_NOT_FOUND_CODE,
    CONCURRENT_LIMIT_CODE,
    CONCURRENT_LIMIT_MESSAGE,
    INVALID_PARAMETER_CODE,
    ROUTES,
    SESSION_STATE_CODE,
    SUCCESS_CODE,
    UNAUTHORIZED_CODE,
    UNKNOWN_SESSION_CODE,
    FakeAvatar,
    FakeFault,
    FakeRequest,
    FakeSession,
    FakeTask,
    FakeVoice,
)
from avatarstack.testkit.heygen._records import (
    CloseReason as CloseReason,  # importable as before, not in __all__
)
from avatarstack.testkit.heygen._routes import FakeHeyGen

__all__ = [
    "AVATAR_NOT_FOUND_CODE",
    "CONCURRENT_LIMIT_CODE",
    "CONCURRENT_LIMIT_MESSAGE",
    "INVALID_PARAMETER_CODE",
    "ROUTES",
    "SESSION_STATE_CODE",
    "SUCCESS_CODE",
    "UNAUTHORIZED_CODE",
    "UNKNOWN_SESSION_CODE",
    "FakeAvatar",
    "FakeFault",
    "FakeHeyGen",
    "FakeRequest",
    "FakeSession",
    "FakeTask",
    "FakeVoice",
]
