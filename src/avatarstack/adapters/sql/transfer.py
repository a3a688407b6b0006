"""Every table's rows in one portable form, for backups and for moving between SQL backends.

``TABLES`` lists the tables of the current schema in foreign-key order, each column with its
kind. A *record* is a row in canonical form, the same whichever backend it was read from:
timestamps as fixed-width ISO-8601 UTC text, booleans as ``bool``, JSON columns parsed, binary
columns as base64 text. ``record_line`` turns a record into one line of JSON; a table's digest
is the SHA-256 of its lines in primary-key order, so a source and a copy on another backend are
compared by value. A test keeps ``TABLES`` equal to the migrated schema of both dialects.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from avatarstack.adapters.sql.connection import SqlConnection

Kind = Literal["text", "int", "float", "bool", "time", "json", "bytes"]

#: parameters per INSERT statement (under every dialect's limit)
_MAX_PARAMETERS = 2000
#: rows read per query
_READ_BATCH = 500


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[tuple[str, Kind], ...]
    key: tuple[str, ...]
    #: PostgreSQL generates the key (``GENERATED ALWAYS AS IDENTITY``)
    identity: bool = False

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


def _table(name: str, key: str, columns: str, *, identity: bool = False) -> Table:
    parsed = tuple(
        (part.split(":")[0].strip(), cast(Kind, part.split(":")[1].strip()))
        for part in columns.split(",")
    )
    return Table(name, parsed, tuple(k.strip() for k in key.split(",")), identity)


#: the data tables in an order that satisfies every foreign key (``schema_migrations`` is not
#: data: both sides must be migrated to the same level)
TABLES: tuple[Table, ...] = (
    _table(
        "users",
        "id",
        "id:text, email:text, display_name:text, password_hash:text, email_verified:bool, "
        "is_active:bool, created_at:time, updated_at:time",
    ),
    _table("user_roles", "user_id, role", "user_id:text, role:text"),
    _table(
        "identities",
        "id",
        "id:text, user_id:text, provider:text, subject:text, email:text, email_verified:bool, "
        "created_at:time",
    ),
    _table(
        "one_time_tokens",
        "token_hash",
        "token_hash:text, purpose:text, user_id:text, data:json, created_at:time, "
        "expires_at:time, used_at:time",
    ),
    _table(
        "auth_sessions",
        "id",
        "id:text, user_id:text, created_at:time, last_used_at:time, expires_at:time, "
        "revoked_at:time, user_agent:text, ip:text",
    ),
    _table(
        "refresh_tokens",
        "token_hash",
        "token_hash:text, session_id:text, created_at:time, expires_at:time, used_at:time",
    ),
    _table("rate_limits", "key, window_start", "key:text, window_start:time, hits:int"),
    _table(
        "audit_events",
        "id",
        "id:int, action:text, actor_id:text, subject_id:text, ip:text, data:json, created_at:time",
        identity=True,
    ),
    _table(
        "documents",
        "id",
        "id:text, title:text, owner_id:text, current_version:int, created_at:time, "
        "updated_at:time, deleted_at:time",
    ),
    _table(
        "document_versions",
        "document_id, version",
        "document_id:text, version:int, content_hash:text, filename:text, media_type:text, "
        "size_bytes:int, status:text, error:text, meta:json, created_at:time, file_sha256:text",
    ),
    _table(
        "document_chunks",
        "document_id, version, chunk_index",
        "document_id:text, version:int, chunk_index:int, text:text, page_start:int, "
        "page_end:int, char_start:int, char_end:int, heading:text, hash:text",
    ),
    _table("kb_blobs", "sha256", "sha256:text, data:bytes, size_bytes:int, created_at:time"),
    _table(
        "kb_embedding_cache",
        "embedder, dimensions, text_hash",
        "embedder:text, dimensions:int, text_hash:text, vector:bytes, created_at:time",
    ),
    _table(
        "kb_generations",
        "id",
        "id:text, status:text, embedder:text, dimensions:int, document_versions:json, "
        "chunk_count:int, metrics:json, error:text, job_id:text, created_at:time, "
        "updated_at:time",
    ),
    _table(
        "kb_lexical_indexes",
        "generation_id",
        "generation_id:text, indexer:text, tokenizer:text, chunk_ids:text, data:bytes",
    ),
    _table(
        "kb_active_generation", "singleton", "singleton:int, generation_id:text, updated_at:time"
    ),
    _table(
        "kb_golden_set",
        "id",
        "id:text, question:text, expected_document_id:text, expected_phrase:text, created_at:time",
    ),
    _table(
        "kb_searches",
        "id",
        "id:int, generation_id:text, user_id:text, query:text, k:int, result_count:int, "
        "top_score:float, embed_ms:float, search_ms:float, created_at:time",
        identity=True,
    ),
    _table(
        "jobs",
        "id",
        "id:text, kind:text, payload:json, status:text, progress:float, attempts:int, "
        "max_attempts:int, run_at:time, worker_id:text, lease_expires_at:time, error:text, "
        "result:json, owner_id:text, created_at:time, updated_at:time",
    ),
    _table(
        "avatar_sessions",
        "id",
        "id:text, owner_id:text, provider:text, provider_session_id:text, status:text, "
        "started_at:time, last_activity_at:time, expires_at:time, ended_at:time, "
        "cost_seconds:float, data:json",
    ),
    _table(
        "conversations",
        "id",
        "id:text, user_id:text, title:text, last_seq:int, created_at:time, updated_at:time",
    ),
    _table(
        "conversation_events",
        "conversation_id, seq",
        "conversation_id:text, seq:int, type:text, data:json, client_id:text, created_at:time",
    ),
)

TABLES_BY_NAME: Mapping[str, Table] = {table.name: table for table in TABLES}

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def canonical_time(value: datetime | str) -> str:
    """A timestamp from either driver as fixed-width ISO-8601 UTC text."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def _canonical(kind: Kind, value: Any) -> Any:
    if value is None:
        return None
    if kind == "time":
        return canonical_time(value)
    if kind == "bool":
        return bool(value)
    if kind == "json":
        return json.loads(value) if isinstance(value, str | bytes) else value
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode("ascii")
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    return str(value)


def _driver(kind: Kind, value: Any) -> Any:
    if value is None:
        return None
    if kind == "time":
        return datetime.fromisoformat(value)
    if kind == "json":
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if kind == "bytes":
        return base64.b64decode(value)
    return value


def canonical(table: Table, row: Mapping[str, Any]) -> dict[str, Any]:
    """A driver row as a record."""
    return {name: _canonical(kind, row[name]) for name, kind in table.columns}


def record_line(record: Mapping[str, Any]) -> bytes:
    """One record as one line of JSON (no newline), identical for equal records."""
    return json.dumps(record, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


async def read_records(conn: SqlConnection, table: Table) -> AsyncIterator[list[dict[str, Any]]]:
    """The table's records in primary-key order, in batches."""
    columns = ", ".join(table.column_names)
    order = ", ".join(table.key)
    offset = 0
    while True:
        rows = await conn.fetch(
            f"SELECT {columns} FROM {table.name} ORDER BY {order} "
            f"LIMIT {_READ_BATCH} OFFSET {offset}"
        )
        if not rows:
            return
        yield [canonical(table, row) for row in rows]
        offset += len(rows)


async def write_records(
    conn: SqlConnection, table: Table, records: Sequence[Mapping[str, Any]]
) -> None:
    """Insert records as they are (keys included)."""
    names = table.column_names
    width = len(names)
    per_statement = max(1, _MAX_PARAMETERS // width)
    overriding = (
        " OVERRIDING SYSTEM VALUE" if table.identity and conn.dialect.name == "postgresql" else ""
    )
    for start in range(0, len(records), per_statement):
        part = records[start : start + per_statement]
        values = ", ".join(
            "(" + ", ".join(f"${i * width + j + 1}" for j in range(width)) + ")"
            for i in range(len(part))
        )
        args = [_driver(kind, record.get(name)) for record in part for name, kind in table.columns]
        await conn.execute(
            f"INSERT INTO {table.name} ({', '.join(names)}){overriding} VALUES {values}",
            *args,
        )


async def after_load(conn: SqlConnection) -> None:
    """Move PostgreSQL's identity sequences past the loaded keys."""
    if conn.dialect.name != "postgresql":
        return
    for table in TABLES:
        if table.identity:
            await conn.fetchrow(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                f"COALESCE(MAX(id), 0) + 1, false) FROM {table.name}"
            )


@dataclass(slots=True)
class Digest:
    """Rows and SHA-256 of a table's record lines."""

    rows: int = 0
    sha256: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "sha256": self.sha256}


class _Hasher:
    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.rows = 0

    def add(self, line: bytes) -> None:
        self._hash.update(line)
        self._hash.update(b"\n")
        self.rows += 1

    def digest(self) -> Digest:
        return Digest(self.rows, self._hash.hexdigest())


#: called with each batch of records a walk reads (and their lines)
BatchHandler = Callable[[Table, list[dict[str, Any]], list[bytes]], Awaitable[None]]


async def walk_tables(conn: SqlConnection, each: BatchHandler | None = None) -> dict[str, Digest]:
    """Read every table in dependency order, hand each batch to ``each``, and return every
    table's digest."""
    digests: dict[str, Digest] = {}
    for table in TABLES:
        h = _Hasher()
        async for batch in read_records(conn, table):
            lines = [record_line(record) for record in batch]
            for line in lines:
                h.add(line)
            if each is not None:
                await each(table, batch, lines)
        digests[table.name] = h.digest()
    return digests


async def table_digests(conn: SqlConnection) -> dict[str, Digest]:
    """Every table's digest, read through ``conn``."""
    return await walk_tables(conn)


async def copy_tables(source: SqlConnection, target: SqlConnection) -> dict[str, Digest]:
    """Copy every table from ``source`` to ``target`` in dependency order; returns the digests
    of what was read (compare them with ``table_digests(target)`` afterwards)."""

    async def write(table: Table, batch: list[dict[str, Any]], _lines: list[bytes]) -> None:
        await write_records(target, table, batch)

    digests = await walk_tables(source, write)
    await after_load(target)
    return digests


async def row_counts(conn: SqlConnection) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in TABLES:
        row = await conn.fetchrow(f"SELECT COUNT(*) AS n FROM {table.name}")
        counts[table.name] = int(row["n"]) if row else 0
    return counts


async def applied_migrations(conn: SqlConnection) -> list[str]:
    """The applied migration versions, oldest first (empty when none)."""
    rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    return [str(row["version"]) for row in rows]


async def empty_tables(conn: SqlConnection) -> None:
    """Delete every row (children first), so a restore can load into a used database."""
    for table in reversed(TABLES):
        await conn.execute(f"DELETE FROM {table.name}")
