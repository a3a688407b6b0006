"""What the backup, the restore and the copy share: the archive's names, the SQL storages, the
state of the generations, checksums, and the rebuild of missing indexes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog

from avatarstack.adapters.postgres import PostgresStorage
from avatarstack.adapters.sql import SqlConnection, load_migrations, transfer
from avatarstack.adapters.sqlite import SqliteStorage
from avatarstack.bootstrap.container import Container
from avatarstack.ports.errors import InvalidInputError

log = structlog.get_logger("avatarstack")

ARCHIVE_FORMAT = "avatarstack-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE_FILE = "database.sqlite3"
TABLES_DIR = "tables"
CHROMA_DIR = "chroma"

SqlStorage = SqliteStorage | PostgresStorage


def release_migrations() -> list[str]:
    """The migration versions this release knows (the same numbers in both dialects)."""
    return [m.version for m in load_migrations("avatarstack.adapters.sqlite")]


def sql_storage(container: Container) -> SqlStorage:
    storage = container.storage()
    if not isinstance(storage, SqliteStorage | PostgresStorage):
        raise InvalidInputError("memory:// keeps nothing on disk; there is nothing to copy")
    return storage


@asynccontextmanager
async def started(storage: SqlStorage) -> AsyncIterator[SqlStorage]:
    await storage.start()
    try:
        yield storage
    finally:
        await storage.close()


async def generation_states(conn: SqlConnection) -> dict[str, dict[str, Any]]:
    """Each generation's status, size and last change: what a build changes."""
    rows = await conn.fetch("SELECT id, status, chunk_count, updated_at FROM kb_generations")
    return {
        str(r["id"]): {
            "status": str(r["status"]),
            "chunks": int(r["chunk_count"]),
            "updated_at": transfer.canonical_time(r["updated_at"]),
        }
        for r in rows
    }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def differences(expected: Mapping[str, Any], found: Mapping[str, transfer.Digest]) -> list[str]:
    problems = []
    for name, want in expected.items():
        got = found.get(name)
        if got is None or got.rows != want["rows"] or got.sha256 != want["sha256"]:
            rows = got.rows if got else 0
            problems.append(f"{name} ({rows} rows, expected {want['rows']})")
    return problems


def describe_rows(rows: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in list(rows.items())[:5])


async def repair_indexes(container: Container) -> list[str]:
    """Rebuild, from the database, every ready generation whose index is missing or
    incomplete; returns their ids."""
    storage = container.storage()
    await storage.start()
    try:
        knowledge = container.knowledge()
        indexes = knowledge.indexes
        rebuilt: list[str] = []
        generations, _ = await knowledge.generations.list_generations(limit=1000)
        for generation in generations:
            if generation.status == "ready" and not await indexes.index_matches(generation.id):
                await indexes.restore_index(generation.id)
                rebuilt.append(generation.id)
        return rebuilt
    finally:
        await container.knowledge_store().close()
        await storage.close()
