"""The ingestion job (``kb.ingest``): parse an uploaded version in the sandbox, normalise and
chunk it, drop it when it repeats content already there, store its chunks and fill the
embedding cache; with ``auto_activate`` a build follows."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from avatarstack.core.jobs import JobContext
from avatarstack.core.knowledge.embedding_cache import EmbeddingCache
from avatarstack.core.knowledge.generations import GenerationService
from avatarstack.core.knowledge.models import (
    DOCUMENTS_LOCK,
    KnowledgeConfig,
    ParseFunction,
    ParserChooser,
    index_title,
    text_hash,
)
from avatarstack.core.lexical import indexed_text
from avatarstack.core.text import (
    Chunk,
    ChunkerConfig,
    NormalisedPage,
    chunk_document,
    content_hash,
    document_text,
    normalise_pages,
)
from avatarstack.ports.clock import Clock
from avatarstack.ports.documents import DocumentParser, ParsedDocument
from avatarstack.ports.errors import InvalidInputError
from avatarstack.ports.storage import Document, DocumentVersion, KnowledgeStorage, StoredChunk

__all__ = ["IngestionService"]

log = structlog.get_logger("avatarstack.knowledge")


def _prepare(
    parsed: ParsedDocument, chunker: ChunkerConfig
) -> tuple[list[NormalisedPage], str, list[Chunk]]:
    """Normalise, hash and chunk a parsed document (refusing one without any text)."""
    pages = normalise_pages(parsed.pages)
    if not document_text(pages).strip():
        raise InvalidInputError(
            "no text could be extracted (a scanned document without a text layer?)"
        )
    return pages, content_hash(pages, parsed.parser, chunker), chunk_document(pages, chunker)


class IngestionService:
    """Runs ingestion jobs; one per application."""

    def __init__(
        self,
        storage: KnowledgeStorage,
        embeddings: EmbeddingCache,
        clock: Clock,
        generations: GenerationService,
        *,
        parsers: Sequence[DocumentParser],
        choose_parser: ParserChooser,
        parse: ParseFunction,
        config: KnowledgeConfig,
    ) -> None:
        self._storage = storage
        self._embeddings = embeddings
        self._clock = clock
        self._generations = generations
        self._parsers = {p.name: p for p in parsers}
        self._choose = choose_parser
        self._parse = parse
        self._config = config

    async def run_ingest(self, ctx: JobContext) -> Mapping[str, Any]:
        document_id = str(ctx.job.payload["document_id"])
        number = int(ctx.job.payload["version"])
        try:
            return await self._ingest(ctx, document_id, number)
        except Exception as exc:
            if ctx.fails_for_good(exc):
                await self._mark_failed(document_id, number, exc)
            raise

    async def _ingest(self, ctx: JobContext, document_id: str, number: int) -> Mapping[str, Any]:
        async with self._storage.unit_of_work() as uow:
            version = await uow.documents.get_version(document_id, number)
            document = await uow.documents.get(document_id)
            if version is None:
                raise InvalidInputError(f"version {number} of document {document_id} is gone")
            if version.status == "ready":  # a retry after the outcome was stored
                return {"document_id": document_id, "version": number, "status": "ready"}
            if document is None:
                raise InvalidInputError("the document was deleted before it was ingested")
            data = await uow.blobs.get(version.file_sha256 or "")
            await uow.documents.update_version(version.model_copy(update={"status": "processing"}))
            await uow.commit()
        if data is None:
            raise InvalidInputError("the uploaded file is no longer stored")
        parser = self._parsers.get(str(version.meta.get("parser"))) or self._choose(
            version.media_type, version.filename
        )
        await ctx.progress(0.05, "parsing")
        parsed = await self._parse(parser, data, version.filename)
        await ctx.progress(0.5, "chunking")
        chunker = self._config.chunker
        # CPU-bound pure Python: in a thread, so the event loop keeps serving meanwhile
        pages, digest, chunks = await asyncio.to_thread(_prepare, parsed, chunker)
        duplicate = await self._duplicate_of(document, number, digest)
        if duplicate is not None:
            return duplicate
        stored = [
            StoredChunk(
                document_id=document_id,
                version=number,
                index=c.index,
                text=c.text,
                page_start=c.page_start,
                page_end=c.page_end,
                char_start=c.char_start,
                char_end=c.char_end,
                heading=c.heading,
                hash=c.hash,
            )
            for c in chunks
        ]
        await ctx.progress(0.6, "embedding")
        title = index_title(document, version)
        if parsed.title and not version.meta.get("title"):
            title = " ".join(parsed.title.split()) or title
        texts = [indexed_text(title, c.heading, c.text) for c in stored]
        await self._embeddings.vectors([text_hash(t) for t in texts], texts, ctx, 0.6, 0.95)
        ctx.check()
        now = self._clock.now()
        meta = {
            **version.meta,
            "parser": parsed.parser,
            "pages": len(parsed.pages),
            "chunks": len(stored),
            "characters": sum(len(p.text) for p in pages),
        }
        if parsed.title and not version.meta.get("title"):
            meta["parsed_title"] = parsed.title
        async with self._storage.unit_of_work() as uow:
            await uow.lock(DOCUMENTS_LOCK)
            current = await uow.documents.get(document_id)
            await uow.chunks.delete_for_version(document_id, number)
            await uow.chunks.add_many(stored)
            await uow.documents.update_version(
                version.model_copy(
                    update={"status": "ready", "content_hash": digest, "meta": meta, "error": None}
                )
            )
            if current is not None and (current.current_version or 0) < number:
                await uow.documents.set_current_version(document_id, number, now)
            await uow.commit()
        log.info(
            "kb.document.ingested",
            document_id=document_id,
            version=number,
            pages=len(parsed.pages),
            chunks=len(stored),
        )
        result: dict[str, Any] = {
            "document_id": document_id,
            "version": number,
            "status": "ready",
            "pages": len(parsed.pages),
            "chunks": len(stored),
        }
        if self._config.auto_activate:
            _, job = await self._generations.start_build(
                owner_id=ctx.job.owner_id, activate="if_better"
            )
            result["build_job_id"] = job.id
        return result

    async def _duplicate_of(
        self, document: Document, number: int, digest: str
    ) -> Mapping[str, Any] | None:
        """Same normalised content as the current version (or, for a new document, as another
        document's ready version): the new version is dropped, the job points at the old one."""
        async with self._storage.unit_of_work() as uow:
            await uow.lock(DOCUMENTS_LOCK)
            existing: DocumentVersion | None = None
            if document.current_version is not None:
                current = await uow.documents.get_version(document.id, document.current_version)
                if current is not None and current.content_hash == digest:
                    existing = current
            elif number == 1:
                other = await uow.documents.find_by_content(digest)
                if other is not None and other.document_id != document.id:
                    existing = other
            if existing is None:
                return None
            await uow.documents.delete_version(document.id, number)
            if existing.document_id != document.id:
                await uow.documents.delete(document.id, self._clock.now())
            await uow.commit()
        log.info(
            "kb.document.duplicate",
            document_id=document.id,
            version=number,
            same_as=f"{existing.document_id}:{existing.version}",
        )
        return {
            "document_id": existing.document_id,
            "version": existing.version,
            "status": "ready",
            "duplicate": True,
        }

    async def _mark_failed(self, document_id: str, number: int, exc: Exception) -> None:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        try:
            async with self._storage.unit_of_work() as uow:
                version = await uow.documents.get_version(document_id, number)
                if version is not None and version.status != "ready":
                    await uow.documents.update_version(
                        version.model_copy(update={"status": "failed", "error": reason[:500]})
                    )
                    await uow.commit()
        except Exception:  # the job records the failure anyway
            log.exception("kb.document.mark_failed_error", document_id=document_id)
        log.warning("kb.document.failed", document_id=document_id, version=number, reason=reason)
