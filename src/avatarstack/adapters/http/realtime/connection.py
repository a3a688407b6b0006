"""One WebSocket connection of the realtime protocol v1 (docs/realtime.md).

A :class:`Connection` runs three tasks:

* the **reader** validates client frames (pydantic envelopes) and dispatches each by its type
  through ``handlers.HANDLERS`` (an explicit table: type → handler) to a handler that calls the
  services;
* the **pump** sends conversation events: woken by broadcaster notices (from any instance) it
  re-reads storage after the last ``seq`` it sent, so every event goes out exactly once and in
  order, also after a reconnect (``conversation.open {after_seq}``);
* the **writer** drains a bounded outbound queue. A client that does not read fills it; it is
  then told to resume (``error {code: "slow-consumer", after_seq}``) and closed with 4008, so it
  never holds up anyone else.

Authentication is the first frame (``auth {token}``; close 4401 on failure, 4408 when it does
not come in time); the token is re-checked periodically, and at once when the identity service
announces on the user's topic that sessions ended (a logout or revocation on any instance); a
revoked session closes the socket with 4403. A fresh token can be sent at any time (``auth``
again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import structlog
from aiohttp import WSMsgType, web
from pydantic import ValidationError

from avatarstack.adapters.http.realtime.commands import AttachedSessions
from avatarstack.adapters.http.realtime.handlers import HANDLERS
from avatarstack.adapters.http.realtime.hub import RealtimeHub
from avatarstack.adapters.http.realtime.protocol import (
    CLOSE_AUTH_TIMEOUT,
    CLOSE_FORBIDDEN,
    CLOSE_GOING_AWAY,
    CLOSE_SLOW,
    CLOSE_TOO_MANY,
    CLOSE_UNAUTHENTICATED,
    PERMISSION,
    PROTOCOL_VERSION,
    AuthData,
    Closing,
    Envelope,
    event_frame,
    frame,
)
from avatarstack.core.conversations import conversation_topic as topic_of
from avatarstack.core.conversations import user_topic
from avatarstack.core.identity import SESSIONS_ENDED, Principal
from avatarstack.ports.errors import (
    AuthenticationError,
    AvatarstackError,
    InvalidInputError,
    SessionEndedError,
)

log = structlog.get_logger("avatarstack.realtime")


class _Bucket:
    """Token bucket: ``rate`` frames per second, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Connection:
    def __init__(self, hub: RealtimeHub, ws: web.WebSocketResponse) -> None:
        self.hub = hub
        self.ws = ws
        self.config = hub.config
        self.token: str | None = None
        self.principal: Principal | None = None
        self.conversation_id: str | None = None
        self.last_seq = 0
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(self.config.queue_size)
        self.wake = asyncio.Event()
        self.bucket = _Bucket(self.config.rate_per_second, self.config.rate_burst)
        self.strikes = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: Any = None
        self._user_subscription: Any = None
        self._closed = False
        self._slow = False
        #: bumped by every conversation.open: a pump pass of an older open stops sending
        self.opened = 0
        #: the avatar sessions whose commands this socket carries
        self.attached = AttachedSessions(hub, self)

    @property
    def accepting(self) -> bool:
        """False once the socket is closed or too slow: frames sent now are dropped."""
        return not (self._closed or self._slow)

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        user_id: str | None = None
        try:
            await self._authenticate_first()
            assert self.principal is not None
            user_id = self.principal.user.id
            if not self.hub.admit(self, user_id):
                user_id = None
                raise Closing(CLOSE_TOO_MANY, "too many connections for this user")
            broadcaster = self.hub.conversations.log.broadcaster
            self._user_subscription = broadcaster.subscribe(user_topic(self.principal.user.id))
            self._tasks = [
                asyncio.create_task(self._writer(), name="ws-writer"),
                asyncio.create_task(self._pump(), name="ws-pump"),
                asyncio.create_task(self._user_notices(), name="ws-user"),
                asyncio.create_task(self._recheck(), name="ws-recheck"),
            ]
            self.send(
                frame(
                    "ready",
                    {
                        "protocol": PROTOCOL_VERSION,
                        "user_id": user_id,
                        "heartbeat_seconds": self.config.heartbeat_seconds,
                        "max_message_bytes": self.config.max_message_bytes,
                    },
                )
            )
            await self._read()
        except Closing as closing:
            await self.close(closing.code, closing.reason)
        finally:
            self.hub.leave(self, user_id)
            await self._stop()

    async def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        writer = self._tasks[0] if self._tasks else None
        if writer is not None and not writer.done() and asyncio.current_task() is not writer:
            # let the frames queued so far (e.g. the error that explains the close) go out
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbox.join(), timeout=1.0)
        log.info("ws.closed", code=code, reason=reason)
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=reason.encode()[:120])

    async def _stop(self) -> None:
        self.attached.detach_all()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for subscription in (self._subscription, self._user_subscription):
            if subscription is not None:
                with contextlib.suppress(Exception):
                    await subscription.close()
        if not self.ws.closed:
            await self.close(CLOSE_GOING_AWAY, "bye")

    # ------------------------------------------------------------------ auth

    async def _authenticate_first(self) -> None:
        try:
            message = await self.ws.receive(timeout=self.config.auth_timeout_seconds)
        except TimeoutError:
            raise Closing(CLOSE_AUTH_TIMEOUT, "send auth first") from None
        if message.type != WSMsgType.TEXT:
            raise Closing(CLOSE_UNAUTHENTICATED, "the first frame must be auth")
        try:
            envelope = Envelope.model_validate(json.loads(message.data))
            if envelope.type != "auth":
                raise ValueError("not auth")
            token = AuthData.model_validate(envelope.data).token
        except (ValueError, ValidationError):
            raise Closing(CLOSE_UNAUTHENTICATED, "the first frame must be auth {token}") from None
        await self.authenticate(token)

    async def authenticate(self, token: str) -> None:
        try:
            principal = await self.hub.identity.authentication.authenticate(token)
        except SessionEndedError:
            raise Closing(CLOSE_FORBIDDEN, "the session has ended") from None
        except AuthenticationError:
            raise Closing(CLOSE_UNAUTHENTICATED, "invalid or expired token") from None
        if self.principal is not None and principal.user.id != self.principal.user.id:
            raise Closing(CLOSE_FORBIDDEN, "a token of another user")
        if not principal.can(PERMISSION):
            raise Closing(CLOSE_FORBIDDEN, f"this needs the {PERMISSION!r} permission")
        self.token = token
        self.principal = principal

    async def _recheck(self) -> None:
        """The token must stay valid and its session active; a revoked session closes 4403."""
        while True:
            await asyncio.sleep(self.config.recheck_seconds)
            assert self.token is not None
            try:
                await self.authenticate(self.token)
            except Closing as closing:
                await self.close(closing.code, closing.reason)
                return
            except AvatarstackError:  # storage hiccup: keep the connection, check again later
                continue

    # ------------------------------------------------------------------ outbound

    def send(self, payload: dict[str, Any]) -> None:
        """Queue a frame; a full queue means the client is too slow: tell it and close."""
        if self._closed or self._slow:
            return
        try:
            self.outbox.put_nowait(payload)
        except asyncio.QueueFull:
            self._closed_slow()

    def _closed_slow(self) -> None:
        notice = frame(
            "error",
            {
                "code": "slow-consumer",
                "message": "too many frames waiting; reconnect with conversation.open after_seq",
                "after_seq": self.last_seq,
            },
            conversation_id=self.conversation_id,
        )
        # make room for the notice and the close marker: the queue is being abandoned anyway
        self._slow = True
        self.hub.slow_consumers += 1
        while not self.outbox.empty():
            self.outbox.get_nowait()
            self.outbox.task_done()
        self.outbox.put_nowait(notice)
        self.outbox.put_nowait(None)

    async def _writer(self) -> None:
        while True:
            payload = await self.outbox.get()
            try:
                if payload is None:
                    await self.close(CLOSE_SLOW, "slow consumer: resume with after_seq")
                    return
                await self.ws.send_str(json.dumps(payload, separators=(",", ":")))
            except (ConnectionError, RuntimeError):
                return
            finally:
                self.outbox.task_done()

    async def _pump(self) -> None:
        """Send the open conversation's events after ``last_seq`` whenever something changed."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            conversation_id = self.conversation_id
            if conversation_id is None:
                continue
            opened = self.opened
            while True:
                events = await self.hub.conversations.log.read_after(conversation_id, self.last_seq)
                if opened != self.opened:
                    self.wake.set()  # (re)opened meanwhile: start over from its after_seq
                    break
                for event in events:
                    if self.outbox.full():
                        self._closed_slow()
                        return
                    self.send(event_frame(event))
                    self.last_seq = event.seq
                if len(events) < 200:
                    break

    async def follow(self, conversation_id: str) -> None:
        if self._subscription is not None:
            await self._subscription.close()
        subscription = self.hub.conversations.log.broadcaster.subscribe(topic_of(conversation_id))
        self._subscription = subscription

        async def notices() -> None:
            async for _notice in subscription:
                self.wake.set()

        self._tasks.append(asyncio.create_task(notices(), name="ws-notices"))

    async def _user_notices(self) -> None:
        """Job progress of this user's uploads and renewed avatar credentials (not stored, no
        seq)."""
        async for notice in self._user_subscription:
            if notice.payload.get(SESSIONS_ENDED):
                # a logout or revocation, on any instance: re-check this socket's token now
                self.hub.identity.authentication.forget_principals()
                try:
                    assert self.token is not None
                    await self.authenticate(self.token)
                except Closing as closing:
                    await self.close(closing.code, closing.reason)
                    return
                except AvatarstackError:  # storage hiccup: the periodic re-check follows
                    pass
                continue
            job = notice.payload.get("job")
            if isinstance(job, dict):
                self.send(frame("job.progress", job))
            credentials = notice.payload.get("credentials")
            if isinstance(credentials, dict):
                self.attached.follow_renewal(credentials)
            if isinstance(credentials, dict) and credentials.get("conversation_id") == (
                self.conversation_id
            ):
                self.send(
                    frame(
                        "avatar.credentials",
                        {
                            "session_id": credentials.get("session_id"),
                            "livekit": credentials.get("livekit"),
                            "renewed": True,
                        },
                        conversation_id=self.conversation_id,
                    )
                )

    # ------------------------------------------------------------------ inbound

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == WSMsgType.TEXT:
                if not self.bucket.take():
                    self.strikes += 1
                    self.send(self._error("rate-limited", "slow down", None))
                    if self.strikes > self.config.rate_burst:
                        raise Closing(CLOSE_TOO_MANY, "too many frames")
                    continue
                await self._handle(message.data)
            elif message.type == WSMsgType.BINARY:
                self.send(self._error("binary-frame", "send JSON text frames", None))
            elif message.type == WSMsgType.ERROR:
                return
            if self._closed:
                return

    def _error(self, code: str, message: str, reply_to: str | None, **extra: Any) -> dict[str, Any]:
        return frame(
            "error",
            {"code": code, "message": message, **extra},
            conversation_id=self.conversation_id,
            reply_to=reply_to,
        )

    async def _handle(self, raw: str) -> None:
        try:
            envelope = Envelope.model_validate(json.loads(raw))
        except (ValueError, ValidationError):
            self.send(self._error("bad-frame", "expected {type, id?, data}", None))
            return
        handler = HANDLERS.get(envelope.type)
        if handler is None:
            self.send(self._error("unknown-type", f"unknown type {envelope.type!r}", envelope.id))
            return
        try:
            await handler(self, envelope)
        except Closing:
            raise
        except ValidationError as exc:
            fields = [
                {"field": ".".join(["data", *(str(p) for p in e["loc"])]), "message": e["msg"]}
                for e in exc.errors(include_url=False, include_input=False)
            ]
            self.send(self._error("invalid", "the frame is invalid", envelope.id, errors=fields))
        except InvalidInputError as exc:
            errors = [{"field": e.field, "message": e.message} for e in exc.errors]
            self.send(self._error(exc.code, exc.detail, envelope.id, errors=errors))
        except AvatarstackError as exc:
            self.send(self._error(exc.code, exc.detail, envelope.id))
