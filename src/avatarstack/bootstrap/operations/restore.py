"""``avatarstack restore``: an archive into the configured database and index."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avatarstack.adapters.chroma import folder_holder
from avatarstack.adapters.postgres import PostgresStorage
from avatarstack.adapters.sql import SqlConnection, transfer
from avatarstack.adapters.sqlite import SqliteStorage
from avatarstack.bootstrap.container import build_container
from avatarstack.bootstrap.operations.common import (
    ARCHIVE_FORMAT,
    CHROMA_DIR,
    DATABASE_FILE,
    FORMAT_VERSION,
    MANIFEST,
    TABLES_DIR,
    SqlStorage,
    describe_rows,
    differences,
    log,
    release_migrations,
    repair_indexes,
    sha256_of,
    sql_storage,
    started,
)
from avatarstack.bootstrap.settings import Settings
from avatarstack.ports.errors import (
    ConflictError,
    InvalidInputError,
)

_JSONL_BATCH = 500


@dataclass
class RestoreResult:
    manifest: dict[str, Any]
    rows: dict[str, int]
    index_copied: bool
    rebuilt: list[str] = field(default_factory=list)


def read_manifest(path: Path) -> dict[str, Any]:
    """The archive's manifest, after checking its format and version."""
    try:
        with tarfile.open(path, "r:*") as archive:
            member = archive.extractfile(MANIFEST)
            if member is None:
                raise KeyError(MANIFEST)
            manifest: dict[str, Any] = json.loads(member.read())
    except FileNotFoundError as exc:
        raise InvalidInputError(f"{path} does not exist") from exc
    except (tarfile.TarError, KeyError, ValueError, OSError) as exc:
        raise InvalidInputError(f"{path} is not an avatarstack backup ({exc})") from exc
    if manifest.get("format") != ARCHIVE_FORMAT:
        raise InvalidInputError(f"{path} is not an avatarstack backup")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise InvalidInputError(
            f"{path} has archive format version {version}; this release reads version "
            f"{FORMAT_VERSION} (avatarstack {manifest.get('avatarstack_version')} wrote it)"
        )
    return manifest


def _check_level(manifest: Mapping[str, Any]) -> None:
    archived = list(manifest["database"]["migrations"])
    known = release_migrations()
    if archived != known:
        raise InvalidInputError(
            f"the archive's database is at migration level {manifest.get('migration_level')} "
            f"and this release at {known[-1]}; restore it with avatarstack "
            f"{manifest.get('avatarstack_version')} (then upgrade and run `avatarstack migrate`)"
        )


def _extract(path: Path, manifest: Mapping[str, Any], target: Path) -> None:
    with tarfile.open(path, "r:*") as archive:
        archive.extractall(target, filter="data")
    for name, digest in manifest["files"].items():
        file = target / name
        if not file.is_file() or sha256_of(file) != digest:
            raise InvalidInputError(f"the archive is damaged: {name} does not match its checksum")


async def _live_rows(storage: SqlStorage) -> dict[str, int]:
    async with storage.sql_transaction(snapshot=True) as conn:
        return {k: v for k, v in (await transfer.row_counts(conn)).items() if v}


async def restore(settings: Settings, path: Path, *, force: bool = False) -> RestoreResult:
    """Load an archive into the configured deployment."""
    manifest = read_manifest(path)
    _check_level(manifest)
    embedded = settings.kb.chroma_url is None
    chroma = settings.chroma_path
    if embedded and (holder := folder_holder(chroma)):
        raise ConflictError(
            f"a running avatarstack ({holder}) holds {chroma}; stop it before restoring"
        )
    container = build_container(settings)
    storage = sql_storage(container)
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".avatarstack-restore-", dir=data_dir) as tmp:
        unpacked = Path(tmp)
        await asyncio.to_thread(_extract, path, manifest, unpacked)
        archived_index = (unpacked / CHROMA_DIR).is_dir()
        if isinstance(storage, SqliteStorage):
            rows = await _restore_sqlite(storage, manifest, unpacked, force=force)
        else:
            rows = await _restore_postgres(storage, manifest, unpacked, force=force)
        copied = False
        if embedded and archived_index:
            await asyncio.to_thread(_replace_folder, unpacked / CHROMA_DIR, chroma)
            copied = True
    rebuilt = await repair_indexes(container)
    log.info("restore_done", path=str(path), rebuilt=rebuilt)
    return RestoreResult(manifest, rows, copied, rebuilt)


async def _restore_sqlite(
    storage: SqliteStorage, manifest: Mapping[str, Any], unpacked: Path, *, force: bool
) -> dict[str, int]:
    target = Path(storage.path)
    if not force and await asyncio.to_thread(target.exists):
        async with started(SqliteStorage(target)) as live:
            if await live.pending_migrations() != release_migrations() and (
                rows := await _live_rows(live)
            ):
                raise ConflictError(
                    f"{target} already holds data ({describe_rows(rows)}); pass --force to "
                    "replace it"
                )
    staged = target.with_name(f".{target.name}.{secrets.token_hex(4)}.restore")
    try:
        if manifest["database"]["kind"] == "sqlite":
            await asyncio.to_thread(shutil.copyfile, unpacked / DATABASE_FILE, staged)
            async with started(SqliteStorage(staged)) as copy:
                rows = await _verify(copy, manifest)
        else:
            async with started(SqliteStorage(staged)) as copy:
                await copy.migrate()
                async with copy.sql_transaction() as conn:
                    await _load_jsonl(conn, unpacked / TABLES_DIR)
                rows = await _verify(copy, manifest)
        await asyncio.to_thread(_swap_in, staged, target)
    finally:
        await asyncio.to_thread(staged.unlink, missing_ok=True)
    return rows


def _swap_in(staged: Path, target: Path) -> None:
    """Replace the database file (and forget the old one's journal files)."""
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    os.replace(staged, target)


async def _restore_postgres(
    storage: PostgresStorage, manifest: Mapping[str, Any], unpacked: Path, *, force: bool
) -> dict[str, int]:
    async with started(storage):
        await storage.migrate()
        async with storage.sql_transaction() as conn:
            if rows := {k: v for k, v in (await transfer.row_counts(conn)).items() if v}:
                if not force:
                    raise ConflictError(
                        f"the database already holds data ({describe_rows(rows)}); pass --force "
                        "to replace it"
                    )
                await transfer.empty_tables(conn)
            if manifest["database"]["kind"] == "sqlite":
                async with (
                    started(SqliteStorage(unpacked / DATABASE_FILE)) as copy,
                    copy.sql_transaction(snapshot=True) as source,
                ):
                    await transfer.copy_tables(source, conn)
            else:
                await _load_jsonl(conn, unpacked / TABLES_DIR)
            # checked before the commit: a mismatch leaves the database as it was
            return _checked(manifest, await transfer.table_digests(conn))


async def _load_jsonl(conn: SqlConnection, folder: Path) -> None:
    for table in transfer.TABLES:
        file = folder / f"{table.name}.jsonl"
        batch: list[dict[str, Any]] = []
        with file.open("rb") as lines:
            for line in lines:
                batch.append(json.loads(line))
                if len(batch) >= _JSONL_BATCH:
                    await transfer.write_records(conn, table, batch)
                    batch = []
        if batch:
            await transfer.write_records(conn, table, batch)
    await transfer.after_load(conn)


async def _verify(storage: SqlStorage, manifest: Mapping[str, Any]) -> dict[str, int]:
    async with storage.sql_transaction(snapshot=True) as conn:
        return _checked(manifest, await transfer.table_digests(conn))


def _checked(manifest: Mapping[str, Any], found: Mapping[str, transfer.Digest]) -> dict[str, int]:
    """Each table's row count, once every table matched the manifest."""
    if problems := differences(manifest["tables"], found):
        raise InvalidInputError(
            "the restored tables differ from the archive: " + ", ".join(problems)
        )
    return {name: digest.rows for name, digest in found.items()}


def _replace_folder(source: Path, target: Path) -> None:
    """Put ``source`` where ``target`` is, keeping the old folder until the new one is in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.{secrets.token_hex(4)}.old")
    if target.exists():
        os.replace(target, old)
    shutil.move(str(source), str(target))
    shutil.rmtree(old, ignore_errors=True)
