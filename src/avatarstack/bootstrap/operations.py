"""Backups, restores and copies between databases (``avatarstack backup``, ``restore``,
``copy-data``).

An archive is a gzip-compressed tar file:

* ``manifest.json`` — format and format version, avatarstack version, ``created_at``, the
  source backend, the applied migrations, each table's row count and digest (see
  :mod:`avatarstack.adapters.sql.transfer`), the generations and the SHA-256 of every file;
* ``database.sqlite3`` — from SQLite: the database through SQLite's online backup API; or
  ``tables/<table>.jsonl`` — from PostgreSQL: every table, one record per line, read in one
  REPEATABLE READ snapshot;
* ``chroma/`` — the embedded Chroma folder, when the deployment uses one.

The database is read first; the generations it knows are immutable once built, so the Chroma
copy that follows agrees with it unless an index build runs meanwhile. The backup waits for a
build in progress and starts again when a build started or ended during the copy.

Either kind of archive restores into SQLite or PostgreSQL. A generation whose vector index is
missing or incomplete after a restore (no Chroma copy in the archive, or a Chroma server as the
target) is rebuilt from the chunks and the embedding cache the database holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from avatarstack import __version__
from avatarstack.adapters.chroma import copy_embedded, folder_holder, holding_folder
from avatarstack.adapters.postgres import PostgresStorage
from avatarstack.adapters.sql import SqlConnection, load_migrations, transfer
from avatarstack.adapters.sqlite import SqliteStorage, backup_database
from avatarstack.bootstrap.container import Container, build_container
from avatarstack.bootstrap.settings import Settings, mask_url
from avatarstack.ports.errors import (
    ConflictError,
    InvalidInputError,
    StorageError,
    StorageUnavailableError,
)

log = structlog.get_logger("avatarstack")

ARCHIVE_FORMAT = "avatarstack-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE_FILE = "database.sqlite3"
TABLES_DIR = "tables"
CHROMA_DIR = "chroma"
_JSONL_BATCH = 500

SqlStorage = SqliteStorage | PostgresStorage


def release_migrations() -> list[str]:
    """The migration versions this release knows (the same numbers in both dialects)."""
    return [m.version for m in load_migrations("avatarstack.adapters.sqlite")]


def _sql_storage(container: Container) -> SqlStorage:
    storage = container.storage()
    if not isinstance(storage, SqliteStorage | PostgresStorage):
        raise InvalidInputError("memory:// keeps nothing on disk; there is nothing to copy")
    return storage


@asynccontextmanager
async def _started(storage: SqlStorage) -> AsyncIterator[SqlStorage]:
    await storage.start()
    try:
        yield storage
    finally:
        await storage.close()


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


async def _generations(conn: SqlConnection) -> dict[str, dict[str, Any]]:
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_checksums(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): _sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def _differences(expected: Mapping[str, Any], found: Mapping[str, transfer.Digest]) -> list[str]:
    problems = []
    for name, want in expected.items():
        got = found.get(name)
        if got is None or got.rows != want["rows"] or got.sha256 != want["sha256"]:
            rows = got.rows if got else 0
            problems.append(f"{name} ({rows} rows, expected {want['rows']})")
    return problems


# ============================================================================== backup


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
    storage = _sql_storage(container)
    embedded = settings.kb.chroma_url is None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    attempts = 0
    async with _started(storage):
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
                        consistent = await _generations(conn) == generations
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
            _started(SqliteStorage(database)) as copy,
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
        "generations": await _generations(conn),
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


# ============================================================================== restore


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
        if not file.is_file() or _sha256(file) != digest:
            raise InvalidInputError(f"the archive is damaged: {name} does not match its checksum")


async def _live_rows(storage: SqlStorage) -> dict[str, int]:
    async with storage.sql_transaction(snapshot=True) as conn:
        return {k: v for k, v in (await transfer.row_counts(conn)).items() if v}


def _describe_rows(rows: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in list(rows.items())[:5])


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
    storage = _sql_storage(container)
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
    rebuilt = await _repair_indexes(container)
    log.info("restore_done", path=str(path), rebuilt=rebuilt)
    return RestoreResult(manifest, rows, copied, rebuilt)


async def _restore_sqlite(
    storage: SqliteStorage, manifest: Mapping[str, Any], unpacked: Path, *, force: bool
) -> dict[str, int]:
    target = Path(storage.path)
    if not force and await asyncio.to_thread(target.exists):
        async with _started(SqliteStorage(target)) as live:
            if await live.pending_migrations() != release_migrations() and (
                rows := await _live_rows(live)
            ):
                raise ConflictError(
                    f"{target} already holds data ({_describe_rows(rows)}); pass --force to "
                    "replace it"
                )
    staged = target.with_name(f".{target.name}.{secrets.token_hex(4)}.restore")
    try:
        if manifest["database"]["kind"] == "sqlite":
            await asyncio.to_thread(shutil.copyfile, unpacked / DATABASE_FILE, staged)
            async with _started(SqliteStorage(staged)) as copy:
                rows = await _verify(copy, manifest)
        else:
            async with _started(SqliteStorage(staged)) as copy:
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
    async with _started(storage):
        await storage.migrate()
        async with storage.sql_transaction() as conn:
            if rows := {k: v for k, v in (await transfer.row_counts(conn)).items() if v}:
                if not force:
                    raise ConflictError(
                        f"the database already holds data ({_describe_rows(rows)}); pass --force "
                        "to replace it"
                    )
                await transfer.empty_tables(conn)
            if manifest["database"]["kind"] == "sqlite":
                async with (
                    _started(SqliteStorage(unpacked / DATABASE_FILE)) as copy,
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
    if problems := _differences(manifest["tables"], found):
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


async def _repair_indexes(container: Container) -> list[str]:
    """Rebuild, from the database, every ready generation whose index is missing or
    incomplete; returns their ids."""
    storage = container.storage()
    await storage.start()
    try:
        knowledge = container.knowledge()
        rebuilt: list[str] = []
        generations, _ = await knowledge.list_generations(limit=1000)
        for generation in generations:
            if generation.status == "ready" and not await knowledge.index_matches(generation.id):
                await knowledge.restore_index(generation.id)
                rebuilt.append(generation.id)
        return rebuilt
    finally:
        await container.knowledge_store().close()
        await storage.close()


# ============================================================================== copy-data


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
    source = _sql_storage(build_container(settings))
    target = _sql_storage(build_container(target_settings))
    async with _started(source), _started_target(target, to_url):
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
                        f"the target database already holds data ({_describe_rows(rows)}); "
                        "copy-data only fills an empty database: drop and create it again "
                        "(nothing was copied)"
                    )
                expected = await transfer.copy_tables(reader, writer)
                # compared before the commit: a difference leaves the target empty
                found = await transfer.table_digests(writer)
                if problems := _differences({k: v.as_dict() for k, v in expected.items()}, found):
                    raise InvalidInputError(
                        "the copy differs from the source (nothing was copied): "
                        + ", ".join(problems)
                    )
    rebuilt: list[str] = []
    if chroma_url:
        kb = target_settings.kb.model_copy(update={"chroma_url": chroma_url})
        rebuilt = await _repair_indexes(
            build_container(target_settings.model_copy(update={"kb": kb}))
        )
    return CopyResult({name: d.rows for name, d in found.items()}, rebuilt)


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
        _started(SqliteStorage(copy)) as snapshot,
        snapshot.sql_transaction(snapshot=True) as conn,
    ):
        yield conn
