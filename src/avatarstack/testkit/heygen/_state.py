"""The fake HeyGen's state machine: accounts, sessions, the idle timeout and duration cap."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from avatarstack.ports.clock import Clock
from avatarstack.testkit._server import LocalServer
from avatarstack.testkit.clock import ManualClock
from avatarstack.testkit.heygen._records import (
    CONCURRENT_LIMIT_CODE,
    CloseReason,
    FakeAvatar,
    FakeFault,
    FakeRequest,
    FakeSession,
    FakeTask,
    FakeVoice,
    Token,
    default_avatars,
    default_voices,
)


class _HeyGenState(LocalServer):
    """The switches, accounts, tokens and sessions, and what the clock does to sessions."""

    def __init__(
        self,
        *,
        api_key: str = "fake-heygen-key",
        clock: Clock | None = None,
        max_concurrent: int = 3,
    ) -> None:
        super().__init__()
        self._api_key = api_key
        self._keys: set[str] = {api_key}
        self.clock: Clock = clock or ManualClock()
        self.max_concurrent = max_concurrent
        self.avatars: list[FakeAvatar] = default_avatars()
        self.voices: list[FakeVoice] = default_voices()
        #: seconds after ``start`` when a session is closed (``session_duration_limit``)
        self.session_duration_limit = 600
        #: ``activity_idle_timeout`` when ``new`` does not send one
        self.default_idle_timeout = 120
        #: seconds a session token stays valid (None: no expiry, as far as HeyGen documents)
        self.token_ttl: float | None = None
        #: ``task`` text longer than this is refused (None: no limit)
        self.max_text_length: int | None = 1000
        #: ``duration_ms`` per character of a task's text
        self.ms_per_char = 60
        #: a ``sync`` task answers after this fraction of its duration (real seconds)
        self.sync_delay_fraction = 0.0
        #: ``stop`` on a closed session answers 400006 instead of 200
        self.strict_stop = False
        #: after the duration cap: ``conflict`` (400006) or ``unauthorized`` (the session's Bearer
        #: token gets 401/400112, as users report at the one-hour mark; the API key gets 400006)
        self.duration_close_answer: Literal["conflict", "unauthorized"] = "conflict"
        self.concurrent_limit_code = CONCURRENT_LIMIT_CODE
        self.sessions: dict[str, FakeSession] = {}
        self.tasks: list[FakeTask] = []
        #: session ids of every authorised ``stop`` request, in order (repeats included)
        self.stop_calls: list[str] = []
        self.requests: list[FakeRequest] = []
        self.issued_tokens: list[str] = []
        self._tokens: dict[str, Token] = {}
        self._faults: dict[str, list[FakeFault]] = {}
        self._rewrites: dict[str, Callable[[Any], Any]] = {}

    # ================================================================ server

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def avatar_ids(self) -> list[str]:
        """The avatars a session can use (``ACTIVE``)."""
        return [a.avatar_id for a in self.avatars if a.status.upper() == "ACTIVE"]

    def add_api_key(self, key: str) -> None:
        """Another account's key (its own sessions and concurrency limit)."""
        self._keys.add(key)

    def revoke_api_key(self, key: str | None = None) -> None:
        """The key (default: :attr:`api_key`) and its session tokens now get 401."""
        self._keys.discard(key or self._api_key)

    # ================================================================ clock

    async def advance(self, seconds: float) -> list[FakeSession]:
        """Move the (manual) clock on and apply idle timeouts and duration caps; returns the
        sessions this closed."""
        if not isinstance(self.clock, ManualClock):
            raise TypeError("FakeHeyGen.advance needs a ManualClock; use tick() with other clocks")
        self.clock.advance(seconds)
        return await self.tick()

    async def tick(self) -> list[FakeSession]:
        """Apply idle timeouts and duration caps at the clock's current time (requests do this
        too before they are answered)."""
        return self._expire()

    def _expire(self) -> list[FakeSession]:
        now = self.clock.now()
        closed: list[FakeSession] = []
        for session in self.sessions.values():
            if not session.open:
                continue
            deadlines: list[tuple[datetime, CloseReason]] = []
            if session.started_at is not None:
                limit = timedelta(seconds=session.session_duration_limit)
                deadlines.append((session.started_at + limit, "max_duration"))
            if not session.idle_disabled:
                since = max(
                    moment
                    for moment in (session.created_at, session.last_activity, session.busy_until)
                    if moment is not None
                )
                idle = timedelta(seconds=session.activity_idle_timeout)
                deadlines.append((since + idle, "idle_timeout"))
            if not deadlines:
                continue
            when, reason = min(deadlines, key=lambda item: item[0])
            if when <= now:
                self._close(session, reason, when)
                closed.append(session)
        return closed

    def _close(self, session: FakeSession, reason: CloseReason, when: datetime) -> None:
        session.status = "closed"
        session.close_reason = reason
        session.closed_at = when
        for task in session.tasks:
            if task.ends_at > when:
                task.interrupted = True

    # ================================================================ introspection

    def session(self, session_id: str) -> FakeSession:
        return self.sessions[session_id]

    def open_sessions(self, api_key: str | None = None) -> list[FakeSession]:
        key = api_key or self._api_key
        return [s for s in self.sessions.values() if s.open and s.api_key == key]

    def calls(self, route: str) -> int:
        """How many requests reached ``route`` (failed and faulted ones included)."""
        return sum(1 for r in self.requests if r.route == route)
