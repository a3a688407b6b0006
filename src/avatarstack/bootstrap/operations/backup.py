"""``avatarstack backup``: one consistent archive of the database and the embedded index."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from avatarstack import __version__
from avatarstack.adapters.chroma import copy_embedded, holding_folder
from avatarstack.adapters.sql import SqlConnection, transfer
from avatarstack.adapters.sqlite import SqliteStorage, backup_database
from avatarstack.bootstrap.container import build_container
from avatarstack.bootstrap.operations.common import (
    ARCHIVE_FORMAT,
    CHROMA_DIR,
    DATABASE_FILE,
    FORMAT_VERSION,
    MANIFEST,
    TABLES_DIR,
    SqlStorage,
    generation_states,
    log,
    sha256_of,
    sql_storage,
    started,
)
from avatarstack.bootstrap.settings import Settings, mask_url
from avatarstack.ports.errors import (
    ConflictError,
    InvalidInputError,
)


@dataclass
class BackupResult:
    path: Path
    manifest: dict[str, Any]
    attempts: int = 1


async def backup(
    settings: Settings, path: Path, *, wait: float = 300.0, poll: float = 1.0
) -> BackupResult:
    """Write one archive of the deployment to ``path`` (which must not exist yet)."""
    if await asyncio.to_thread(path.exists):
        raise ConflictError(f"{path} exists; give the backup a new file name")
    if not await asyncio.to_thread(path.parent.is_dir):
        raise InvalidInputError(f"the folder {path.parent} does not exist")
    container = build_container(settings)
    storage = sql_storage(container)
    embedded = settings.kb.chroma_url is None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    attempts = 0
    async with started(storage):
        if await storage.schema_version() is None:
            raise InvalidInputError(
                "the database holds no avatarstack data yet (no migration applied): nothing "
                "to back up; check AVATARSTACK_DATA_DIR / AVATARSTACK_DATABASE_URL"
            )
        while True:
            attempts += 1
            with tempfile.TemporaryDirectory(prefix=".avatarstack-backup-", dir=path.parent) as tmp:
                staging = Path(tmp)
                manifest = await _snapshot_database(settings, storage, staging)
                generations: dict[str, dict[str, Any]] = manifest["generations"]
                building = sorted(g for g, v in generations.items() if v["status"] == "building")
                consistent = not building
                if consistent and embedded and settings.chroma_path.is_dir():
                    with holding_folder(settings.chroma_path) as alone:
                        await asyncio.to_thread(
                            copy_embedded, settings.chroma_path, staging / CHROMA_DIR
                        )
                    async with storage.sql_transaction(snapshot=True) as conn:
                        consistent = await generation_states(conn) == generations
                    manifest["index"] = {
                        "kind": "embedded-chroma",
                        "copied_beside_a_running_server": not alone,
                    }
                elif consistent:
                    manifest["index"] = {"kind": "none", "chroma_url": _masked_chroma(settings)}
                if consistent:
                    manifest["attempts"] = attempts
                    await asyncio.to_thread(_write_archive, staging, manifest, path)
                    log.info("backup_written", path=str(path), attempts=attempts)
                    return BackupResult(path, manifest, attempts)
            if loop.time() >= deadline:
                what = f"generation {building[0]} is building" if building else "builds ran"
                raise ConflictError(
                    f"the index kept changing during the backup ({what}); run it again when "
                    "no index build is running, or give it longer with --wait"
                )
            log.info("backup_waiting_for_build", building=building, attempt=attempts)
            await asyncio.sleep(poll)


def _masked_chroma(settings: Settings) -> str | None:
    return mask_url(settings.kb.chroma_url) if settings.kb.chroma_url else None


async def _snapshot_database(
    settings: Settings, storage: SqlStorage, staging: Path
) -> dict[str, Any]:
    """Copy the database into ``staging`` and describe it: one moment of the database."""
    if isinstance(storage, SqliteStorage):
        database = staging / DATABASE_FILE
        await asyncio.to_thread(backup_database, storage.path, database)
        async with (
            started(SqliteStorage(database)) as copy,
            copy.sql_transaction(snapshot=True) as conn,
        ):
            digests = await transfer.table_digests(conn)
            return await _describe(conn, "sqlite", "sqlite", digests)
    folder = staging / TABLES_DIR
    await asyncio.to_thread(_table_files, folder)

    async def dump(table: transfer.Table, _batch: Any, lines: list[bytes]) -> None:
        await asyncio.to_thread(_append, folder / f"{table.name}.jsonl", lines)

    async with storage.sql_transaction(snapshot=True) as conn:
        digests = await transfer.walk_tables(conn, dump)
        return await _describe(conn, "postgresql", "tables", digests)


def _table_files(folder: Path) -> None:
    """One empty JSON-lines file per table (an empty table keeps its empty file)."""
    folder.mkdir()
    for table in transfer.TABLES:
        (folder / f"{table.name}.jsonl").touch()


def _append(path: Path, lines: list[bytes]) -> None:
    with path.open("ab") as out:
        out.writelines(line + b"\n" for line in lines)


async def _describe(
    conn: SqlConnection, source: str, kind: str, digests: Mapping[str, transfer.Digest]
) -> dict[str, Any]:
    migrations = await transfer.applied_migrations(conn)
    return {
        "format": ARCHIVE_FORMAT,
        "format_version": FORMAT_VERSION,
        "avatarstack_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "database": {"kind": kind, "migrations": migrations},
        "migration_level": migrations[-1] if migrations else None,
        "tables": {name: d.as_dict() for name, d in digests.items()},
        "generations": await generation_states(conn),
    }


def _file_checksums(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): sha256_of(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def _write_archive(staging: Path, manifest: dict[str, Any], path: Path) -> None:
    manifest["files"] = _file_checksums(staging)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        # password and token hashes, documents and conversations: readable by the owner only
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        with tarfile.open(partial, "w:gz", compresslevel=1) as archive:
            archive.add(staging / MANIFEST, arcname=MANIFEST)
            for name in sorted(manifest["files"]):
                archive.add(staging / name, arcname=name)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
