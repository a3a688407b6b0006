"""Documents and their versions: uploads (queued for ingestion), listings, restoring an older
version and deleting a document. Ingestion itself is :mod:`.ingestion`."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence
from pathlib import PurePath

import structlog

from avatarstack.core.knowledge.jobs import KnowledgeJobs
from avatarstack.core.knowledge.models import (
    DOCUMENTS_LOCK,
    INGEST_JOB,
    KnowledgeServiceStorage,
    ParserChooser,
    Upload,
    safe_filename,
)
from avatarstack.ports.clock import Clock
from avatarstack.ports.documents import DocumentParser
from avatarstack.ports.errors import ConflictError, FieldError, InvalidInputError, NotFoundError
from avatarstack.ports.storage import Document, DocumentVersion, Job, JobUnitOfWork, new_id

__all__ = ["DocumentService"]

log = structlog.get_logger("avatarstack.knowledge")

_MAX_TITLE = 300


def _clean_title(title: str | None, filename: str) -> str:
    text = " ".join("".join(c for c in (title or "") if unicodedata.category(c)[0] != "C").split())
    if not text:
        text = PurePath(filename).stem or filename
    return text[:_MAX_TITLE]


class DocumentService:
    """Use cases of documents and their versions."""

    def __init__(
        self,
        storage: KnowledgeServiceStorage,
        clock: Clock,
        jobs: KnowledgeJobs,
        *,
        choose_parser: ParserChooser,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._jobs = jobs
        self._choose = choose_parser

    async def upload(
        self,
        data: bytes,
        *,
        filename: str | None,
        media_type: str | None,
        title: str | None = None,
        owner_id: str | None = None,
        document_id: str | None = None,
    ) -> Upload:
        """Store an uploaded file and queue its ingestion (as a new document, or as the next
        version of ``document_id``). The same bytes as the current (or a pending) version give
        that version back with ``created=False``."""
        name = safe_filename(filename)
        if not data:
            raise InvalidInputError(
                "the file is empty", [FieldError(field="file", message="empty")]
            )
        parser = self._choose(media_type, name)
        kind = self._sniff(parser, data)
        sha = hashlib.sha256(data).hexdigest()
        now = self._clock.now()
        async with self._storage.unit_of_work() as uow:
            await uow.lock(DOCUMENTS_LOCK)
            if document_id is not None:
                document = await uow.documents.get(document_id)
                if document is None:
                    raise NotFoundError("document not found")
                versions = await uow.documents.list_versions(document_id)
                same = self._same_file(document, versions, sha)
                if same is not None:
                    return Upload(document, same, await self._job_of(uow, same), created=False)
                number = max((v.version for v in versions), default=0) + 1
            else:
                existing = await uow.documents.find_by_file(sha)
                if existing is not None:
                    document = await uow.documents.get(existing.document_id)
                    if document is not None and self._is_live(document, existing):
                        job = await self._job_of(uow, existing)
                        return Upload(document, existing, job, created=False)
                document = Document(
                    id=new_id(),
                    title=_clean_title(title, name),
                    owner_id=owner_id,
                    created_at=now,
                    updated_at=now,
                )
                await uow.documents.add(document)
                number = 1
            job = self._jobs.new(
                INGEST_JOB, {"document_id": document.id, "version": number}, owner_id
            )
            version = DocumentVersion(
                document_id=document.id,
                version=number,
                content_hash="",
                filename=name,
                media_type=kind,
                size_bytes=len(data),
                status="queued",
                file_sha256=sha,
                meta={"parser": parser.name, "job_id": job.id, "title": title},
                created_at=now,
            )
            await uow.blobs.put(sha, data, now)
            await uow.documents.add_version(version)
            await uow.jobs.enqueue(job)
            await uow.commit()
        self._jobs.queued(job)
        log.info(
            "kb.document.uploaded",
            document_id=document.id,
            version=number,
            size=len(data),
            parser=parser.name,
            job_id=job.id,
        )
        return Upload(document, version, job, created=True)

    @staticmethod
    def _sniff(parser: DocumentParser, data: bytes) -> str:
        """The media type to record; a file that claims to be a PDF must look like one."""
        media = parser.media_types[0] if parser.media_types else "application/octet-stream"
        if media == "application/pdf" and b"%PDF-" not in data[:1024]:
            raise InvalidInputError(
                "the file is not a PDF (no %PDF- header); upload the document itself",
                [FieldError(field="file", message="not a PDF")],
            )
        return media

    @staticmethod
    def _is_live(document: Document, version: DocumentVersion) -> bool:
        """The current version, or one still being ingested."""
        return version.version == document.current_version or version.status in {
            "queued",
            "processing",
        }

    def _same_file(
        self, document: Document, versions: Sequence[DocumentVersion], sha: str
    ) -> DocumentVersion | None:
        for version in reversed(versions):
            if version.file_sha256 == sha and self._is_live(document, version):
                return version
        return None

    @staticmethod
    async def _job_of(uow: JobUnitOfWork, version: DocumentVersion) -> Job | None:
        job_id = version.meta.get("job_id")
        return await uow.jobs.get(job_id) if isinstance(job_id, str) else None

    async def list_documents(
        self, *, limit: int = 50, offset: int = 0
    ) -> tuple[list[Document], int]:
        async with self._storage.unit_of_work() as uow:
            documents = list(await uow.documents.list(limit=limit, offset=offset))
            total = await uow.documents.count()
        return documents, total

    async def get_document(self, document_id: str) -> tuple[Document, list[DocumentVersion]]:
        async with self._storage.unit_of_work() as uow:
            document = await uow.documents.get(document_id)
            if document is None:
                raise NotFoundError("document not found")
            versions = list(await uow.documents.list_versions(document_id))
        return document, versions

    async def restore(self, document_id: str, number: int) -> tuple[Document, DocumentVersion]:
        """Make version ``number`` current again as a new version (its chunks are copied; no
        parsing). Only a ``ready`` version can be restored."""
        now = self._clock.now()
        async with self._storage.unit_of_work() as uow:
            await uow.lock(DOCUMENTS_LOCK)
            document = await uow.documents.get(document_id)
            if document is None:
                raise NotFoundError("document not found")
            source = await uow.documents.get_version(document_id, number)
            if source is None:
                raise NotFoundError(f"version {number} not found")
            if source.status != "ready":
                raise ConflictError(
                    f"version {number} is {source.status}; only a ready version can be restored"
                )
            versions = await uow.documents.list_versions(document_id)
            new_number = max(v.version for v in versions) + 1
            restored = source.model_copy(
                update={
                    "version": new_number,
                    "created_at": now,
                    "meta": {**source.meta, "restored_from": number, "job_id": None},
                }
            )
            await uow.documents.add_version(restored)
            chunks = await uow.chunks.list_for_version(document_id, number)
            await uow.chunks.add_many(
                [c.model_copy(update={"version": new_number}) for c in chunks]
            )
            await uow.documents.set_current_version(document_id, new_number, now)
            await uow.commit()
            document = await uow.documents.get(document_id) or document
        log.info("kb.document.restored", document_id=document_id, source=number, version=new_number)
        return document, restored

    async def delete_document(self, document_id: str) -> None:
        """Soft delete: the document leaves listings and search results at once, and the next
        generation no longer contains it."""
        async with self._storage.unit_of_work() as uow:
            if not await uow.documents.delete(document_id, self._clock.now()):
                raise NotFoundError("document not found")
            await uow.commit()
        log.info("kb.document.deleted", document_id=document_id)
