"""A fake HeyGen LiveAvatar server: a real aiohttp app on 127.0.0.1, state in memory.

It follows LiveAvatar's API reference (https://docs.liveavatar.com):

* **Routes**: ``POST /v1/sessions/token``, ``/start``, ``/keep-alive``, ``/stop``,
  ``DELETE /v1/sessions``, ``GET /v1/sessions`` (``type`` required), ``GET /v1/sessions/{id}``
  and ``/transcript``, ``GET /v1/avatars``, ``/v1/avatars/public``, ``/v1/avatars/{id}``,
  ``GET /v1/voices``, contexts CRUD, and the websocket behind each LITE session's ``ws_url``.
  Anything else is a 404.
* **Envelope**: ``{"code": 1000, "data": …, "message": "success"}`` (``success_code`` switches
  to the docs' 100); ``/start`` answers 201. Business errors: a 4xx with ``{"code": 4000,
  "data": null, "message": …}``; schema errors: 422 ``{"detail": [{loc, msg, type}]}``
  (``wrap_validation_errors`` for the re-wrapped variant).
* **Auth**: ``X-API-KEY`` for ``/token`` and the account routes; ``/start`` only with
  ``Authorization: Bearer <session_token>`` (the API key there is a 401); keep-alive and stop take
  either (the API key needs ``session_id`` in the body). Bad credentials: ``unauthorized_status``
  with ``unauthorized_code`` (the real code is unknown).
* **Token validation**: the FULL/LITE union, UUIDs of known avatars, voices and contexts, the
  enums and ranges, ``max_session_duration`` ≤ ``tier_max_session_duration``, a context's
  required ``dynamic_variables``; unknown keys are ignored. Sandbox (``is_sandbox``) allows only
  the Wayne avatar and closes after ``sandbox_duration`` (60 s) as ``MAX_DURATION_REACHED``.
* **Sessions**: ``created`` → ``active`` → ``closed`` with an ``end_reason``; one start per
  token; keep-alive on a closed session is a 400; a second stop is a 200 (``strict_stop``: 400).
  ``max_concurrent`` active sessions per key (over it: ``concurrent_limit_status`` /
  ``concurrent_limit_code``, "Concurrent limit reached…"). Credits: 2 per minute FULL, 1 LITE,
  0 sandbox; a start needs one minute's worth (``enforce_credits``); running out closes sessions
  with ``NO_CREDITS``.
* **Clock**: idle timeout (``idle_timeout``, 300 s; reset by keep-alive and by any data-channel
  or websocket command), the duration cap, sandbox, credits and speech all run on the
  injectable clock (a :class:`~avatarstack.testkit.clock.ManualClock` by default). Time moves
  only with ``await fake.advance(seconds)``; ``await fake.tick()`` applies what is due (every
  request does too, so moving the clock directly also works).
* **FULL data channel**: ``fake.commands`` (:class:`FakeDataChannel`) implements the port's
  ``CommandChannel`` in place of the LiveKit topics ``agent-control``/``agent-response``:
  ``avatar.speak_text`` → ``avatar.speak_started``, ``avatar.transcription``,
  ``avatar.speak_ended`` (after ``seconds_per_word`` per word on the clock; 0: at once);
  ``avatar.speak_response`` → the same with a canned reply built from the context;
  ``avatar.interrupt`` cuts the current utterance; stop or timeout → ``session.stopped``.
  ``listen(callback)`` forwards each event (e.g. to ``LiveAvatarProvider.feed``).
* **LITE websocket**: ``connecting``/``connected`` (``ws_connect_delay``), commands before
  ``connected`` dropped and recorded, ``agent.speak`` checked (base64, even length, ≤ 1 MB, else
  the socket closes), ``agent.speak_started``/``ended`` (bytes / 48000 s on the clock),
  ``agent.interrupt`` → ``agent.speak_interrupted``, ``avatar.*`` ignored, ``closing``/``closed``
  at the end; :meth:`FakeLiveAvatar.drop_websockets` cuts them mid-utterance.
* **Faults**: :meth:`FakeLiveAvatar.inject` per route name (``"token"``, ``"start"``,
  ``"keep-alive"``, ``"stop"``, ``"sessions"``, ``"session"``, ``"avatars"``, …; see
  ``ROUTES``): an error status (before anything happens), a delay, malformed JSON or
  ``data: null`` on a 2xx (after the route did its work). ``rate_limit_per_second``: 429 with
  ``Retry-After`` and ``X-RateLimit-Reset`` per credential and route.
* **Introspection**: ``sessions`` (status, ``end_reason``, ``keep_alives``, data-channel
  ``commands`` and ``responses``, websocket messages, credits), ``active_session_ids``,
  ``stops`` and :meth:`saw_stop`, ``calls`` (requests per route), ``token_requests``,
  ``requests``, ``commands.received``, ``credits``.

Use it as an async context manager::

    async with FakeLiveAvatar(clock=clock) as fake:
        provider = LiveAvatarProvider(
            fake.api_key, fake.base_url, commands=fake.commands, clock=clock
        )


The package is laid out in layers, each a mixin over the one before: ``_records`` (the record
types and defaults), ``_state`` (the state machine: sessions, credits, timers, speech and the
FULL data channel), ``_faults`` (fault injection and rate limits), ``_http`` (middleware,
envelopes, credentials, paging), ``_validation`` (the token request's schema and business
rules), ``_websocket`` (the LITE websocket) and ``_routes`` (the REST handlers and
:class:`FakeLiveAvatar` itself).

For tests, never for production.
"""

from avatarstack.testkit.liveavatar._records import (
    END_REASONS,
    ROUTES,
    WAYNE_AVATAR_ID,
    DataChannelCommand,
    FakeAvatar,
    FakeContext,
    FakeSession,
    FakeVoice,
    Fault,
    StopCall,
    WebSocketMessage,
)
from avatarstack.testkit.liveavatar._routes import FakeLiveAvatar
from avatarstack.testkit.liveavatar._state import FakeDataChannel
from avatarstack.testkit.liveavatar._state import (
    Listener as Listener,  # importable as before, not in __all__
)

__all__ = [
    "END_REASONS",
    "ROUTES",
    "WAYNE_AVATAR_ID",
    "DataChannelCommand",
    "FakeAvatar",
    "FakeContext",
    "FakeDataChannel",
    "FakeLiveAvatar",
    "FakeSession",
    "FakeVoice",
    "Fault",
    "StopCall",
    "WebSocketMessage",
]
