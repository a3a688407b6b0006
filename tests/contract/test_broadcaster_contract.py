"""The broadcaster contract over the in-process and PostgreSQL adapters, plus what only the
PostgreSQL broadcaster does: reconnecting after its LISTEN connection is killed, cut or silently
stalled (through a flaky TCP proxy on 127.0.0.1), ignoring foreign notifications on its channel,
and finding a direct host behind Neon's pooler URL.

The ``cluster`` fixture gives two app instances, ``a`` and ``b``. On PostgreSQL they are two
broadcasters on one database (a private channel per test); in-process there is only one instance,
so ``a`` and ``b`` are the same broadcaster and every test still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from avatarstack.adapters.broadcast import LocalBroadcaster
from avatarstack.adapters.postgres.broadcast import (
    PostgresBroadcaster,
    PostgresBroadcastOptions,
    direct_url,
)
from avatarstack.ports.broadcast import (
    MAX_PAYLOAD_BYTES,
    Broadcaster,
    Notice,
    Subscription,
)
from avatarstack.ports.errors import (
    InvalidInputError,
    StorageError,
    StorageUnavailableError,
    UnavailableError,
)

#: a small queue so the overflow test stays fast
QUEUE = 20
#: how long a test waits for a notice that should arrive (only reached when it fails)
WAIT = 2.0


def fast_options(channel: str, **overrides: Any) -> PostgresBroadcastOptions:
    values: dict[str, Any] = {
        "channel": channel,
        "max_queue": QUEUE,
        "connect_timeout": 2.0,
        "command_timeout": 5.0,
        "startup_timeout": 2.0,
        "reconnect_initial_delay": 0.01,
        "reconnect_max_delay": 0.05,
    }
    values.update(overrides)
    return PostgresBroadcastOptions(**values)


@dataclass
class Cluster:
    name: str
    a: Broadcaster
    b: Broadcaster
    #: a new, unstarted broadcaster of the same kind, on the same channel
    make: Callable[[], Broadcaster]


@pytest.fixture(params=["local", pytest.param("postgres", marks=pytest.mark.postgres)])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    made: list[Broadcaster] = []
    if request.param == "local":

        def make() -> Broadcaster:
            broadcaster = LocalBroadcaster(max_queue=QUEUE)
            made.append(broadcaster)
            return broadcaster

        local = make()
        harness = Cluster("local", local, local, make)
    else:
        url: str = request.getfixturevalue("postgres_url")
        options = fast_options(f"avs_test_{secrets.token_hex(4)}")

        def make() -> Broadcaster:
            broadcaster = PostgresBroadcaster(url, options)
            made.append(broadcaster)
            return broadcaster

        harness = Cluster("postgres", make(), make(), make)
    await harness.a.start()
    await harness.b.start()
    try:
        yield harness
    finally:
        for broadcaster in made:
            await broadcaster.close()


async def next_notice(subscription: Subscription) -> Notice:
    """The next notice; fails the test when none arrives within ``WAIT`` seconds."""
    return await asyncio.wait_for(anext(aiter(subscription)), WAIT)


async def notices(subscription: Subscription, count: int) -> list[Notice]:
    return [await next_notice(subscription) for _ in range(count)]


async def settle(cluster: Cluster) -> None:
    """Return once both instances have processed everything published before the call.

    NOTIFY delivers in commit order, so when ``a`` hears ``b``'s marker it has heard (and, for
    its own notices, skipped) everything committed before, and the other way round.
    """
    topic = f"sync:{secrets.token_hex(4)}"
    async with cluster.a.subscribe(topic) as on_a, cluster.b.subscribe(topic) as on_b:
        await cluster.b.publish(topic, {"from": "b"})
        await cluster.a.publish(topic, {"from": "a"})
        for subscription in (on_a, on_b):
            heard = {n.payload["from"] for n in await notices(subscription, 2)}
            assert heard == {"a", "b"}


async def assert_nothing_more(cluster: Cluster, subscription: Subscription) -> None:
    """No notice is waiting on ``subscription``, not even one still travelling."""
    await settle(cluster)
    topic = min(subscription.topics)
    await cluster.a.publish(topic, {"sentinel": True})
    assert await next_notice(subscription) == Notice(topic=topic, payload={"sentinel": True})


# =========================================================================== the contract


async def test_a_notice_reaches_every_subscription_on_every_instance_once_and_in_order(
    cluster: Cluster,
) -> None:
    on_a = cluster.a.subscribe("conversation:1")
    on_b = cluster.b.subscribe("conversation:1")

    for seq in range(1, 6):
        await cluster.a.publish("conversation:1", {"seq": seq})

    for subscription in (on_a, on_b):
        received = await notices(subscription, 5)
        assert [n.payload for n in received] == [{"seq": seq} for seq in range(1, 6)]
        assert {n.topic for n in received} == {"conversation:1"}
        await assert_nothing_more(cluster, subscription)


async def test_a_subscription_receives_what_is_published_right_after_subscribe_returns(
    cluster: Cluster,
) -> None:
    subscription = cluster.a.subscribe("user:7")
    await cluster.a.publish("user:7", {"hello": 1})

    assert await next_notice(subscription) == Notice(topic="user:7", payload={"hello": 1})


async def test_a_subscription_receives_its_topics_and_nothing_else(cluster: Cluster) -> None:
    both = cluster.b.subscribe("conversation:1", "user:1", "user:1")
    other = cluster.b.subscribe("conversation:2")

    await cluster.a.publish("conversation:1", {"n": 1})
    await cluster.a.publish("conversation:2", {"n": 2})
    await cluster.a.publish("user:1", {"n": 3})
    await cluster.a.publish("nobody:listens", {"n": 4})

    assert both.topics == frozenset({"conversation:1", "user:1"})
    assert await notices(both, 2) == [
        Notice(topic="conversation:1", payload={"n": 1}),
        Notice(topic="user:1", payload={"n": 3}),
    ]
    assert await next_notice(other) == Notice(topic="conversation:2", payload={"n": 2})
    await assert_nothing_more(cluster, both)
    await assert_nothing_more(cluster, other)


async def test_payloads_arrive_as_their_json_round_trip(cluster: Cluster) -> None:
    subscription = cluster.b.subscribe("conversation:ü✓")
    payload = {
        "text": 'héllo ✓ "quoted" \\ \n\x00',
        "seq": 2**53,
        "ratio": 2.5,
        "flags": (True, False, None),
        "nested": {"deep": [1, {"x": []}]},
    }

    await cluster.a.publish("conversation:ü✓", payload)
    await cluster.a.publish("conversation:ü✓", {})

    first, second = await notices(subscription, 2)
    assert first.topic == "conversation:ü✓"
    assert first.payload == json.loads(json.dumps(payload))
    assert first.payload["flags"] == [True, False, None]
    assert second.payload == {}
    assert not first.resync


async def test_a_closed_subscription_ends_its_iteration_and_receives_nothing_more(
    cluster: Cluster,
) -> None:
    closing = cluster.b.subscribe("conversation:1")
    staying = cluster.b.subscribe("conversation:1")
    consumed: list[Notice] = []

    async def consume() -> None:
        async for notice in closing:
            consumed.append(notice)

    consumer = asyncio.create_task(consume())
    await cluster.a.publish("conversation:1", {"n": 1})
    assert await next_notice(staying) == Notice(topic="conversation:1", payload={"n": 1})
    await settle(cluster)

    await closing.close()
    await asyncio.wait_for(consumer, WAIT)
    await closing.close()  # idempotent
    await cluster.a.publish("conversation:1", {"n": 2})

    assert await next_notice(staying) == Notice(topic="conversation:1", payload={"n": 2})
    assert consumed == [Notice(topic="conversation:1", payload={"n": 1})]
    assert [n async for n in closing] == []


async def test_leaving_async_with_closes_the_subscription(cluster: Cluster) -> None:
    async with cluster.b.subscribe("conversation:1") as subscription:
        await cluster.a.publish("conversation:1", {"n": 1})
        assert (await next_notice(subscription)).payload == {"n": 1}
        await cluster.a.publish("conversation:1", {"n": 2})
        await settle(cluster)

    assert [n async for n in subscription] == []


async def test_closing_the_broadcaster_ends_every_subscription(cluster: Cluster) -> None:
    subscription = cluster.b.subscribe("conversation:1", "user:1")
    waiting = asyncio.create_task(anext(aiter(subscription), None))
    await asyncio.sleep(0)

    await cluster.b.close()

    assert await asyncio.wait_for(waiting, WAIT) is None


async def test_a_slow_subscriber_never_blocks_the_publisher_and_is_told_it_overflowed(
    cluster: Cluster,
) -> None:
    slow = cluster.b.subscribe("conversation:1")
    marker = cluster.b.subscribe("marker")
    published = QUEUE + 10

    started = time.monotonic()
    for seq in range(published):
        await cluster.a.publish("conversation:1", {"seq": seq})
    await cluster.a.publish("marker", {})
    assert time.monotonic() - started < 1.0
    await next_notice(marker)  # b has queued every notice by now

    overflow = await next_notice(slow)
    assert overflow == Notice(topic="conversation:1", payload={"overflow": True})
    assert overflow.resync
    # the newest QUEUE notices are kept, in order; the oldest were dropped
    kept = await notices(slow, QUEUE)
    assert [n.payload["seq"] for n in kept] == list(range(published - QUEUE, published))
    await assert_nothing_more(cluster, slow)


async def test_an_overflow_is_reported_once_for_each_topic_that_lost_notices(
    cluster: Cluster,
) -> None:
    slow = cluster.a.subscribe("conversation:1", "conversation:2")

    half = QUEUE // 2
    for seq in range(half):
        await cluster.a.publish("conversation:1", {"seq": seq})
        await cluster.a.publish("conversation:2", {"seq": seq})
    for seq in range(half, half + QUEUE):  # pushes out every notice above
        await cluster.a.publish("conversation:1", {"seq": seq})

    assert await notices(slow, 2) == [
        Notice(topic="conversation:1", payload={"overflow": True}),
        Notice(topic="conversation:2", payload={"overflow": True}),
    ]
    kept = await notices(slow, QUEUE)
    assert [(n.topic, n.payload["seq"]) for n in kept] == [
        ("conversation:1", seq) for seq in range(half, half + QUEUE)
    ]
    await assert_nothing_more(cluster, slow)


async def test_a_payload_is_limited_to_7000_bytes_of_json(cluster: Cluster) -> None:
    # a 200-character topic of 4-byte characters plus the largest payload fits in one NOTIFY
    topic = "🙂" * 200
    subscription = cluster.b.subscribe(topic)
    overhead = len(b'{"x":""}')
    largest = {"x": "a" * (MAX_PAYLOAD_BYTES - overhead)}

    with pytest.raises(InvalidInputError, match="too large"):
        await cluster.a.publish(topic, {"x": "a" * (MAX_PAYLOAD_BYTES - overhead + 1)})
    with pytest.raises(InvalidInputError, match="too large"):  # bytes, not characters
        await cluster.a.publish(topic, {"x": "é" * (MAX_PAYLOAD_BYTES // 2)})
    await cluster.a.publish(topic, largest)

    assert await next_notice(subscription) == Notice(topic=topic, payload=largest)
    await assert_nothing_more(cluster, subscription)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"when": object()}, id="not-json"),
        pytest.param({"x": float("nan")}, id="nan"),
        pytest.param({"x": "\ud800"}, id="lone-surrogate"),
        pytest.param(["not", "an", "object"], id="not-an-object"),
    ],
)
async def test_a_payload_that_is_not_a_json_object_is_refused(
    cluster: Cluster, payload: Any
) -> None:
    with pytest.raises(InvalidInputError):
        await cluster.a.publish("conversation:1", payload)


@pytest.mark.parametrize(
    "topic",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 201, id="too-long"),
        pytest.param("conversation:\x00", id="nul"),
        pytest.param("conversation:\n1", id="control-character"),
        pytest.param(42, id="not-a-string"),
    ],
)
async def test_a_bad_topic_is_refused_by_publish_and_subscribe(
    cluster: Cluster, topic: Any
) -> None:
    with pytest.raises(InvalidInputError, match="topic"):
        await cluster.a.publish(topic, {})
    with pytest.raises(InvalidInputError, match="topic"):
        cluster.a.subscribe("conversation:1", topic)


async def test_a_topic_of_200_characters_is_accepted(cluster: Cluster) -> None:
    subscription = cluster.b.subscribe("x" * 200)
    await cluster.a.publish("x" * 200, {})
    assert (await next_notice(subscription)).topic == "x" * 200


async def test_subscribing_to_no_topic_is_refused(cluster: Cluster) -> None:
    with pytest.raises(InvalidInputError):
        cluster.a.subscribe()


async def test_a_closed_broadcaster_refuses_everything_with_unavailable(
    cluster: Cluster,
) -> None:
    await cluster.a.close()
    await cluster.a.close()  # idempotent

    with pytest.raises(UnavailableError, match="closed"):
        await cluster.a.publish("conversation:1", {})
    with pytest.raises(UnavailableError, match="closed"):
        cluster.a.subscribe("conversation:1")
    with pytest.raises(UnavailableError):
        await cluster.a.ping()
    with pytest.raises(UnavailableError):
        await cluster.a.start()


async def test_subscribing_before_start_works_and_publishing_before_start_is_refused(
    cluster: Cluster,
) -> None:
    late = cluster.make()
    subscription = late.subscribe("conversation:1")
    with pytest.raises(UnavailableError, match="not started"):
        await late.publish("conversation:1", {})
    with pytest.raises(UnavailableError):
        await late.ping()

    await late.start()
    await late.start()  # idempotent
    await late.publish("conversation:1", {"from": "late"})

    assert await next_notice(subscription) == Notice(
        topic="conversation:1", payload={"from": "late"}
    )


async def test_ping_returns_while_the_broadcaster_runs(cluster: Cluster) -> None:
    await cluster.a.ping()
    await cluster.b.ping()


async def test_every_broadcaster_has_a_stable_name(cluster: Cluster) -> None:
    assert cluster.a.name in {"local", "postgresql"}


# =========================================================================== PostgreSQL


@pytest.fixture
async def pair(postgres_url: str) -> AsyncIterator[tuple[PostgresBroadcaster, PostgresBroadcaster]]:
    """Two started PostgreSQL broadcasters (instances) on a private channel."""
    options = fast_options(f"avs_test_{secrets.token_hex(4)}")
    a, b = PostgresBroadcaster(postgres_url, options), PostgresBroadcaster(postgres_url, options)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def terminate_backend(url: str, pid: int) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


async def wait_for_listener(broadcaster: PostgresBroadcaster, other_than: int) -> int:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        pid = broadcaster.listener_pid
        if pid is not None and pid != other_than:
            return pid
        await asyncio.sleep(0.01)
    raise AssertionError("the broadcaster did not reconnect")


@pytest.mark.postgres
async def test_after_the_listen_connection_is_killed_notices_resume_with_a_resync_notice(
    postgres_url: str, pair: tuple[PostgresBroadcaster, PostgresBroadcaster]
) -> None:
    a, b = pair
    subscription = b.subscribe("conversation:1", "user:1")
    killed = b.listener_pid
    assert killed is not None

    await terminate_backend(postgres_url, killed)

    resync = await notices(subscription, 2)
    assert {n.topic for n in resync} == {"conversation:1", "user:1"}
    assert all(n.payload == {"reconnected": True} and n.resync for n in resync)
    assert await wait_for_listener(b, other_than=killed) != killed
    # one notice from the other instance and one from this one, each awaited: notices of two
    # publishers have no order between them (this instance's own may overtake the other's)
    await a.publish("conversation:1", {"seq": 1})
    assert [n.payload for n in await notices(subscription, 1)] == [{"seq": 1}]
    await b.publish("user:1", {"seq": 2})
    assert [n.payload for n in await notices(subscription, 1)] == [{"seq": 2}]
    await b.ping()


class FlakyProxy:
    """A TCP proxy to PostgreSQL with network trouble on demand: it can silently stop
    forwarding on its open connections (packets dropped, nothing closed), cut them, and refuse
    new ones."""

    def __init__(self, url: str) -> None:
        self.server_url = urlsplit(url)
        #: close new connections at once instead of forwarding them
        self.refuse_new = False
        self._open: list[tuple[asyncio.Event, asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> str:
        """Start; return ``url`` pointing at the proxy."""
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = int(self.server.sockets[0].getsockname()[1])
        userinfo, at, _ = self.server_url.netloc.rpartition("@")
        return urlunsplit(self.server_url._replace(netloc=f"{userinfo}{at}127.0.0.1:{port}"))

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        self.cut_open_connections()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.wait_closed()

    def freeze_open_connections(self) -> None:
        for frozen, _, _ in self._open:
            frozen.set()

    def cut_open_connections(self) -> None:
        for _, client, upstream in self._open:
            client.close()
            upstream.close()
        self._open.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse_new:
            writer.close()
            return
        target = (self.server_url.hostname or "127.0.0.1", self.server_url.port or 5432)
        up_reader, up_writer = await asyncio.open_connection(*target)
        frozen = asyncio.Event()
        self._open.append((frozen, writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink, frozen))
            self._tasks.add(task)

    @staticmethod
    async def _pump(
        source: asyncio.StreamReader, sink: asyncio.StreamWriter, frozen: asyncio.Event
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                if frozen.is_set():
                    await asyncio.Event().wait()  # swallow everything from now on
                sink.write(data)
                await sink.drain()
        sink.close()


@pytest.mark.postgres
async def test_a_listen_connection_that_dies_silently_is_replaced_by_the_health_check(
    postgres_url: str,
) -> None:
    options = fast_options(
        f"avs_test_{secrets.token_hex(4)}", health_interval=0.05, command_timeout=0.2
    )
    proxy = FlakyProxy(postgres_url)
    async with proxy as through_proxy:
        a = PostgresBroadcaster(postgres_url, options)
        b = PostgresBroadcaster(postgres_url, options, listen_url=through_proxy)
        try:
            await a.start()
            await b.start()
            subscription = b.subscribe("conversation:1")
            await a.publish("conversation:1", {"seq": 1})
            assert (await next_notice(subscription)).payload == {"seq": 1}

            proxy.freeze_open_connections()

            assert await next_notice(subscription) == Notice(
                topic="conversation:1", payload={"reconnected": True}
            )
            await a.publish("conversation:1", {"seq": 2})
            assert (await next_notice(subscription)).payload == {"seq": 2}
        finally:
            await a.close()
            await b.close()


@pytest.mark.postgres
async def test_the_listener_retries_with_backoff_until_the_database_is_reachable_again(
    postgres_url: str,
) -> None:
    options = fast_options(f"avs_test_{secrets.token_hex(4)}")
    proxy = FlakyProxy(postgres_url)
    async with proxy as through_proxy:
        a = PostgresBroadcaster(postgres_url, options)
        b = PostgresBroadcaster(postgres_url, options, listen_url=through_proxy)
        try:
            await a.start()
            await b.start()
            subscription = b.subscribe("conversation:1")

            proxy.refuse_new = True
            proxy.cut_open_connections()
            await asyncio.sleep(0.2)  # several failed attempts

            # readiness reports the outage; publishing has its own pool and still works
            assert b.listener_pid is None
            with pytest.raises(StorageUnavailableError, match="LISTEN"):
                await b.ping()
            await b.publish("conversation:1", {"seq": 1})
            assert await next_notice(subscription) == Notice(
                topic="conversation:1", payload={"seq": 1}
            )

            proxy.refuse_new = False
            assert await next_notice(subscription) == Notice(
                topic="conversation:1", payload={"reconnected": True}
            )
            await a.publish("conversation:1", {"seq": 2})
            assert await next_notice(subscription) == Notice(
                topic="conversation:1", payload={"seq": 2}
            )
            await b.ping()
        finally:
            await a.close()
            await b.close()


@pytest.mark.postgres
async def test_foreign_notifications_on_the_channel_are_ignored(
    postgres_url: str, pair: tuple[PostgresBroadcaster, PostgresBroadcaster]
) -> None:
    a, b = pair
    subscription = b.subscribe("conversation:1")
    conn = await asyncpg.connect(postgres_url, timeout=5)
    try:
        for body in ["not json", '{"t": 1}', '{"t": "conversation:1", "p": [], "o": "x"}']:
            await conn.execute("SELECT pg_notify($1, $2)", a.options.channel, body)
    finally:
        await conn.close()
    await a.publish("conversation:1", {"ok": True})

    assert await next_notice(subscription) == Notice(topic="conversation:1", payload={"ok": True})


@pytest.mark.postgres
async def test_instances_on_different_channels_do_not_hear_each_other(
    postgres_url: str, pair: tuple[PostgresBroadcaster, PostgresBroadcaster]
) -> None:
    a, _ = pair
    options = fast_options(f"avs_test_{secrets.token_hex(4)}")
    elsewhere, peer = (
        PostgresBroadcaster(postgres_url, options),
        PostgresBroadcaster(postgres_url, options),
    )
    await elsewhere.start()
    await peer.start()
    try:
        foreign = elsewhere.subscribe("conversation:1")
        await a.publish("conversation:1", {"from": "a"})
        # commit order: had ``elsewhere`` heard ``a``, that notice would come first
        await peer.publish("conversation:1", {"from": "peer"})
        assert await next_notice(foreign) == Notice(
            topic="conversation:1", payload={"from": "peer"}
        )
    finally:
        await elsewhere.close()
        await peer.close()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_database_makes_start_fail_as_storage_unavailable() -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/test"
    broadcaster = PostgresBroadcaster(url, fast_options("avs_down", startup_timeout=0.3))

    started = time.monotonic()
    with pytest.raises(StorageUnavailableError):
        await broadcaster.start()
    assert time.monotonic() - started < 1.0
    with pytest.raises(UnavailableError, match="not started"):
        await broadcaster.publish("conversation:1", {})
    await broadcaster.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://app:pw@ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech/db"
            "?sslmode=require",
            "postgresql://app:pw@ep-cool-darkness-123456.us-east-2.aws.neon.tech/db"
            "?sslmode=require",
        ),
        (
            "postgres://app@ep-x-pooler.eu-central-1.aws.neon.tech:5432/db",
            "postgres://app@ep-x.eu-central-1.aws.neon.tech:5432/db",
        ),
        ("postgresql://app@db.internal/db", "postgresql://app@db.internal/db"),
        ("postgresql://app@pooler.internal/db", "postgresql://app@pooler.internal/db"),
    ],
)
def test_the_listener_uses_the_direct_host_behind_a_neon_pooler_url(
    url: str, expected: str
) -> None:
    assert direct_url(url) == expected


def test_a_neon_pooler_url_publishes_through_the_pooler_and_listens_directly() -> None:
    broadcaster = PostgresBroadcaster(
        "postgresql://app:pw@ep-x-pooler.us-east-2.aws.neon.tech/db?sslmode=require"
    )
    assert broadcaster.pooled


def test_a_pgbouncer_url_needs_a_direct_listen_url() -> None:
    pooled = "postgresql://app@127.0.0.1:6432/db?pgbouncer=true"
    with pytest.raises(StorageError, match="direct"):
        PostgresBroadcaster(pooled)
    with pytest.raises(StorageError, match="direct"):
        PostgresBroadcaster(pooled, listen_url=pooled)

    broadcaster = PostgresBroadcaster(pooled, listen_url="postgresql://app@127.0.0.1:5432/db")
    assert broadcaster.pooled
