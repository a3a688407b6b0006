"""Copies of an embedded Chroma folder, for backups and restores.

A running server holds the folder's ``flock`` (see ``knowledge.LOCK_FILE``); a copy taken then
reads Chroma's SQLite file through SQLite's online backup API and copies the segment files of
the collections. That copy is consistent only while no collection is being written: the caller
(``avatarstack backup``) makes sure no index build ran during the copy.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from avatarstack.adapters.chroma.knowledge import LOCK_FILE, _lock_folder
from avatarstack.ports.errors import IndexInUseError, StorageError

__all__ = ["copy_embedded", "folder_holder", "holding_folder"]

_DATABASE = "chroma.sqlite3"


def folder_holder(folder: Path) -> str | None:
    """Who holds the folder (``pid N``), or None when it is free (or does not exist)."""
    if not (folder / LOCK_FILE).exists():
        return None
    try:
        handle = _lock_folder(folder)
    except IndexInUseError as exc:
        return exc.holder or "another process"
    handle.close()
    return None


@contextlib.contextmanager
def holding_folder(folder: Path) -> Iterator[bool]:
    """Hold the folder's lock while the block runs when it is free; yields False when a
    running process holds it (the block then runs beside that process)."""
    handle: IO[str] | None = None
    if folder.is_dir():
        with contextlib.suppress(IndexInUseError):
            handle = _lock_folder(folder)
    try:
        yield handle is not None
    finally:
        if handle is not None:
            handle.close()


def copy_embedded(folder: Path, target: Path) -> None:
    """Copy the Chroma folder into ``target`` (created): its database through the online backup
    API, every other file as it is, the lock file left out. Blocking; run it in a thread."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_dir():
            (target / relative).mkdir(parents=True, exist_ok=True)
            continue
        if path.name == LOCK_FILE or path.name.startswith(f"{_DATABASE}-"):
            continue  # the lock; the database's -wal/-shm go into the backup copy below
        if relative.as_posix() == _DATABASE:
            _backup_sqlite(path, target / relative)
        else:
            shutil.copy2(path, target / relative)


def _backup_sqlite(source: Path, target: Path) -> None:
    try:
        src = sqlite3.connect(f"file:{source.as_posix()}?mode=ro", uri=True, timeout=30)
        try:
            dst = sqlite3.connect(str(target))
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot copy the Chroma database {source} ({exc})") from exc
