"""Versioned SQL migrations shipped inside the package, one folder per dialect.

A migration is a file ``NNNN_name.sql``. Applied migrations are recorded with a checksum in
``schema_migrations``; a recorded migration whose file changed is refused rather than silently
diverging. Locking across processes is the adapter's job (an advisory lock on PostgreSQL, an
immediate transaction on SQLite); this module only decides what to run.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

from avatarstack.adapters.sql.connection import SqlConnection
from avatarstack.ports.errors import StorageError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        """Split the script into complete statements (no procedural bodies are used)."""
        statements: list[str] = []
        buffer = ""
        for line in self.sql.splitlines(keepends=True):
            if not buffer and (not line.strip() or line.lstrip().startswith("--")):
                continue
            buffer += line
            if sqlite3.complete_statement(buffer):
                statements.append(buffer.strip().rstrip(";"))
                buffer = ""
        if buffer.strip():
            raise StorageError(f"migration {self.version} ends with an incomplete statement")
        return statements


def load_migrations(package: str) -> list[Migration]:
    """The migrations of ``package``'s ``migrations`` folder, ordered by version."""
    folder = resources.files(package).joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(match[1], match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise StorageError(f"duplicate migration versions in {package}")
    return found


async def applied_versions(conn: SqlConnection) -> dict[str, str]:
    """Recorded migrations as ``{version: checksum}``; empty when the table does not exist."""
    await conn.execute(CREATE_TABLE)
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {row["version"]: row["checksum"] for row in rows}


def pending(migrations: list[Migration], applied: dict[str, str]) -> list[Migration]:
    """The migrations still to apply; refuses a database whose history diverged."""
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise StorageError(
                f"migration {migration.version}_{migration.name} changed after it was applied"
            )
    known = {m.version for m in migrations}
    unknown = sorted(set(applied) - known)
    if unknown:
        raise StorageError(
            f"the database has migrations this version does not know ({', '.join(unknown)}); "
            "upgrade avatarstack"
        )
    return [m for m in migrations if m.version not in applied]


async def apply(conn: SqlConnection, migrations: list[Migration], now: datetime) -> list[str]:
    """Apply what is pending inside the caller's transaction; returns the applied versions."""
    todo = pending(migrations, await applied_versions(conn))
    for migration in todo:
        for statement in migration.statements():
            await conn.execute(statement)
        await conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
            "VALUES ($1, $2, $3, $4)",
            migration.version,
            migration.name,
            migration.checksum,
            now,
        )
    return [m.version for m in todo]


async def newest_version(conn: SqlConnection) -> str | None:
    """The newest recorded version, read without locks; None when nothing was ever applied."""
    try:
        row = await conn.fetchrow("SELECT MAX(version) AS version FROM schema_migrations")
    except StorageError:  # no schema_migrations table yet (availability errors propagate)
        return None
    return str(row["version"]) if row and row["version"] is not None else None
