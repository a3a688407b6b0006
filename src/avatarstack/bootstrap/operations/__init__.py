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

from avatarstack.bootstrap.operations.backup import BackupResult, backup
from avatarstack.bootstrap.operations.common import (
    ARCHIVE_FORMAT,
    CHROMA_DIR,
    DATABASE_FILE,
    FORMAT_VERSION,
    MANIFEST,
    TABLES_DIR,
    release_migrations,
)
from avatarstack.bootstrap.operations.copy import CopyResult, copy_data
from avatarstack.bootstrap.operations.restore import RestoreResult, read_manifest, restore

__all__ = [
    "ARCHIVE_FORMAT",
    "CHROMA_DIR",
    "DATABASE_FILE",
    "FORMAT_VERSION",
    "MANIFEST",
    "TABLES_DIR",
    "BackupResult",
    "CopyResult",
    "RestoreResult",
    "backup",
    "copy_data",
    "read_manifest",
    "release_migrations",
    "restore",
]
