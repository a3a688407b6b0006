"""Storage on PostgreSQL through an asyncpg pool (self-hosted, Neon, behind PgBouncer)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import structlog

from avatarstack.adapters.sql import Dialect, SqlUnitOfWork, load_migrations
from avatarstack.adapters.sql import migrations as sql_migrations
from avatarstack.ports.errors import (
    ConflictError,
    DuplicateError,
    InvalidInputError,
    StorageError,
    StorageUnavailableError,
)
from avatarstack.ports.storage import PoolStats, StorageTimings, UnitOfWork

__all__ = [
    "PostgresOptions",
    "PostgresStorage",
    "connect_with_backoff",
    "normalise_dsn",
    "pooled_connection",
]

DIALECT = Dialect(
    name="postgresql",
    for_update="FOR UPDATE",
    skip_locked="FOR UPDATE SKIP LOCKED",
    named_lock="SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
)
#: pg_advisory_xact_lock key that serialises migrations across processes ("avstmigr")
MIGRATION_LOCK_KEY = 0x61767374_6D696772
#: query parameters libpq knows but asyncpg would forward to the server as settings
_LIBPQ_ONLY = {"channel_binding", "connect_timeout", "application_name_fallback", "pgbouncer"}

log = structlog.get_logger(__name__)

T = TypeVar("T")


def normalise_dsn(url: str) -> tuple[str, bool]:
    """Return an asyncpg-ready DSN and whether it names a transaction pooler.

    Accepts ``postgres://``, ``postgresql://`` and ``postgresql+asyncpg://``; keeps ``sslmode``
    (Neon needs ``require``); drops libpq-only parameters such as ``channel_binding`` that
    asyncpg would send to the server as unknown settings. A host containing ``-pooler`` (Neon's
    pooled endpoint) or ``?pgbouncer=true`` marks a pooler.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in {"postgres", "postgresql"}:
        raise StorageError(f"not a PostgreSQL URL (scheme {parts.scheme!r})")
    query = parse_qsl(parts.query, keep_blank_values=True)
    pooled = "-pooler" in (parts.hostname or "") or any(
        k == "pgbouncer" and v.lower() in {"1", "true", "yes"} for k, v in query
    )
    kept = [(k, v) for k, v in query if k not in _LIBPQ_ONLY]
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(kept), parts.fragment))
    return dsn, pooled


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    min_size: int = 1
    max_size: int = 10
    command_timeout: float = 30.0
    acquire_timeout: float = 10.0
    connect_timeout: float = 10.0
    #: how long ``start`` keeps retrying while the server is starting
    startup_timeout: float = 30.0
    #: None = automatic: 0 (off) for poolers such as PgBouncer or Neon's pooled host
    statement_cache_size: int | None = None
    max_inactive_connection_lifetime: float = 300.0


_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.InterfaceError,
)


def _translate(exc: BaseException) -> Exception:
    """The port error for a driver error. Its detail reaches clients, so it never names the
    driver's exception class; the log line does, for the operator."""
    log.debug("database_error", error=exc.__class__.__name__)
    if isinstance(exc, ssl.SSLCertVerificationError):
        # a configuration error, not an outage: retrying cannot help
        reason = exc.verify_message or exc.reason or "certificate verify failed"
        return StorageError(
            f"the database server's TLS certificate was refused ({reason}); check sslrootcert "
            "(the CA file that signed it) and that the URL's host name is in the certificate"
        )
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):
        return StorageError(f"the database URL is not usable: {exc}")
    if isinstance(exc, asyncpg.exceptions.UniqueViolationError):
        return DuplicateError("a record with the same key already exists")
    if isinstance(exc, asyncpg.exceptions.IntegrityConstraintViolationError):
        return ConflictError("the change violates a constraint")
    if isinstance(exc, asyncpg.exceptions.DataError):
        # a value PostgreSQL cannot hold, e.g. a NUL character in text: bad input, not a crash
        return InvalidInputError("a value cannot be stored (for example a NUL character)")
    if isinstance(exc, asyncpg.exceptions.QueryCanceledError):
        return StorageUnavailableError("the database did not answer within the command timeout")
    if isinstance(exc, _UNAVAILABLE):
        return StorageUnavailableError("the database is unreachable")
    return StorageError("database error")


async def connect_with_backoff(
    deadline: float,
    connect: Callable[[], Awaitable[T]],
    *,
    not_ready: Callable[[float, StorageUnavailableError], None],
) -> T:
    """``await connect()`` until it works, retrying unavailability with exponential backoff
    and jitter until ``deadline`` (loop time); after that, or for an error that is not an
    outage, raise the translated port error. ``not_ready(delay, error)`` is told before each
    wait (the caller logs it under its own event name)."""
    loop = asyncio.get_running_loop()
    delay = 0.2
    while True:
        try:
            return await connect()
        except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
            error = _translate(exc)
            if not isinstance(error, StorageUnavailableError) or loop.time() >= deadline:
                raise error from exc
            not_ready(delay, error)
            # never sleep past the deadline: give up on time, with one last attempt
            await asyncio.sleep(min(delay, max(deadline - loop.time(), 0.0)))
            delay = min(delay * 2, 5.0) * random.uniform(0.8, 1.2)  # noqa: S311


def _not_ready(delay: float, error: StorageUnavailableError) -> None:
    log.warning("database_not_ready", retry_in=round(delay, 2), error=str(error))


@asynccontextmanager
async def pooled_connection(
    pool: asyncpg.Pool,
    timeout: float,  # noqa: ASYNC109 - asyncpg takes it
    timings: StorageTimings | None = None,
) -> AsyncIterator[Any]:
    """A connection from ``pool`` within ``timeout``, given back without ever waiting on a
    server that stopped answering, and without masking the error that ended the block.

    asyncpg's own ``pool.acquire()`` context resets the connection on release, which waits
    for a frozen server (and for its background query cancellation); a connection whose
    command failed for lack of an answer, or whose caller gave up, is closed at once instead
    (the pool opens a new one when it needs one). ``timings`` is told how long the
    acquisition took and whether it had to wait (no idle open connection when asked)."""
    waited = pool.get_idle_size() == 0
    started = time.perf_counter()
    try:
        conn = await pool.acquire(timeout=timeout)
    except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
        raise _translate(exc) from exc
    finally:
        if timings is not None:
            timings.acquired(waited=waited, seconds=time.perf_counter() - started)
    healthy = False
    try:
        yield conn
        healthy = True
    except (StorageUnavailableError, TimeoutError, asyncio.CancelledError):
        raise
    except BaseException:
        healthy = True  # an error of the request (a constraint, bad input): reusable
        raise
    finally:
        if not healthy:
            # closes the socket now and the pool forgets the connection; a connection that
            # was lost is already back in the pool, and its proxy refuses every call
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()
        try:
            await pool.release(conn, timeout=timeout)
        except asyncio.CancelledError:
            # the caller is being cancelled while the connection is reset: drop the connection
            # and let the cancellation go on (swallowing it kept a cancelled task running)
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()
            raise
        except (asyncpg.PostgresError, *_UNAVAILABLE):
            # asyncpg's release has already terminated a connection it could not reset
            log.warning("connection_dropped", reason="reset failed or timed out")


def _rowcount(status: str) -> int:
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _Connection:
    """One pooled connection; every statement is timed into ``timings``."""

    dialect = DIALECT

    def __init__(self, conn: asyncpg.Connection, timings: StorageTimings) -> None:
        self._conn = conn
        self._timings = timings

    async def execute(self, sql: str, *args: Any) -> int:
        started = time.perf_counter()
        try:
            return _rowcount(await self._conn.execute(sql, *args))
        except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
            raise _translate(exc) from exc
        finally:
            self._timings.query(time.perf_counter() - started)

    async def fetch(self, sql: str, *args: Any) -> list[Mapping[str, Any]]:
        started = time.perf_counter()
        try:
            return [dict(r) for r in await self._conn.fetch(sql, *args)]
        except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
            raise _translate(exc) from exc
        finally:
            self._timings.query(time.perf_counter() - started)

    async def fetchrow(self, sql: str, *args: Any) -> Mapping[str, Any] | None:
        started = time.perf_counter()
        try:
            row = await self._conn.fetchrow(sql, *args)
        except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
            raise _translate(exc) from exc
        finally:
            self._timings.query(time.perf_counter() - started)
        return dict(row) if row is not None else None


class PostgresStorage:
    """An asyncpg pool. Connection failures become StorageUnavailableError (HTTP 503); the
    pool replaces broken connections, so service resumes by itself once the server is back."""

    name = "postgresql"

    def __init__(self, url: str, options: PostgresOptions | None = None) -> None:
        self._dsn, self.pooled = normalise_dsn(url)
        self.options = options or PostgresOptions()
        self._pool: asyncpg.Pool | None = None
        self.timings = StorageTimings()
        self._migrations = load_migrations("avatarstack.adapters.postgres")

    @property
    def statement_cache_size(self) -> int:
        configured = self.options.statement_cache_size
        if configured is not None:
            return configured
        return 0 if self.pooled else 100

    def _check_tls_files(self) -> None:
        """A certificate or key file the URL names must exist: a typo is a configuration
        error to report at once, not an outage to retry."""
        for name, value in parse_qsl(urlsplit(self._dsn).query):
            files = {"sslrootcert", "sslcert", "sslkey", "sslcrl"}
            if name in files and not Path(value).expanduser().is_file():
                raise StorageError(f"{name}={value} in the database URL is not a file")

    async def start(self) -> None:
        if self._pool is not None:
            return
        self._check_tls_files()
        opts = self.options
        deadline = asyncio.get_running_loop().time() + opts.startup_timeout
        self._pool = await connect_with_backoff(
            deadline,
            lambda: asyncpg.create_pool(
                self._dsn,
                min_size=opts.min_size,
                max_size=opts.max_size,
                command_timeout=opts.command_timeout,
                timeout=opts.connect_timeout,
                statement_cache_size=self.statement_cache_size,
                max_inactive_connection_lifetime=opts.max_inactive_connection_lifetime,
            ),
            not_ready=_not_ready,
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=self.options.command_timeout)
            except TimeoutError:
                pool.terminate()

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise StorageUnavailableError("the PostgreSQL storage is not started")
        async with pooled_connection(
            self._pool, self.options.acquire_timeout, self.timings
        ) as conn:
            yield conn

    async def ping(self) -> None:
        async with self._acquire() as conn:
            await _Connection(conn, self.timings).fetchrow("SELECT 1 AS ok")

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[tuple[_Connection, Any]]:
        async with self._acquire() as conn:
            tx = conn.transaction()
            try:
                await tx.start()
            except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
                raise _translate(exc) from exc
            yield _Connection(conn, self.timings), tx

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        async with self._transaction() as (conn, tx):

            async def commit() -> None:
                try:
                    await tx.commit()
                except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
                    raise _translate(exc) from exc

            async def rollback() -> None:
                try:
                    await tx.rollback()
                except (asyncpg.PostgresError, *_UNAVAILABLE):
                    log.warning("rollback_failed")

            uow = SqlUnitOfWork(conn, commit, rollback)
            try:
                yield uow
            finally:
                await uow.rollback()

    @asynccontextmanager
    async def sql_transaction(self, *, snapshot: bool = False) -> AsyncIterator[_Connection]:
        """A raw connection in one transaction (backups, copies between backends): committed
        when the block ends normally; ``snapshot`` is a read-only REPEATABLE READ transaction,
        so every table is read at the same moment."""
        async with self._acquire() as conn:
            tx = conn.transaction(
                isolation="repeatable_read" if snapshot else None, readonly=snapshot
            )
            try:
                await tx.start()
            except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
                raise _translate(exc) from exc
            try:
                yield _Connection(conn, self.timings)
            except BaseException:
                await tx.rollback()
                raise
            try:
                await (tx.rollback() if snapshot else tx.commit())
            except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
                raise _translate(exc) from exc

    @asynccontextmanager
    async def _migration_lock(self) -> AsyncIterator[_Connection]:
        # A transaction-level advisory lock also works through PgBouncer in transaction mode,
        # where a session-level lock could leak to another client's server connection.
        async with self._transaction() as (conn, tx):
            try:
                await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
                yield conn
            except BaseException:
                await tx.rollback()
                raise
            await tx.commit()

    async def migrate(self) -> list[str]:
        async with self._migration_lock() as conn:
            return await sql_migrations.apply(conn, self._migrations, datetime.now(UTC))

    async def pending_migrations(self) -> list[str]:
        async with self._migration_lock() as conn:
            applied = await sql_migrations.applied_versions(conn)
        return [m.version for m in sql_migrations.pending(self._migrations, applied)]

    async def schema_version(self) -> str | None:
        async with self._acquire() as conn:
            return await sql_migrations.newest_version(_Connection(conn, self.timings))

    def pool_stats(self) -> PoolStats:
        if self._pool is None:
            return PoolStats(size=0, idle=0, max_size=self.options.max_size)
        return PoolStats(
            size=self._pool.get_size(),
            idle=self._pool.get_idle_size(),
            max_size=self._pool.get_max_size(),
        )
