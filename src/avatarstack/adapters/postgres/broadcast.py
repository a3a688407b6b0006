"""Cross-instance notices over PostgreSQL ``LISTEN``/``NOTIFY``.

Every ``avatarstack serve`` process that shares a database runs one :class:`PostgresBroadcaster`.
All topics travel on one channel (``avatarstack_events``); each instance keeps one dedicated
connection that ``LISTEN``\\s on it and filters notices by its own subscriptions, so
``subscribe()`` is synchronous and costs no round-trip. A notice is published with
``SELECT pg_notify(channel, body)`` where ``body`` is ``{"t": topic, "p": payload, "o": origin}``
and ``origin`` identifies the publishing instance.

Delivery: a publish reaches this instance's subscriptions directly (at once, even while the
LISTEN connection is down) and the other instances through NOTIFY; the listener skips notices
whose origin is itself, so nobody receives one twice. NOTIFY delivers in commit order, so the
notices of one publisher arrive everywhere in the order they were published.

Reconnection: the listener connection's termination callback (and a periodic health query, for
connections that die silently) starts a reconnect loop with exponential backoff and jitter.
Notices published while it was down are lost, so once ``LISTEN`` is active again every current
subscription receives ``Notice(topic, {"reconnected": True})`` for each of its topics and
re-reads storage. Publishing does not use the listener connection and keeps working meanwhile.

Poolers: ``LISTEN`` needs a session of its own, which a transaction-mode pooler (PgBouncer,
Neon's ``-pooler`` endpoint, which is PgBouncer) does not give: the session is handed to other
clients between transactions and notifications never arrive. The listener therefore always uses a
direct URL: ``listen_url`` if given, else the URL itself, with Neon's pooled host name turned into
the direct one. Publishing is a single autocommit statement, which works through a pooler, so it
uses the URL as given (and saves direct connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog

from avatarstack.adapters.fanout import HubSubscription, SubscriptionHub
from avatarstack.adapters.postgres import (
    _UNAVAILABLE,
    _translate,
    connect_with_backoff,
    normalise_dsn,
    pooled_connection,
)
from avatarstack.ports.broadcast import (
    DEFAULT_MAX_QUEUE,
    RECONNECTED,
    Notice,
    check_topic,
    encode_payload,
)
from avatarstack.ports.errors import (
    InvalidInputError,
    StorageError,
    StorageUnavailableError,
    UnavailableError,
)

__all__ = ["PostgresBroadcastOptions", "PostgresBroadcaster", "direct_url"]

log = structlog.get_logger("avatarstack.broadcast")

#: PostgreSQL rejects NOTIFY payloads of 8000 bytes or more
_NOTIFY_LIMIT = 8000
_CHANNEL = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def direct_url(url: str) -> str:
    """``url`` with a Neon pooled host name replaced by the direct (non-pooler) one.

    Neon names the PgBouncer endpoint of a compute ``<endpoint>-pooler.<region>.neon.tech`` and
    the compute itself ``<endpoint>.<region>.neon.tech``: same credentials, same database. LISTEN
    only works on the direct one (see the module docstring), so the ``-pooler`` suffix of the
    first DNS label is dropped. Any other URL is returned unchanged.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    label, dot, domain = host.partition(".")
    if not label.endswith("-pooler"):
        return url
    userinfo, at, _ = parts.netloc.rpartition("@")
    port = f":{parts.port}" if parts.port is not None else ""
    netloc = f"{userinfo}{at}{label.removesuffix('-pooler')}{dot}{domain}{port}"
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True, slots=True)
class PostgresBroadcastOptions:
    #: the NOTIFY channel; instances only hear each other on the same channel and database
    channel: str = "avatarstack_events"
    #: notices a subscription buffers before it drops the oldest
    max_queue: int = DEFAULT_MAX_QUEUE
    #: connections of the publishing pool
    publish_pool_size: int = 2
    connect_timeout: float = 10.0
    command_timeout: float = 10.0
    #: how long ``start`` keeps retrying while the server is starting
    startup_timeout: float = 30.0
    #: seconds between health queries on the LISTEN connection (catches silently dead sockets)
    health_interval: float = 30.0
    reconnect_initial_delay: float = 0.5
    reconnect_max_delay: float = 10.0
    #: shown in ``pg_stat_activity`` for the LISTEN connection
    application_name: str = "avatarstack-broadcast"


class PostgresBroadcaster:
    """Notices shared by every instance on one PostgreSQL database (module docstring)."""

    name = "postgresql"

    def __init__(
        self,
        url: str,
        options: PostgresBroadcastOptions | None = None,
        *,
        listen_url: str | None = None,
    ) -> None:
        self.options = options or PostgresBroadcastOptions()
        if not _CHANNEL.fullmatch(self.options.channel):
            raise StorageError("the broadcast channel must be a lower-case SQL identifier")
        self._publish_dsn, self.pooled = normalise_dsn(url)
        self._listen_dsn, listen_pooled = normalise_dsn(listen_url or direct_url(url))
        if listen_pooled:
            raise StorageError(
                "the broadcaster LISTENs, which a transaction pooler does not support: "
                "give it a direct (non-pooler) listen URL"
            )
        #: tells this instance's own notices apart when NOTIFY brings them back
        self.instance_id = uuid.uuid4().hex
        self._hub = SubscriptionHub(max_queue=self.options.max_queue)
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._start_lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"<PostgresBroadcaster channel={self.options.channel!r} id={self.instance_id}>"

    @property
    def listener_pid(self) -> int | None:
        """The server process id of the LISTEN connection (None while it is down)."""
        listener = self._listener
        if listener is None or listener.is_closed():
            return None
        return int(listener.get_server_pid())

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        async with self._start_lock:
            if self._closed:
                raise UnavailableError("the broadcaster is closed")
            if self._supervisor is not None:
                return
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.options.startup_timeout
            opts = self.options
            if self._pool is None:
                self._pool = await connect_with_backoff(
                    deadline,
                    lambda: asyncpg.create_pool(
                        self._publish_dsn,
                        min_size=1,
                        max_size=opts.publish_pool_size,
                        command_timeout=opts.command_timeout,
                        timeout=opts.connect_timeout,
                        statement_cache_size=0 if self.pooled else 100,
                    ),
                    not_ready=_not_ready,
                )
            try:
                listener = await connect_with_backoff(
                    deadline, self._connect_listener, not_ready=_not_ready
                )
            except BaseException:
                await self._close_pool()
                raise
            if self._closed:  # close() ran while we were connecting
                await self._close_listener(listener)
                await self._close_pool()
                raise UnavailableError("the broadcaster is closed")
            self._listener = listener
            self._supervisor = asyncio.create_task(
                self._supervise(), name="avatarstack-broadcast-listener"
            )
            log.info("broadcast_listening", channel=opts.channel, instance=self.instance_id)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._hub.close()
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        listener, self._listener = self._listener, None
        if listener is not None:
            await self._close_listener(listener)
        await self._close_pool()
        log.info("broadcast_closed", channel=self.options.channel, instance=self.instance_id)

    # ------------------------------------------------------------------ the port

    async def publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        check_topic(topic)
        body = encode_payload(payload)
        pool = self._running_pool()
        envelope = (
            f'{{"t":{json.dumps(topic, ensure_ascii=False)},"p":{body},"o":"{self.instance_id}"}}'
        )
        if len(envelope.encode("utf-8")) >= _NOTIFY_LIMIT:  # unreachable with checked inputs
            raise InvalidInputError("the notice does not fit in a PostgreSQL NOTIFY")
        # this instance first: it needs no round-trip and works while the listener reconnects
        self._hub.deliver(Notice(topic=topic, payload=json.loads(body)))
        async with pooled_connection(pool, self.options.command_timeout) as conn:
            try:
                await conn.execute("SELECT pg_notify($1, $2)", self.options.channel, envelope)
            except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
                raise _translate(exc) from exc

    def subscribe(self, *topics: str) -> HubSubscription:
        if self._closed:
            raise UnavailableError("the broadcaster is closed")
        return self._hub.subscribe(topics)

    async def ping(self) -> None:
        pool = self._running_pool()
        if self.listener_pid is None:
            raise StorageUnavailableError("the LISTEN connection is down; reconnecting")
        async with pooled_connection(pool, self.options.command_timeout) as conn:
            try:
                await conn.fetchval("SELECT 1")
            except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
                raise _translate(exc) from exc

    # ------------------------------------------------------------------ internals

    def _running_pool(self) -> asyncpg.Pool:
        if self._closed:
            raise UnavailableError("the broadcaster is closed")
        if self._pool is None or self._supervisor is None:
            raise UnavailableError("the broadcaster is not started")
        return self._pool

    async def _connect_listener(self) -> asyncpg.Connection:
        opts = self.options
        conn = await asyncpg.connect(
            self._listen_dsn,
            timeout=opts.connect_timeout,
            command_timeout=opts.command_timeout,
            statement_cache_size=0,
            server_settings={"application_name": opts.application_name},
        )
        # before LISTEN: a connection that dies from here on is noticed (or, until it is ours,
        # ignored by ``_on_termination``)
        conn.add_termination_listener(self._on_termination)
        try:
            await conn.add_listener(opts.channel, self._on_notification)
        except BaseException:
            conn.terminate()
            raise
        return conn

    def _on_notification(
        self, conn: asyncpg.Connection, pid: int, channel: str, payload: str
    ) -> None:
        # no check that ``conn`` is the current listener: a notice can arrive before the LISTEN
        # command returns, and one from a connection given up on was still really published
        try:
            body = json.loads(payload)
            topic, data, origin = body["t"], body["p"], body["o"]
        except (ValueError, KeyError, TypeError):
            topic = data = origin = None
        if not (isinstance(topic, str) and isinstance(data, dict) and isinstance(origin, str)):
            log.warning("broadcast_malformed_notice", channel=channel, sender_pid=pid)
            return
        if origin == self.instance_id:
            return  # delivered directly when it was published
        self._hub.deliver(Notice(topic=topic, payload=data))

    def _on_termination(self, conn: asyncpg.Connection) -> None:
        if conn is self._listener and not self._closed:
            log.warning("broadcast_listen_connection_lost", channel=self.options.channel)
            self._lost.set()

    async def _supervise(self) -> None:
        """Wait for the LISTEN connection to die (or fail a health query), then replace it."""
        opts = self.options
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), timeout=opts.health_interval)
            except TimeoutError:
                if await self._listener_healthy():
                    continue
                log.warning("broadcast_listen_connection_unhealthy", channel=opts.channel)
            self._lost.clear()
            await self._reconnect()

    async def _listener_healthy(self) -> bool:
        listener = self._listener
        if listener is None or listener.is_closed():
            return False
        try:
            await listener.fetchval("SELECT 1", timeout=self.options.command_timeout)
        except (asyncpg.PostgresError, *_UNAVAILABLE):
            return False
        return True

    async def _reconnect(self) -> None:
        opts = self.options
        old, self._listener = self._listener, None
        if old is not None:
            old.remove_termination_listener(self._on_termination)
            old.terminate()
        delay = opts.reconnect_initial_delay
        attempt = 0
        while True:
            attempt += 1
            # jitter spreads the instances out when a restarted server comes back
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311
            try:
                conn = await self._connect_listener()
            except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
                delay = min(delay * 2, opts.reconnect_max_delay)
                log.warning(
                    "broadcast_reconnect_failed",
                    attempt=attempt,
                    retry_in=round(delay, 2),
                    error=str(_translate(exc)),
                )
                continue
            break
        self._listener = conn
        # LISTEN is active again: whatever was published while it was down is in storage
        notices = self._hub.deliver_to_every_topic({RECONNECTED: True})
        log.info("broadcast_reconnected", channel=opts.channel, attempts=attempt, notices=notices)

    async def _close_listener(self, listener: asyncpg.Connection) -> None:
        listener.remove_termination_listener(self._on_termination)
        try:
            await asyncio.wait_for(listener.close(), timeout=self.options.command_timeout)
        except (TimeoutError, asyncpg.PostgresError, *_UNAVAILABLE):
            listener.terminate()

    async def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout=self.options.command_timeout)
        except (TimeoutError, asyncpg.PostgresError, *_UNAVAILABLE):
            pool.terminate()


def _not_ready(delay: float, error: StorageUnavailableError) -> None:
    log.warning("broadcast_database_not_ready", retry_in=round(delay, 2), error=str(error))
