"""Embedded storage on SQLite (aiosqlite): WAL journal, foreign keys on, one writer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from avatarstack.adapters.sql import Dialect, SqlUnitOfWork, load_migrations
from avatarstack.adapters.sql import migrations as sql_migrations
from avatarstack.ports.errors import (
    ConflictError,
    DuplicateError,
    StorageError,
    StorageUnavailableError,
)
from avatarstack.ports.storage import PoolStats, StorageTimings, UnitOfWork

__all__ = ["SqliteStorage", "backup_database"]

DIALECT = Dialect(name="sqlite", for_update="", skip_locked="")
_PLACEHOLDER = re.compile(r"\$(\d+)")


def _to_sqlite(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise StorageError("naive datetimes are not stored; pass an aware UTC datetime")
        # fixed width, always with microseconds, so text order equals time order
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def _translate(exc: sqlite3.Error) -> Exception:
    message = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        if "UNIQUE" in message or "PRIMARY KEY" in message:
            return DuplicateError("a record with the same key already exists")
        return ConflictError(f"the change violates a constraint ({message})")
    if isinstance(exc, sqlite3.OperationalError) and (
        "locked" in message or "busy" in message or "unable to open" in message
    ):
        return StorageUnavailableError(f"the SQLite database is unavailable ({message})")
    return StorageError(f"SQLite error ({message})")


def backup_database(source: str | Path, target: str | Path) -> None:
    """Copy a live database into ``target`` with SQLite's online backup API, in one step: the
    copy is one consistent moment of the database, and writers (in this or other processes)
    are not blocked in WAL mode. Blocking; run it in a thread."""
    src = sqlite3.connect(f"file:{Path(source).as_posix()}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(str(target))
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot back up the SQLite database {source} ({exc})") from exc
    finally:
        src.close()


class _Connection:
    """The storage's connection; every statement is timed into ``timings``."""

    dialect = DIALECT

    def __init__(self, db: aiosqlite.Connection, timings: StorageTimings) -> None:
        self._db = db
        self._timings = timings

    async def _run(self, sql: str, args: tuple[Any, ...]) -> aiosqlite.Cursor:
        try:
            return await self._db.execute(
                _PLACEHOLDER.sub(r"?\1", sql), tuple(_to_sqlite(a) for a in args)
            )
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    async def execute(self, sql: str, *args: Any) -> int:
        started = time.perf_counter()
        try:
            cursor = await self._run(sql, args)
            count = cursor.rowcount
            await cursor.close()
        finally:
            self._timings.query(time.perf_counter() - started)
        return max(count, 0)

    async def _rows(self, sql: str, args: tuple[Any, ...]) -> list[sqlite3.Row]:
        """Run a query and read its rows in one trip to aiosqlite's thread (a cursor's
        execute, fetch and close took three, each a hand-over between threads)."""
        started = time.perf_counter()
        try:
            rows = await self._db.execute_fetchall(
                _PLACEHOLDER.sub(r"?\1", sql), tuple(_to_sqlite(a) for a in args)
            )
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        finally:
            self._timings.query(time.perf_counter() - started)
        return list(rows)

    async def fetch(self, sql: str, *args: Any) -> list[Mapping[str, Any]]:
        return [dict(row) for row in await self._rows(sql, args)]

    async def fetchrow(self, sql: str, *args: Any) -> Mapping[str, Any] | None:
        rows = await self._rows(sql, args)
        return dict(rows[0]) if rows else None


def _private_file(path: Path) -> None:
    """Create the database file readable by its owner only (0600): it holds password and token
    hashes. SQLite gives the -wal and -shm files the database file's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        with contextlib.suppress(OSError):  # not ours to change: leave it as the operator set it
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)


class SqliteStorage:
    """One file, one connection: transactions are serialised in-process by a lock and across
    processes by ``BEGIN IMMEDIATE`` with a busy timeout. Do not open a unit of work inside
    another on the same storage (it would wait for itself)."""

    name = "sqlite"

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        self.path = str(path)
        self._busy_timeout = busy_timeout
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self.timings = StorageTimings()
        self._migrations = load_migrations("avatarstack.adapters.sqlite")

    async def start(self) -> None:
        if self._db is not None:
            return
        if self.path != ":memory:":
            _private_file(Path(self.path))
        try:
            db = await aiosqlite.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None
            )
            db.row_factory = sqlite3.Row
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA foreign_keys = ON")
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        except sqlite3.Error as exc:
            raise StorageUnavailableError(f"cannot open the SQLite database ({exc})") from exc
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageUnavailableError("the SQLite storage is not started")
        return self._db

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        """Hold the connection (this process's one-at-a-time lock), timed as an acquisition:
        it waited when another unit of work held the connection."""
        waited = self._lock.locked()
        started = time.perf_counter()
        async with self._lock:
            self.timings.acquired(waited=waited, seconds=time.perf_counter() - started)
            yield

    async def ping(self) -> None:
        db = self._connection()
        try:
            async with asyncio.timeout(self._busy_timeout):
                await (await db.execute("SELECT 1")).close()
        except (sqlite3.Error, TimeoutError) as exc:
            raise StorageUnavailableError("the SQLite database does not answer") from exc

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_Connection]:
        db = self._connection()
        async with self._locked():
            # aiosqlite runs each statement in its own thread: a cancelled await does not stop
            # it. BEGIN is shielded and, when the caller was cancelled meanwhile, rolled back, so
            # a caller that goes away never leaves the connection inside a transaction.
            begin = asyncio.ensure_future(db.execute("BEGIN IMMEDIATE"))
            try:
                await asyncio.shield(begin)
            except asyncio.CancelledError:
                await self._undo(db, begin)
                raise
            except sqlite3.Error as exc:
                raise _translate(exc) from exc
            conn = _Connection(db, self.timings)
            try:
                yield conn
            except BaseException:
                await self._undo(db)
                raise

    @staticmethod
    async def _undo(db: aiosqlite.Connection, pending: asyncio.Future[Any] | None = None) -> None:
        """Roll back whatever the connection holds, even while being cancelled again."""

        async def undo() -> None:
            if pending is not None:
                with contextlib.suppress(sqlite3.Error):
                    await pending
            if db.in_transaction:
                await db.rollback()

        await asyncio.shield(asyncio.ensure_future(undo()))

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        async with self._transaction() as conn:
            db = self._connection()
            uow = SqlUnitOfWork(conn, db.commit, db.rollback)
            try:
                yield uow
            finally:
                await uow.rollback()

    @asynccontextmanager
    async def sql_transaction(self, *, snapshot: bool = False) -> AsyncIterator[_Connection]:
        """A raw connection in one transaction (backups, copies between backends): committed
        when the block ends normally; ``snapshot`` reads without blocking writers and never
        writes."""
        if not snapshot:
            async with self._transaction() as conn:
                yield conn
                await self._connection().commit()
            return
        db = self._connection()
        async with self._locked():
            try:
                await db.execute("BEGIN")
            except sqlite3.Error as exc:
                raise _translate(exc) from exc
            try:
                yield _Connection(db, self.timings)
            finally:
                if db.in_transaction:
                    await db.rollback()

    async def migrate(self) -> list[str]:
        async with self._transaction() as conn:
            applied = await sql_migrations.apply(conn, self._migrations, datetime.now(UTC))
            await self._connection().commit()
        return applied

    async def pending_migrations(self) -> list[str]:
        async with self._transaction() as conn:
            applied = await sql_migrations.applied_versions(conn)
            await self._connection().commit()
        return [m.version for m in sql_migrations.pending(self._migrations, applied)]

    async def schema_version(self) -> str | None:
        db = self._connection()
        async with self._locked():
            return await sql_migrations.newest_version(_Connection(db, self.timings))

    def pool_stats(self) -> PoolStats:
        open_ = 1 if self._db is not None else 0
        return PoolStats(size=open_, idle=open_ if not self._lock.locked() else 0, max_size=1)
