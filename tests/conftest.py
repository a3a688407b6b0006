"""Shared test fixtures.

Sections (add new ones below as their own section, keep each self-contained):

* **Storage** — the ``storage`` fixture runs a test against every storage adapter (in-memory,
  SQLite, PostgreSQL, PostgreSQL behind PgBouncer), plus the PostgreSQL/PgBouncer session
  infrastructure it needs.

PostgreSQL settings (environment):

``AVATARSTACK_TEST_POSTGRES_URL``
    Admin URL of the server (default ``postgresql://postgres@127.0.0.1:5432/test``). A fresh
    database ``avs_test_<hex>`` is created on it per session and dropped at the end.
``AVATARSTACK_TEST_POSTGRES_REQUIRED=1``
    An unreachable server or a missing ``pgbouncer`` binary fails the tests instead of
    skipping them (set it in CI so PostgreSQL coverage cannot disappear silently).
``AVATARSTACK_TEST_PGBOUNCER``
    Path of the ``pgbouncer`` binary (default: found on ``PATH`` or in ``/usr/sbin``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from avatarstack.adapters.memory import MemoryStorage
from avatarstack.adapters.postgres import PostgresOptions, PostgresStorage
from avatarstack.adapters.sqlite import SqliteStorage
from avatarstack.ports.storage import Storage
from avatarstack.testkit.chroma import ChromaServer, start_chroma_server

T = TypeVar("T")

# =========================================================================== storage

POSTGRES_URL_ENV = "AVATARSTACK_TEST_POSTGRES_URL"
POSTGRES_REQUIRED_ENV = "AVATARSTACK_TEST_POSTGRES_REQUIRED"
PGBOUNCER_BINARY_ENV = "AVATARSTACK_TEST_PGBOUNCER"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"

#: pool options for tests: small, and quick to report an unreachable server
TEST_POSTGRES_OPTIONS = PostgresOptions(
    min_size=1,
    max_size=10,
    command_timeout=15.0,
    acquire_timeout=10.0,
    connect_timeout=5.0,
    startup_timeout=5.0,
)


def postgres_required() -> bool:
    return os.environ.get(POSTGRES_REQUIRED_ENV, "").strip().lower() in {"1", "true", "yes"}


def postgres_admin_url() -> str:
    return os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL


def postgres_unavailable(reason: str) -> NoReturn:
    """Skip the test — or fail it when PostgreSQL is required."""
    if postgres_required():
        pytest.fail(f"{reason} ({POSTGRES_REQUIRED_ENV}=1 makes this a failure)", pytrace=False)
    pytest.skip(f"{reason} (set {POSTGRES_REQUIRED_ENV}=1 to fail instead of skipping)")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run admin coroutines on a private loop in a worker thread.

    Session fixtures use this so they neither depend on nor disturb pytest-asyncio's
    function-scoped event loops (they may be set up from inside a running async fixture).
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def with_database(url: str, database: str, *, netloc: str | None = None, **query: str) -> str:
    """``url`` pointing at another database (optionally another host and extra parameters)."""
    parts = urlsplit(url)
    extra = "&".join(f"{k}={v}" for k, v in query.items())
    joined = "&".join(q for q in (parts.query, extra) if q)
    return urlunsplit(
        (parts.scheme, netloc or parts.netloc, f"/{database}", joined, parts.fragment)
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _check_server(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    await conn.close()


async def create_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def new_database_name() -> str:
    return f"avs_test_{secrets.token_hex(6)}"


@dataclass(frozen=True)
class PostgresDatabase:
    """A database created for this test session, migrated once."""

    name: str
    url: str
    #: every table except schema_migrations
    tables: tuple[str, ...]

    async def truncate(self) -> None:
        """Empty every data table (the schema and its migration record stay)."""
        if not self.tables:
            return
        conn = await asyncpg.connect(self.url, timeout=10)
        try:
            names = ", ".join(f'"{table}"' for table in self.tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The admin URL of a reachable PostgreSQL server (skip/fail otherwise)."""
    url = postgres_admin_url()
    try:
        run_async(_check_server(url))
    except Exception as exc:
        postgres_unavailable(f"PostgreSQL at {url} is unreachable: {exc!r}")
    return url


@pytest.fixture(scope="session")
def postgres_database(postgres_url: str) -> Iterator[PostgresDatabase]:
    """A fresh, migrated database for the session; dropped at the end."""
    name = new_database_name()
    run_async(create_database(postgres_url, name))
    try:
        url = with_database(postgres_url, name)

        async def migrate() -> tuple[str, ...]:
            storage = PostgresStorage(url, TEST_POSTGRES_OPTIONS)
            await storage.start()
            try:
                await storage.migrate()
            finally:
                await storage.close()
            conn = await asyncpg.connect(url, timeout=10)
            try:
                rows = await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'schema_migrations' ORDER BY tablename"
                )
            finally:
                await conn.close()
            return tuple(row["tablename"] for row in rows)

        tables = run_async(migrate())
        yield PostgresDatabase(name=name, url=url, tables=tables)
    finally:
        run_async(drop_database(postgres_url, name))


@pytest.fixture
def empty_postgres_database(postgres_url: str) -> Iterator[str]:
    """The URL of a brand-new database without any schema; dropped after the test."""
    name = new_database_name()
    run_async(create_database(postgres_url, name))
    try:
        yield with_database(postgres_url, name)
    finally:
        run_async(drop_database(postgres_url, name))


@dataclass(frozen=True)
class PgBouncer:
    url: str
    port: int


def _pgbouncer_binary() -> str | None:
    configured = os.environ.get(PGBOUNCER_BINARY_ENV)
    if configured:
        return shutil.which(configured)
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    return shutil.which("pgbouncer", path=path)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def pgbouncer(postgres_database: PostgresDatabase) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of the session database."""
    binary = _pgbouncer_binary()
    if binary is None:
        postgres_unavailable("the pgbouncer binary is not installed (apt package 'pgbouncer')")
    server = urlsplit(postgres_database.url)
    user = server.username or "postgres"
    password = server.password or ""
    port = free_port()
    # pytest's tmp dirs are private to root; pgbouncer drops to the postgres user
    workdir = Path(tempfile.mkdtemp(prefix="avs-pgbouncer-"))
    workdir.chmod(0o755)
    userlist = workdir / "userlist.txt"
    userlist.write_text(f'"{user}" "{password}"\n')
    ini = workdir / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"{postgres_database.name} = host={server.hostname or '127.0.0.1'} "
        f"port={server.port or 5432} dbname={postgres_database.name}\n"
        "\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {userlist}\n"
        "pool_mode = transaction\n"
        "default_pool_size = 20\n"
        "max_client_conn = 200\n"
        "ignore_startup_parameters = extra_float_digits\n"
        "logfile =\n"
        "pidfile =\n"
        "log_connections = 0\n"
        "log_disconnections = 0\n"
    )
    for path in (userlist, ini):
        path.chmod(0o644)
    command = [binary]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        command += ["-u", "postgres"]
    command.append(str(ini))
    log_path = workdir / "pgbouncer.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        if not _wait_for_port(port, process, timeout=10.0):
            output = log_path.read_text(errors="replace")[-2000:]
            postgres_unavailable(f"pgbouncer did not start listening on port {port}: {output}")
        credentials = f"{user}:{password}" if password else user
        url = with_database(
            postgres_database.url,
            postgres_database.name,
            netloc=f"{credentials}@127.0.0.1:{port}",
            pgbouncer="true",
        )
        yield PgBouncer(url=url, port=port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)


STORAGE_BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("pgbouncer", id="pgbouncer", marks=[pytest.mark.postgres, pytest.mark.pgbouncer]),
]


@pytest.fixture(params=STORAGE_BACKENDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """A started, migrated and empty storage of each adapter; closed after the test."""
    backend: str = request.param
    instance: Storage
    if backend == "memory":
        instance = MemoryStorage()
    elif backend == "sqlite":
        instance = SqliteStorage(tmp_path / "avatarstack.db")
    else:
        database: PostgresDatabase = request.getfixturevalue("postgres_database")
        url = database.url
        if backend == "pgbouncer":
            url = request.getfixturevalue("pgbouncer").url
        await database.truncate()
        instance = PostgresStorage(url, TEST_POSTGRES_OPTIONS)
        # through PgBouncer the URL must switch asyncpg's statement cache off
        assert instance.pooled is (backend == "pgbouncer")
    await instance.start()
    try:
        await instance.migrate()
        yield instance
    finally:
        await instance.close()


@pytest.fixture(scope="session")
def chroma_server() -> Iterator[ChromaServer]:
    """A real Chroma server (``chroma run`` on 127.0.0.1) for the whole session."""
    try:
        server = start_chroma_server()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.close()
