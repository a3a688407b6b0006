"""PostgreSQL availability: outages surface as StorageUnavailableError and heal without a restart;
``start`` waits for a starting server; concurrent migrations are serialised; DSN normalisation.

Outages are simulated with a small TCP proxy between the storage and the server, which can drop
its listener and every open connection, and come back on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from avatarstack.adapters.postgres import PostgresOptions, PostgresStorage, normalise_dsn
from avatarstack.adapters.sql import load_migrations
from avatarstack.ports.errors import InvalidInputError, StorageError, StorageUnavailableError

#: short timeouts so an outage is reported in about a second, never hangs a test
OUTAGE_OPTIONS = PostgresOptions(
    min_size=1,
    max_size=2,
    command_timeout=2.0,
    acquire_timeout=2.0,
    connect_timeout=2.0,
    startup_timeout=2.0,
)


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to a target; ``stop`` drops the listener *and* every open
    connection, ``start`` listens again on the same port."""

    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            await server.wait_closed()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(client)
        upstream: asyncio.StreamWriter | None = None
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self.target)
            self._writers.add(upstream)
            pipes = [
                asyncio.create_task(self._pipe(client_reader, upstream)),
                asyncio.create_task(self._pipe(upstream_reader, client)),
            ]
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        except OSError:
            pass
        finally:
            for writer in (client, upstream):
                if writer is not None:
                    writer.transport.abort()
                    self._writers.discard(writer)
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()


class _Database(Protocol):
    url: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def via_port(url: str, port: int) -> str:
    """``url`` with its host and port replaced by ``127.0.0.1:port``."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def proxy_for(url: str, port: int = 0) -> TcpProxy:
    parts = urlsplit(url)
    return TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432, port)


async def eventually(check: Callable[[], Awaitable[object]], within: float = 10.0) -> None:
    """Retry ``check`` while it raises StorageUnavailableError, for up to ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            await check()
            return
        except StorageUnavailableError:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.fixture
async def proxy(postgres_database: _Database) -> AsyncIterator[TcpProxy]:
    proxy = proxy_for(postgres_database.url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.fixture
async def proxied_storage(
    proxy: TcpProxy, postgres_database: _Database
) -> AsyncIterator[PostgresStorage]:
    storage = PostgresStorage(via_port(postgres_database.url, proxy.port), OUTAGE_OPTIONS)
    await storage.start()
    try:
        yield storage
    finally:
        await storage.close()


# --------------------------------------------------------------------------- outages


@pytest.mark.postgres
async def test_an_outage_raises_storage_unavailable_and_service_resumes_without_restart(
    proxy: TcpProxy, proxied_storage: PostgresStorage
) -> None:
    storage = proxied_storage
    await storage.ping()

    await proxy.stop()
    with pytest.raises(StorageUnavailableError):
        await storage.ping()
    with pytest.raises(StorageUnavailableError):
        async with storage.unit_of_work() as uow:
            await uow.users.get("anyone")

    await proxy.start()
    await eventually(storage.ping)
    async with storage.unit_of_work() as uow:
        assert await uow.users.get("anyone") is None


@pytest.mark.postgres
async def test_losing_the_connection_inside_a_unit_of_work_raises_storage_unavailable(
    proxy: TcpProxy, proxied_storage: PostgresStorage
) -> None:
    storage = proxied_storage

    async def read_across_an_outage() -> None:
        async with storage.unit_of_work() as uow:
            assert await uow.users.get("anyone") is None
            await proxy.stop()
            await uow.users.get("anyone")

    with pytest.raises(StorageUnavailableError):
        await read_across_an_outage()

    await proxy.start()
    await eventually(storage.ping)
    async with storage.unit_of_work() as uow:
        assert await uow.users.count() >= 0


@pytest.mark.postgres
async def test_start_keeps_retrying_until_the_server_is_reachable(
    postgres_database: _Database,
) -> None:
    port = free_port()
    proxy = proxy_for(postgres_database.url, port)
    storage = PostgresStorage(
        via_port(postgres_database.url, port), replace(OUTAGE_OPTIONS, startup_timeout=10.0)
    )
    starting = asyncio.create_task(storage.start())
    try:
        await asyncio.sleep(1.0)
        assert not starting.done(), "start() returned although nothing was listening"
        await proxy.start()
        await asyncio.wait_for(starting, timeout=10.0)
        await storage.ping()
    finally:
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, StorageUnavailableError):
            await starting
        await storage.close()
        await proxy.stop()


async def test_start_gives_up_with_storage_unavailable_after_the_startup_timeout() -> None:
    storage = PostgresStorage(
        f"postgresql://postgres@127.0.0.1:{free_port()}/test",
        replace(OUTAGE_OPTIONS, startup_timeout=1.0),
    )
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(StorageUnavailableError):
        await storage.start()
    elapsed = loop.time() - began
    assert 1.0 <= elapsed < 1.75
    with pytest.raises(StorageUnavailableError):
        await storage.ping()


# --------------------------------------------------------------------------- migrations


@pytest.mark.postgres
async def test_concurrent_migrations_apply_each_version_exactly_once(
    empty_postgres_database: str,
) -> None:
    url = empty_postgres_database
    versions = [m.version for m in load_migrations("avatarstack.adapters.postgres")]
    first = PostgresStorage(url, OUTAGE_OPTIONS)
    second = PostgresStorage(url, OUTAGE_OPTIONS)
    await first.start()
    await second.start()
    try:
        assert await first.schema_version() is None
        assert await first.pending_migrations() == versions
        results = await asyncio.gather(first.migrate(), second.migrate())
        assert sorted(results) == [[], versions]
        assert await second.schema_version() == versions[-1]
        assert await second.pending_migrations() == []
    finally:
        await first.close()
        await second.close()
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT version, COUNT(*) AS n FROM schema_migrations GROUP BY version ORDER BY 1"
        )
    finally:
        await conn.close()
    assert [(row["version"], row["n"]) for row in rows] == [(v, 1) for v in versions]


# --------------------------------------------------------------------------- DSN handling


def test_a_neon_pooler_url_keeps_sslmode_drops_channel_binding_and_counts_as_pooled() -> None:
    dsn, pooled = normalise_dsn(
        "postgresql://alex:s3cret@ep-cool-darkness-123456-pooler.eu-central-1.aws.neon.tech"
        "/neondb?sslmode=require&channel_binding=require"
    )
    assert dsn == (
        "postgresql://alex:s3cret@ep-cool-darkness-123456-pooler.eu-central-1.aws.neon.tech"
        "/neondb?sslmode=require"
    )
    assert pooled is True


def test_a_direct_neon_url_is_not_pooled() -> None:
    dsn, pooled = normalise_dsn(
        "postgresql://alex@ep-cool-darkness-123456.eu-central-1.aws.neon.tech/neondb"
        "?channel_binding=require&sslmode=require"
    )
    assert dsn.endswith("/neondb?sslmode=require")
    assert pooled is False


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+asyncpg://u:p@db:5432/app", "postgresql://u:p@db:5432/app"),
        ("postgres://u@db/app", "postgresql://u@db/app"),
        ("postgresql://u@db/app", "postgresql://u@db/app"),
    ],
)
def test_postgres_url_schemes_are_accepted(url: str, expected: str) -> None:
    assert normalise_dsn(url) == (expected, False)


def test_the_pgbouncer_parameter_marks_a_pooler_and_is_not_sent_to_the_server() -> None:
    assert normalise_dsn("postgresql://u@db:6432/app?pgbouncer=true&sslmode=disable") == (
        "postgresql://u@db:6432/app?sslmode=disable",
        True,
    )
    assert normalise_dsn("postgresql://u@db/app?pgbouncer=false") == (
        "postgresql://u@db/app",
        False,
    )


@pytest.mark.parametrize("url", ["mysql://u@db/app", "sqlite:///app.db", "db/app"])
def test_non_postgres_urls_are_refused(url: str) -> None:
    with pytest.raises(StorageError):
        normalise_dsn(url)


def test_poolers_switch_the_statement_cache_off_unless_configured() -> None:
    assert PostgresStorage("postgresql://u@db/app").statement_cache_size > 0
    assert PostgresStorage("postgresql://u@db/app?pgbouncer=true").statement_cache_size == 0
    assert PostgresStorage("postgresql://u@ep-x-pooler.neon.tech/app").statement_cache_size == 0
    configured = PostgresStorage(
        "postgresql://u@db/app?pgbouncer=true", PostgresOptions(statement_cache_size=50)
    )
    assert configured.statement_cache_size == 50


async def test_a_value_postgres_cannot_hold_is_invalid_input_not_a_crash(
    postgres_database: _Database,
) -> None:
    storage = PostgresStorage(postgres_database.url, OUTAGE_OPTIONS)
    await storage.start()
    try:
        with pytest.raises(InvalidInputError):
            async with storage.unit_of_work() as uow:
                await uow.users.get("nul\x00byte")
        await storage.ping()  # the pool is healthy afterwards
    finally:
        await storage.close()


@pytest.mark.postgres
async def test_the_server_answers_503_while_postgres_is_down_and_recovers_by_itself(
    proxy: TcpProxy, postgres_database: _Database, avatarstack_client: Any
) -> None:
    client = await avatarstack_client(
        database_url=via_port(postgres_database.url, proxy.port),
        database={"acquire_timeout": 1, "connect_timeout": 1, "command_timeout": 2},
    )
    assert (await client.get("/readyz")).status == 200
    assert (await client.get("/api/v1/info")).status == 200

    await proxy.stop()
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert ready.content_type == "application/problem+json"
    assert (await ready.json())["checks"]["storage"]["status"] == "unavailable"
    info = await client.get("/api/v1/info")
    assert info.status == 503
    assert (await info.json())["type"].endswith("storage-unavailable")
    login = await client.post("/api/v1/auth/login", json={"email": "a@b.co", "password": "x" * 9})
    assert login.status == 503  # a route that needs the database says so, never a 500

    await proxy.start()
    for _ in range(50):
        if (await client.get("/readyz")).status == 200:
            break
        await asyncio.sleep(0.1)
    assert (await client.get("/readyz")).status == 200
    assert (await client.get("/api/v1/info")).status == 200
