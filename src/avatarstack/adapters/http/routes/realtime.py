"""The realtime protocol v1 on ``GET /api/v1/ws`` (JSON text frames; see docs/realtime.md).

One :class:`Connection` per socket runs three tasks:

* the **reader** validates client frames (pydantic envelopes) and calls the services;
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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from avatarstack.adapters.http.body import StrictSeq
from avatarstack.adapters.http.metrics import RealtimeStats
from avatarstack.adapters.http.routing import PUBLIC, Route
from avatarstack.core.avatars import LIVE, AvatarService
from avatarstack.core.conversations import ConversationService, check_after_seq, user_topic
from avatarstack.core.conversations import conversation_topic as topic_of
from avatarstack.core.identity import SESSIONS_ENDED, IdentityService, Principal
from avatarstack.ports.avatar import LANGUAGE_PATTERN, SessionRequest
from avatarstack.ports.errors import (
    AuthenticationError,
    AvatarstackError,
    ConflictError,
    InvalidInputError,
    SessionEndedError,
    UnavailableError,
)
from avatarstack.ports.storage import ConversationEvent, new_id

log = structlog.get_logger("avatarstack.realtime")

PATH = "/api/v1/ws"
PROTOCOL_VERSION = 1
SUBPROTOCOL = "avatarstack.v1"
PERMISSION = "conversations:use"

# close codes (4000-4999 are the application's)
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_TOO_MANY = 4429
CLOSE_SLOW = 4008
CLOSE_GOING_AWAY = 1001


@dataclass(frozen=True, slots=True)
class RealtimeConfig:
    heartbeat_seconds: float = 20.0
    auth_timeout_seconds: float = 10.0
    max_message_bytes: int = 64 * 1024
    connections_per_user: int = 10
    #: outbound frames queued per connection before it counts as too slow
    queue_size: int = 512
    #: client frames per second (sustained) and burst, per connection
    rate_per_second: float = 10.0
    rate_burst: int = 30
    #: how often the token (and its session) is checked again
    recheck_seconds: float = 30.0
    #: users' transcribed speech (LiveAvatar ``user.transcription``) becomes user messages
    voice_answers: bool = True


class Envelope(BaseModel):
    """A client frame: ``{type, id?, conversation_id?, data}``."""

    model_config = ConfigDict(extra="ignore")

    type: str = Field(min_length=1, max_length=64)
    id: str | None = Field(None, max_length=100)
    conversation_id: str | None = Field(None, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict)


class AuthData(BaseModel):
    token: str = Field(min_length=1, max_length=8192)


class OpenData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    conversation_id: str | None = Field(None, max_length=64)
    after_seq: StrictSeq | None = None


class MessageData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    client_id: str = Field(min_length=1, max_length=100)
    text: str = Field(min_length=1, max_length=4000)


class StartData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    avatar_id: str | None = Field(None, max_length=128)
    voice_id: str | None = Field(None, max_length=128)
    language: str | None = Field(None, max_length=35, pattern=LANGUAGE_PATTERN)


class AvatarSessionData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    session_id: str = Field(min_length=1, max_length=64)


class AvatarEventData(AvatarSessionData):
    event: dict[str, Any]


#: a socket's delivery of one avatar command: False when the socket cannot take it
Deliver = Callable[[dict[str, Any]], bool]


class CommandRelay(Protocol):
    """The avatar command relay's side for sockets (``adapters.broadcast.commands``)."""

    def attach(self, provider_session_id: str, deliver: Deliver) -> None: ...

    def detach(self, provider_session_id: str, deliver: Deliver) -> None: ...


@dataclass
class RealtimeHub:
    """Per-application state: the services and the connections of each user (this instance).

    ``avatars`` and ``commands`` serve ``avatar.attach``: the page of a socket that joined a
    LiveAvatar room carries the session's commands (``avatar.command``)."""

    conversations: ConversationService
    identity: IdentityService
    config: RealtimeConfig = field(default_factory=RealtimeConfig)
    by_user: dict[str, set[Connection]] = field(default_factory=dict)
    avatars: AvatarService | None = None
    commands: CommandRelay | None = None
    #: connections closed as slow consumers since start
    slow_consumers: int = 0

    def admit(self, connection: Connection, user_id: str) -> bool:
        mine = self.by_user.setdefault(user_id, set())
        if connection not in mine and len(mine) >= self.config.connections_per_user:
            return False
        mine.add(connection)
        return True

    def leave(self, connection: Connection, user_id: str | None) -> None:
        if user_id is None:
            return
        mine = self.by_user.get(user_id)
        if mine is not None:
            mine.discard(connection)
            if not mine:
                del self.by_user[user_id]

    @property
    def connections(self) -> int:
        return sum(len(c) for c in self.by_user.values())

    def stats(self) -> RealtimeStats:
        """Signed-in connections, the fullest outbox, slow consumers (for /metrics)."""
        outboxes = [c.outbox.qsize() for group in self.by_user.values() for c in group]
        return RealtimeStats(
            connections=len(outboxes),
            outbox_max=max(outboxes, default=0),
            outbox_capacity=self.config.queue_size,
            slow_consumers=self.slow_consumers,
        )

    async def close_all(self) -> None:
        for connection in [c for group in self.by_user.values() for c in group]:
            await connection.close(CLOSE_GOING_AWAY, "server shutting down")


REALTIME = web.AppKey("avatarstack_realtime", RealtimeHub)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def frame(
    type_: str,
    data: dict[str, Any] | None = None,
    *,
    conversation_id: str | None = None,
    seq: int | None = None,
    reply_to: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type_, "id": new_id(), "ts": _now(), "data": data or {}}
    if conversation_id is not None:
        out["conversation_id"] = conversation_id
    if seq is not None:
        out["seq"] = seq
    if reply_to is not None:
        out["data"] = {**out["data"], "reply_to": reply_to}
    return out


def event_frame(event: ConversationEvent) -> dict[str, Any]:
    return {
        "type": event.type,
        "id": f"{event.conversation_id}:{event.seq}",
        "seq": event.seq,
        "conversation_id": event.conversation_id,
        "ts": event.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": event.data,
    }


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


class _Closing(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


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
        self._opened = 0
        #: avatar sessions whose commands this socket carries: session id → (provider
        #: session id, delivery function)
        self._attached: dict[str, tuple[str, Deliver]] = {}

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        user_id: str | None = None
        try:
            await self._authenticate_first()
            assert self.principal is not None
            user_id = self.principal.user.id
            if not self.hub.admit(self, user_id):
                user_id = None
                raise _Closing(CLOSE_TOO_MANY, "too many connections for this user")
            broadcaster = self.hub.conversations.broadcaster
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
        except _Closing as closing:
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
        for session_id in list(self._attached):
            self._detach(session_id)
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
            raise _Closing(CLOSE_AUTH_TIMEOUT, "send auth first") from None
        if message.type != WSMsgType.TEXT:
            raise _Closing(CLOSE_UNAUTHENTICATED, "the first frame must be auth")
        try:
            envelope = Envelope.model_validate(json.loads(message.data))
            if envelope.type != "auth":
                raise ValueError("not auth")
            token = AuthData.model_validate(envelope.data).token
        except (ValueError, ValidationError):
            raise _Closing(CLOSE_UNAUTHENTICATED, "the first frame must be auth {token}") from None
        await self._auth(token)

    async def _auth(self, token: str) -> None:
        try:
            principal = await self.hub.identity.authenticate(token)
        except SessionEndedError:
            raise _Closing(CLOSE_FORBIDDEN, "the session has ended") from None
        except AuthenticationError:
            raise _Closing(CLOSE_UNAUTHENTICATED, "invalid or expired token") from None
        if self.principal is not None and principal.user.id != self.principal.user.id:
            raise _Closing(CLOSE_FORBIDDEN, "a token of another user")
        if not principal.can(PERMISSION):
            raise _Closing(CLOSE_FORBIDDEN, f"this needs the {PERMISSION!r} permission")
        self.token = token
        self.principal = principal

    async def _recheck(self) -> None:
        """The token must stay valid and its session active; a revoked session closes 4403."""
        while True:
            await asyncio.sleep(self.config.recheck_seconds)
            assert self.token is not None
            try:
                await self._auth(self.token)
            except _Closing as closing:
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
            opened = self._opened
            while True:
                events = await self.hub.conversations.read_after(conversation_id, self.last_seq)
                if opened != self._opened:
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

    async def _follow(self, conversation_id: str) -> None:
        if self._subscription is not None:
            await self._subscription.close()
        subscription = self.hub.conversations.broadcaster.subscribe(topic_of(conversation_id))
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
                self.hub.identity.forget_principals()
                try:
                    assert self.token is not None
                    await self._auth(self.token)
                except _Closing as closing:
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
                self._follow_renewal(credentials)
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
                        raise _Closing(CLOSE_TOO_MANY, "too many frames")
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
        handler = getattr(self, "_on_" + envelope.type.replace(".", "_"), None)
        if handler is None:
            self.send(self._error("unknown-type", f"unknown type {envelope.type!r}", envelope.id))
            return
        try:
            await handler(envelope)
        except _Closing:
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

    def _user(self) -> str:
        assert self.principal is not None
        return self.principal.user.id

    def _need_conversation(self) -> str:
        if self.conversation_id is None:
            raise InvalidInputError("open a conversation first (conversation.open)")
        return self.conversation_id

    async def _on_auth(self, envelope: Envelope) -> None:
        await self._auth(AuthData.model_validate(envelope.data).token)
        self.send(
            frame(
                "ready",
                {"protocol": PROTOCOL_VERSION, "user_id": self._user()},
                reply_to=envelope.id,
            )
        )

    async def _on_ping(self, envelope: Envelope) -> None:
        self.send(frame("pong", reply_to=envelope.id))

    async def _on_conversation_open(self, envelope: Envelope) -> None:
        data = OpenData.model_validate(envelope.data)
        service = self.hub.conversations
        conversation = await service.open(self._user(), data.conversation_id)
        after = data.after_seq or 0
        check_after_seq(after, conversation.last_seq)
        self.conversation_id = conversation.id
        self.last_seq = after
        self._opened += 1
        await self._follow(conversation.id)  # subscribe first, then catch up: no gap
        self.send(
            frame(
                "conversation.opened",
                {"last_seq": conversation.last_seq, "after_seq": after},
                conversation_id=conversation.id,
                reply_to=envelope.id,
            )
        )
        self.wake.set()

    async def _on_user_message(self, envelope: Envelope) -> None:
        data = MessageData.model_validate(envelope.data)
        conversation_id = self._need_conversation()
        await self.hub.conversations.post_message(
            self._user(), conversation_id, data.client_id, data.text
        )
        self.wake.set()

    async def _on_avatar_start(self, envelope: Envelope) -> None:
        data = StartData.model_validate(envelope.data)
        conversation_id = self._need_conversation()
        event, livekit = await self.hub.conversations.start_avatar(
            self._user(), conversation_id, SessionRequest(**data.model_dump())
        )
        if livekit is not None:
            # the browser's credentials go to this socket only; they are never stored
            self.send(
                frame(
                    "avatar.credentials",
                    {"session_id": event.data.get("session_id"), "livekit": livekit},
                    conversation_id=conversation_id,
                    reply_to=envelope.id,
                )
            )
        self.wake.set()

    async def _on_avatar_interrupt(self, envelope: Envelope) -> None:
        await self.hub.conversations.interrupt(self._user(), self._need_conversation())
        self.wake.set()

    async def _on_avatar_stop(self, envelope: Envelope) -> None:
        await self.hub.conversations.stop_avatar(self._user(), self._need_conversation())
        self.wake.set()

    # ------------------------------------------------------------------ the avatar's commands

    def _avatars(self) -> tuple[AvatarService, CommandRelay]:
        if self.hub.avatars is None or self.hub.commands is None:
            raise UnavailableError("this server relays no avatar commands")
        return self.hub.avatars, self.hub.commands

    async def _on_avatar_attach(self, envelope: Envelope) -> None:
        """This socket's page joined the session's LiveKit room and will publish the
        session's commands (``avatar.command``) on its data channel."""
        data = AvatarSessionData.model_validate(envelope.data)
        avatars, commands = self._avatars()
        session = await avatars.get(self._user(), data.session_id)
        if session.status not in LIVE or session.provider_session_id is None:
            raise ConflictError("the avatar session has ended")
        self._detach(data.session_id)
        deliver = self._deliverer(data.session_id, session.data.get("conversation_id"))
        commands.attach(session.provider_session_id, deliver)
        self._attached[data.session_id] = (session.provider_session_id, deliver)
        self.send(
            frame(
                "avatar.attached",
                {"session_id": data.session_id},
                conversation_id=self.conversation_id,
                reply_to=envelope.id,
            )
        )

    async def _on_avatar_detach(self, envelope: Envelope) -> None:
        data = AvatarSessionData.model_validate(envelope.data)
        self._detach(data.session_id)
        self.send(
            frame(
                "avatar.detached",
                {"session_id": data.session_id},
                conversation_id=self.conversation_id,
                reply_to=envelope.id,
            )
        )

    async def _on_avatar_event(self, envelope: Envelope) -> None:
        """One ``agent-response`` event the page received in the avatar's room."""
        data = AvatarEventData.model_validate(envelope.data)
        message = await self.hub.conversations.avatar_event(
            self._user(),
            data.session_id,
            data.event,
            voice_answers=self.config.voice_answers,
        )
        if message is not None:
            self.wake.set()

    def _deliverer(self, session_id: str, conversation_id: object) -> Deliver:
        def deliver(command: dict[str, Any]) -> bool:
            if self._closed or self._slow:
                return False
            self.send(
                frame(
                    "avatar.command",
                    {"session_id": session_id, "topic": "agent-control", "command": command},
                    conversation_id=conversation_id if isinstance(conversation_id, str) else None,
                )
            )
            return not self._slow

        return deliver

    def _detach(self, session_id: str) -> None:
        attached = self._attached.pop(session_id, None)
        if attached is not None and self.hub.commands is not None:
            self.hub.commands.detach(*attached)

    def _follow_renewal(self, credentials: dict[str, Any]) -> None:
        """A renewal replaced an attached session's room: carry the new one's commands (the
        page switches rooms between utterances)."""
        session_id = str(credentials.get("session_id"))
        new_provider_id = credentials.get("provider_session_id")
        attached = self._attached.get(session_id)
        if attached is None or not isinstance(new_provider_id, str) or self.hub.commands is None:
            return
        old_provider_id, deliver = attached
        if old_provider_id != new_provider_id:
            self.hub.commands.attach(new_provider_id, deliver)
            self.hub.commands.detach(old_provider_id, deliver)
            self._attached[session_id] = (new_provider_id, deliver)


async def websocket(request: web.Request) -> web.StreamResponse:
    hub = request.app[REALTIME]
    ws = web.WebSocketResponse(
        heartbeat=hub.config.heartbeat_seconds,
        max_msg_size=hub.config.max_message_bytes,
        protocols=(SUBPROTOCOL,),
    )
    await ws.prepare(request)
    await Connection(hub, ws).run()
    return ws


ROUTES = [
    Route(
        "GET",
        PATH,
        websocket,
        PUBLIC,
        "realtime",
        "WebSocket, protocol v1: authenticate with the first frame (see docs/realtime.md).",
        ("realtime",),
        status=101,
        responses={400: "Not a WebSocket upgrade"},
        log_requests=True,
    ),
]
