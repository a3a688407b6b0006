"""``avatarstack copy-data``: every table into an empty database, verified."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from avatarstack.adapters.postgres import PostgresStorage
from avatarstack.adapters.sql import SqlConnection, transfer
from avatarstack.adapters.sqlite import SqliteStorage, backup_database
from avatarstack.bootstrap.container import build_container
from avatarstack.bootstrap.operations.common import (
    DATABASE_FILE,
    SqlStorage,
    describe_rows,
    differences,
    release_migrations,
    repair_indexes,
    sql_storage,
    started,
)
from avatarstack.bootstrap.settings import Settings, mask_url
from avatarstack.ports.errors import (
    ConflictError,
    InvalidInputError,
    StorageError,
    StorageUnavailableError,
)


@dataclass
class CopyResult:
    rows: dict[str, int]
    rebuilt: list[str]


async def copy_data(settings: Settings, to_url: str, *, chroma_url: str | None) -> CopyResult:
    """Copy every table of the configured database into the empty database at ``to_url`` (in
    one transaction: a failure leaves the target empty), verify it, and rebuild the indexes
    into the Chroma server at ``chroma_url`` when one is given."""
    target_settings = settings.model_copy(update={"database_url": to_url})
    if target_settings.resolved_database_url == settings.resolved_database_url:
        raise InvalidInputError("--to names the database being copied")
    source = sql_storage(build_container(settings))
    target = sql_storage(build_container(target_settings))
    async with started(source), _started_target(target, to_url):
        async with source.sql_transaction(snapshot=True) as conn:
            level = await transfer.applied_migrations(conn)
        if level != release_migrations():
            raise ConflictError(
                "the source database is not at this release's migration level; run "
                "`avatarstack migrate` on it first"
            )
        await target.migrate()
        with tempfile.TemporaryDirectory(prefix=".avatarstack-copy-") as tmp:
            async with (
                _snapshot(source, Path(tmp)) as reader,
                target.sql_transaction() as writer,
            ):
                if rows := {k: v for k, v in (await transfer.row_counts(writer)).items() if v}:
                    raise ConflictError(
                        f"the target database already holds data ({describe_rows(rows)}); "
                        "copy-data only fills an empty database: drop and create it again "
                        "(nothing was copied)"
                    )
                expected = await transfer.copy_tables(reader, writer)
                # compared before the commit: a difference leaves the target empty
                found = await transfer.table_digests(writer)
                if problems := differences({k: v.as_dict() for k, v in expected.items()}, found):
                    raise InvalidInputError(
                        "the copy differs from the source (nothing was copied): "
                        + ", ".join(problems)
                    )
    rebuilt: list[str] = []
    if chroma_url:
        kb = target_settings.kb.model_copy(update={"chroma_url": chroma_url})
        rebuilt = await repair_indexes(
            build_container(target_settings.model_copy(update={"kb": kb}))
        )
    return CopyResult({name: d.rows for name, d in found.items()}, rebuilt)


@asynccontextmanager
async def _started_target(storage: SqlStorage, url: str) -> AsyncIterator[SqlStorage]:
    """The target of a copy, started: when it cannot be reached, the error names ``--to``
    (the configured database is the source, and it is fine)."""
    try:
        await storage.start()
    except StorageUnavailableError as exc:
        raise StorageError(
            f"the target database --to {mask_url(url)} is unreachable ({exc.detail}); check the "
            "URL and that the database is running"
        ) from exc
    try:
        yield storage
    finally:
        await storage.close()


@asynccontextmanager
async def _snapshot(storage: SqlStorage, workdir: Path) -> AsyncIterator[SqlConnection]:
    """A connection that reads one moment of ``storage``: an online-backup copy of SQLite
    (writers go on), or a REPEATABLE READ transaction on PostgreSQL."""
    if isinstance(storage, PostgresStorage):
        async with storage.sql_transaction(snapshot=True) as conn:
            yield conn
        return
    copy = workdir / DATABASE_FILE
    await asyncio.to_thread(backup_database, storage.path, copy)
    async with (
        started(SqliteStorage(copy)) as snapshot,
        snapshot.sql_transaction(snapshot=True) as conn,
    ):
        yield conn
