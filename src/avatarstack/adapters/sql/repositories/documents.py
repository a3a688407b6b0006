"""SQL repositories of the knowledge context, part one: documents, their versions and chunks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from avatarstack.adapters.sql.repositories._base import (
    _MAX_PARAMETERS,
    Columns,
    _dump,
    _model,
    _prefixed,
    _Repository,
    _rows,
)
from avatarstack.ports.errors import NotFoundError
from avatarstack.ports.storage import Document, DocumentVersion, StoredChunk

__all__ = ["SqlChunkRepository", "SqlDocumentRepository"]


class SqlDocumentRepository(_Repository):
    _COLUMNS = Columns(
        Document, "id, title, owner_id, current_version, created_at, updated_at, deleted_at"
    )
    _VERSION_COLUMNS = Columns(
        DocumentVersion,
        "document_id, version, content_hash, filename, media_type, size_bytes, status, error, "
        "meta, file_sha256, created_at",
        json=("meta",),
    )

    async def add(self, document: Document) -> None:
        await self._conn.execute(self._COLUMNS.insert("documents"), *self._COLUMNS.values(document))

    async def get(self, document_id: str) -> Document | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._COLUMNS} FROM documents WHERE id = $1 AND deleted_at IS NULL",
            document_id,
        )
        return self._COLUMNS.record(row) if row else None

    async def list(self, *, limit: int = 50, offset: int = 0) -> Sequence[Document]:
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM documents WHERE deleted_at IS NULL "
            "ORDER BY created_at, id LIMIT $1 OFFSET $2",
            limit,
            offset,
        )
        return [self._COLUMNS.record(row) for row in rows]

    async def set_current_version(self, document_id: str, version: int, now: datetime) -> None:
        changed = await self._conn.execute(
            "UPDATE documents SET current_version = $2, updated_at = $3 "
            "WHERE id = $1 AND deleted_at IS NULL",
            document_id,
            version,
            now,
        )
        if not changed:
            raise NotFoundError(f"document {document_id} does not exist")

    async def delete(self, document_id: str, now: datetime) -> bool:
        return bool(
            await self._conn.execute(
                "UPDATE documents SET deleted_at = $2, updated_at = $2 "
                "WHERE id = $1 AND deleted_at IS NULL",
                document_id,
                now,
            )
        )

    async def add_version(self, version: DocumentVersion) -> None:
        await self._conn.execute(
            self._VERSION_COLUMNS.insert("document_versions"),
            *self._VERSION_COLUMNS.values(version),
        )

    async def get_version(self, document_id: str, version: int) -> DocumentVersion | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._VERSION_COLUMNS} FROM document_versions "
            "WHERE document_id = $1 AND version = $2",
            document_id,
            version,
        )
        return self._VERSION_COLUMNS.record(row) if row else None

    async def list_versions(self, document_id: str) -> Sequence[DocumentVersion]:
        rows = await self._conn.fetch(
            f"SELECT {self._VERSION_COLUMNS} FROM document_versions "
            "WHERE document_id = $1 ORDER BY version",
            document_id,
        )
        return [self._VERSION_COLUMNS.record(row) for row in rows]

    async def find_version_by_hash(
        self, document_id: str, content_hash: str
    ) -> DocumentVersion | None:
        row = await self._conn.fetchrow(
            f"SELECT {self._VERSION_COLUMNS} FROM document_versions "
            "WHERE document_id = $1 AND content_hash = $2 ORDER BY version DESC LIMIT 1",
            document_id,
            content_hash,
        )
        return self._VERSION_COLUMNS.record(row) if row else None

    async def update_version_status(
        self,
        document_id: str,
        version: int,
        status: str,
        *,
        error: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        if meta is None:
            changed = await self._conn.execute(
                "UPDATE document_versions SET status = $3, error = $4 "
                "WHERE document_id = $1 AND version = $2",
                document_id,
                version,
                status,
                error,
            )
        else:
            changed = await self._conn.execute(
                "UPDATE document_versions SET status = $3, error = $4, meta = $5 "
                "WHERE document_id = $1 AND version = $2",
                document_id,
                version,
                status,
                error,
                _dump(meta),
            )
        if not changed:
            raise NotFoundError(f"document {document_id} has no version {version}")

    async def update_version(self, version: DocumentVersion) -> None:
        changed = await self._conn.execute(
            "UPDATE document_versions SET content_hash = $3, status = $4, error = $5, "
            "meta = $6, file_sha256 = $7 WHERE document_id = $1 AND version = $2",
            version.document_id,
            version.version,
            version.content_hash,
            version.status,
            version.error,
            _dump(version.meta),
            version.file_sha256,
        )
        if not changed:
            raise NotFoundError(f"document {version.document_id} has no version {version.version}")

    async def delete_version(self, document_id: str, version: int) -> bool:
        return bool(
            await self._conn.execute(
                "DELETE FROM document_versions WHERE document_id = $1 AND version = $2",
                document_id,
                version,
            )
        )

    async def _find_live_version(self, condition: str, value: str) -> DocumentVersion | None:
        row = await self._conn.fetchrow(
            f"SELECT {_prefixed('v', self._VERSION_COLUMNS)} FROM document_versions v "
            "JOIN documents d ON d.id = v.document_id "
            f"WHERE d.deleted_at IS NULL AND {condition} "
            "ORDER BY v.created_at DESC, v.version DESC, v.document_id DESC LIMIT 1",
            value,
        )
        return self._VERSION_COLUMNS.record(row) if row else None

    async def find_by_file(self, file_sha256: str) -> DocumentVersion | None:
        return await self._find_live_version(
            "v.file_sha256 = $1 AND v.status <> 'failed'", file_sha256
        )

    async def find_by_content(self, content_hash: str) -> DocumentVersion | None:
        return await self._find_live_version(
            "v.content_hash = $1 AND v.status = 'ready'", content_hash
        )

    async def list_current(self) -> Sequence[Document]:
        rows = await self._conn.fetch(
            f"SELECT {self._COLUMNS} FROM documents "
            "WHERE deleted_at IS NULL AND current_version IS NOT NULL ORDER BY created_at, id"
        )
        return [self._COLUMNS.record(row) for row in rows]

    async def count(self) -> int:
        row = await self._conn.fetchrow(
            "SELECT COUNT(*) AS n FROM documents WHERE deleted_at IS NULL"
        )
        return int(row["n"]) if row else 0


class SqlChunkRepository(_Repository):
    _COLUMNS = (
        "document_id, version, chunk_index, text, page_start, page_end, char_start, char_end, "
        "heading, hash"
    )
    _SELECT = (
        'document_id, version, chunk_index AS "index", text, page_start, page_end, '
        "char_start, char_end, heading, hash"
    )
    _WIDTH = 10
    _BATCH = _MAX_PARAMETERS // _WIDTH  # rows per INSERT

    async def add_many(self, chunks: Sequence[StoredChunk]) -> None:
        for start in range(0, len(chunks), self._BATCH):
            batch = chunks[start : start + self._BATCH]
            rows = _rows(self._WIDTH, len(batch))
            args: list[Any] = []
            for chunk in batch:
                args.extend(
                    (
                        chunk.document_id,
                        chunk.version,
                        chunk.index,
                        chunk.text,
                        chunk.page_start,
                        chunk.page_end,
                        chunk.char_start,
                        chunk.char_end,
                        chunk.heading,
                        chunk.hash,
                    )
                )
            await self._conn.execute(
                f"INSERT INTO document_chunks ({self._COLUMNS}) VALUES {rows}", *args
            )

    async def list_for_version(self, document_id: str, version: int) -> Sequence[StoredChunk]:
        rows = await self._conn.fetch(
            f"SELECT {self._SELECT} FROM document_chunks "
            "WHERE document_id = $1 AND version = $2 ORDER BY chunk_index",
            document_id,
            version,
        )
        return [_model(StoredChunk, row) for row in rows]

    async def delete_for_version(self, document_id: str, version: int) -> int:
        return await self._conn.execute(
            "DELETE FROM document_chunks WHERE document_id = $1 AND version = $2",
            document_id,
            version,
        )

    async def count_for_version(self, document_id: str, version: int) -> int:
        row = await self._conn.fetchrow(
            "SELECT COUNT(*) AS n FROM document_chunks WHERE document_id = $1 AND version = $2",
            document_id,
            version,
        )
        return int(row["n"]) if row else 0
