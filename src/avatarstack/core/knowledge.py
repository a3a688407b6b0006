"""The knowledge base: document versions, ingestion, index generations, search and evaluation.

Concepts (see ``docs/knowledge.md``):

* a **document** has immutable **versions**; a version is identified by a content hash over its
  normalised text, the parser and the chunker configuration. Uploading the same bytes again
  returns the existing version; a changed file becomes version n+1 once it parsed. A version
  that fails to parse is recorded as ``failed`` with a reason, and the current version stays.
* **ingestion** (a durable job, ``kb.ingest``) parses the file in a child process, normalises
  and chunks it, stores the chunks and fills the embedding cache;
* an **index generation** (job ``kb.build``) is built from the current version of every
  document into its own vector index, validated and evaluated; **activation** moves one pointer
  in storage, so searches always hit exactly one generation; rollback activates an older one;
* the **golden set** (questions with the expected document and/or phrase) scores each
  generation with hit rate, recall@k and MRR, and can gate automatic activation.

Everything here talks to ports only; the composition root injects the parse function (the
child-process sandbox), the parser chooser, the vector store and the embedder.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Protocol

import structlog
from pydantic import BaseModel, ConfigDict, Field

from avatarstack.core.evaluation import first_relevant_rank, phrase_key, rank_figures
from avatarstack.core.jobs import JobContext, new_job
from avatarstack.core.lexical import (
    TOKENIZER_VERSION,
    Candidate,
    channel_names,
    chunk_tokens,
    expand,
    fuse,
    indexed_text,
    normalised_dense,
    normalised_lexical,
    query_tokens,
    related_terms,
)
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
from avatarstack.ports.embeddings import Embedder
from avatarstack.ports.errors import (
    AvatarstackError,
    ConflictError,
    FieldError,
    InvalidInputError,
    NotFoundError,
)
from avatarstack.ports.knowledge import IndexedChunk, KnowledgeStore, SearchHit
from avatarstack.ports.lexical import LexicalIndex, LexicalIndexer
from avatarstack.ports.storage import (
    Document,
    DocumentVersion,
    GoldenQuestion,
    IndexGeneration,
    Job,
    JobUnitOfWork,
    KnowledgeUnitOfWork,
    SearchRecord,
    StoredChunk,
    StoredLexicalIndex,
    new_id,
)

__all__ = [
    "BUILD_JOB",
    "INGEST_JOB",
    "GoldenMetrics",
    "KnowledgeConfig",
    "KnowledgeService",
    "KnowledgeServiceStorage",
    "KnowledgeServiceUnitOfWork",
    "SearchObserver",
    "SearchResult",
    "Upload",
    "chunk_id",
    "safe_filename",
]

log = structlog.get_logger("avatarstack.knowledge")

INGEST_JOB = "kb.ingest"
BUILD_JOB = "kb.build"
#: the lock every change to document version numbers takes (PostgreSQL advisory lock)
_DOCUMENTS_LOCK = "kb:documents"
_GENERATIONS_LOCK = "kb:generations"
_MAX_FILENAME = 200
_MAX_TITLE = 300
_MAX_QUERY = 2000
_MAX_GOLDEN = 500

ParseFunction = Callable[[DocumentParser, bytes, str], Awaitable[ParsedDocument]]
ParserChooser = Callable[[str | None, str], DocumentParser]


class SearchObserver(Protocol):
    """Receives every search's figures (the HTTP adapter turns them into Prometheus metrics)."""

    def observe_search(
        self,
        generation_id: str,
        *,
        embed_seconds: float,
        search_seconds: float,
        top_score: float | None,
        empty: bool,
    ) -> None: ...


class KnowledgeConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    chunker: ChunkerConfig = Field(default_factory=ChunkerConfig)
    keep_generations: int = Field(default=5, ge=1)
    auto_activate: bool = False
    search_k: int = Field(default=5, ge=1)
    max_k: int = Field(default=50, ge=1)
    #: how many results of each golden question count (hit@k, recall@k)
    eval_k: int = Field(default=10, ge=1)
    embed_batch: int = Field(default=256, ge=1)
    index_batch: int = Field(default=1000, ge=1)
    #: how many times a job is tried before it fails for good
    job_attempts: int = Field(default=3, ge=1)
    #: weight of the dense channel in the fused score (the lexical channel gets the rest)
    dense_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    #: how many results each channel contributes to the fusion (at least the ``k`` asked for)
    candidates: int = Field(default=50, ge=1)
    #: lexical indexes kept loaded in memory per instance (the active one and a previous one)
    lexical_cache: int = Field(default=2, ge=1)
    #: everyday equivalents added to the built-in table (a word → space-separated words)
    related_terms: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True)
class Upload:
    """The outcome of an upload: ``created`` False means the same file was already there."""

    document: Document
    version: DocumentVersion
    job: Job | None
    created: bool


@dataclass(frozen=True)
class GoldenQuestionInput:
    """One question of a golden set to store (:meth:`KnowledgeService.set_golden_set`): the
    question, and the document and/or phrase a good answer finds. ``id`` keeps the caller's id;
    None makes a new one. The service normalises the texts and checks the rest."""

    question: str
    expected_document_id: str | None = None
    expected_phrase: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class SearchResult:
    generation_id: str | None
    hits: list[SearchHit]
    embed_ms: float = 0.0
    search_ms: float = 0.0


class GoldenMetrics(BaseModel):
    """Scores of one generation on the golden set (all 0..1)."""

    k: int
    questions: int
    hit_at_1: float
    hit_at_k: float
    recall_at_k: float
    mrr: float
    missed: list[str] = Field(default_factory=list, description="ids of questions with no hit")
    evaluated_at: str


@dataclass
class _Relevance:
    question: GoldenQuestion
    phrase: str | None = None
    relevant: set[str] = field(default_factory=set)


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


async def _generation_chunks(
    uow: KnowledgeUnitOfWork, generation: IndexGeneration
) -> list[StoredChunk]:
    """The stored chunks of the document versions a generation is built from."""
    chunks: list[StoredChunk] = []
    for document_id, number in sorted(generation.document_versions.items()):
        chunks.extend(await uow.chunks.list_for_version(document_id, number))
    return chunks


def index_title(document: Document | None, version: DocumentVersion | None) -> str:
    """The title carried into every chunk's indexed text: the title given at upload, else the
    title in the file's metadata, else the document's title (from the file name)."""
    meta = version.meta if version is not None else {}
    for candidate in (meta.get("title"), meta.get("parsed_title")):
        if isinstance(candidate, str) and candidate.strip():
            return " ".join(candidate.split())
    return document.title if document is not None else ""


async def _titles(uow: KnowledgeUnitOfWork, chunks: Sequence[StoredChunk]) -> list[str]:
    """Each chunk's document title (see :func:`index_title`)."""
    titles: dict[tuple[str, int], str] = {}
    for key in dict.fromkeys((c.document_id, c.version) for c in chunks):
        document = await uow.documents.get(key[0])
        version = await uow.documents.get_version(*key)
        titles[key] = index_title(document, version)
    return [titles[(c.document_id, c.version)] for c in chunks]


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class _LoadedLexical:
    index: LexicalIndex
    chunk_ids: list[str]
    positions: dict[str, int]


def chunk_id(document_id: str, version: int, index: int) -> str:
    """Stable across generations: citations keep pointing at the same chunk."""
    return f"{document_id}:{version}:{index}"


def safe_filename(name: str | None) -> str:
    """The last path component with control and format characters removed (no traversal, no
    terminal tricks), NFC, at most 200 characters; ``upload`` when nothing is left."""
    text = unicodedata.normalize("NFC", name or "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C").strip()
    if text in {"", ".", ".."}:
        return "upload"
    if len(text) > _MAX_FILENAME:
        suffix = PurePath(text).suffix[:20]
        text = text[: _MAX_FILENAME - len(suffix)] + suffix
    return text


def _clean_title(title: str | None, filename: str) -> str:
    text = " ".join("".join(c for c in (title or "") if unicodedata.category(c)[0] != "C").split())
    if not text:
        text = PurePath(filename).stem or filename
    return text[:_MAX_TITLE]


_phrase_key = phrase_key


class KnowledgeServiceUnitOfWork(KnowledgeUnitOfWork, JobUnitOfWork, Protocol):
    """The knowledge repositories and the job queue (ingest and build jobs are enqueued in the
    transaction that records the upload or the generation)."""


class KnowledgeServiceStorage(Protocol):
    """What :class:`KnowledgeService` needs of a storage (a full ``Storage`` is one)."""

    def unit_of_work(self) -> AbstractAsyncContextManager[KnowledgeServiceUnitOfWork]: ...


class KnowledgeService:
    """Use cases of the knowledge base. One instance per application; no global state."""

    def __init__(
        self,
        storage: KnowledgeServiceStorage,
        store: KnowledgeStore,
        embedder: Embedder,
        clock: Clock,
        *,
        parsers: Sequence[DocumentParser],
        choose_parser: ParserChooser,
        parse: ParseFunction,
        config: KnowledgeConfig | None = None,
        observer: SearchObserver | None = None,
        lexical: LexicalIndexer | None = None,
    ) -> None:
        self._storage = storage
        self._store = store
        self._embedder = embedder
        self._clock = clock
        self._parsers = {p.name: p for p in parsers}
        self._choose = choose_parser
        self._parse = parse
        self.config = config or KnowledgeConfig()
        self._related = related_terms(self.config.related_terms)
        self._observer = observer
        self._lexical_indexer = lexical
        self._lexical: OrderedDict[str, _LoadedLexical | None] = OrderedDict()
        self._lexical_lock = asyncio.Lock()
        self._job_listeners: list[Callable[[Job], None]] = []

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    @property
    def store(self) -> KnowledgeStore:
        return self._store

    def on_job_queued(self, listener: Callable[[Job], None]) -> None:
        """Call ``listener`` after this service queued a job (e.g. to wake a local worker)."""
        self._job_listeners.append(listener)

    def _queued(self, job: Job) -> None:
        for listener in self._job_listeners:
            listener(job)

    def job_handlers(
        self,
    ) -> dict[str, Callable[[JobContext], Awaitable[Mapping[str, Any] | None]]]:
        return {INGEST_JOB: self.run_ingest, BUILD_JOB: self.run_build}

    # ------------------------------------------------------------------ startup

    async def check_embedder(self) -> None:
        """Refuse to run when the active generation was built by another embedder: its vectors
        would be compared with incompatible query vectors."""
        async with self._storage.unit_of_work() as uow:
            active = await uow.generations.get_active()
        if active is None:
            return
        self._require_own_embedder(
            active,
            ConflictError,
            f"the active index generation {active.id} was built with embedder "
            f"{active.embedder!r} ({active.dimensions} dimensions) but the configured "
            f"embedder is {self._embedder.name!r} ({self._embedder.dimensions} dimensions); "
            "set AVATARSTACK_KB__EMBEDDER back, or build and activate a new generation with "
            "`avatarstack kb build --activate`",
        )

    # ------------------------------------------------------------------ documents

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
            await uow.lock(_DOCUMENTS_LOCK)
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
            job = self._job(INGEST_JOB, {"document_id": document.id, "version": number}, owner_id)
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
        self._queued(job)
        log.info(
            "kb.document.uploaded",
            document_id=document.id,
            version=number,
            size=len(data),
            parser=parser.name,
            job_id=job.id,
        )
        return Upload(document, version, job, created=True)

    def _job(self, kind: str, payload: dict[str, Any], owner_id: str | None) -> Job:
        return new_job(
            kind,
            payload,
            self._clock.now(),
            owner_id=owner_id,
            max_attempts=self.config.job_attempts,
        )

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
            await uow.lock(_DOCUMENTS_LOCK)
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

    async def get_job(self, job_id: str) -> Job:
        async with self._storage.unit_of_work() as uow:
            job = await uow.jobs.get(job_id)
        if job is None or job.kind not in {INGEST_JOB, BUILD_JOB}:
            raise NotFoundError("job not found")
        return job

    async def list_jobs(self, *, limit: int = 50) -> Sequence[Job]:
        """The most recent ingestion and build jobs of every owner, newest first."""
        async with self._storage.unit_of_work() as uow:
            return await uow.jobs.list_recent(kinds=(INGEST_JOB, BUILD_JOB), limit=limit)

    # ------------------------------------------------------------------ ingestion job

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
        chunker = self.config.chunker
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
        await self._embed_cached([_text_hash(t) for t in texts], texts, ctx, 0.6, 0.95)
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
            await uow.lock(_DOCUMENTS_LOCK)
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
        if self.config.auto_activate:
            _, job = await self.start_build(owner_id=ctx.job.owner_id, activate="if_better")
            result["build_job_id"] = job.id
        return result

    async def _duplicate_of(
        self, document: Document, number: int, digest: str
    ) -> Mapping[str, Any] | None:
        """Same normalised content as the current version (or, for a new document, as another
        document's ready version): the new version is dropped, the job points at the old one."""
        async with self._storage.unit_of_work() as uow:
            await uow.lock(_DOCUMENTS_LOCK)
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

    async def _embed_cached(
        self,
        hashes: Sequence[str],
        texts: Sequence[str],
        ctx: JobContext | None,
        start: float,
        end: float,
    ) -> dict[str, list[float]]:
        """Vectors for the texts, from the embedding cache where possible; misses are embedded
        in batches and stored. Progress moves from ``start`` to ``end``."""
        name, dims = self._embedder.name, self._embedder.dimensions
        wanted = list(dict.fromkeys(hashes))
        async with self._storage.unit_of_work() as uow:
            vectors = await uow.embeddings.get_many(name, dims, wanted)
        text_of = dict(zip(hashes, texts, strict=True))
        missing = [h for h in wanted if h not in vectors]
        batch = self.config.embed_batch
        for offset in range(0, len(missing), batch):
            keys = missing[offset : offset + batch]
            embedded = await self._embedder.embed([text_of[k] for k in keys])
            fresh = dict(zip(keys, embedded, strict=True))
            self._check_vectors(fresh.values())
            async with self._storage.unit_of_work() as uow:
                await uow.embeddings.put_many(name, dims, fresh, self._clock.now())
                await uow.commit()
            vectors.update(fresh)
            if ctx is not None:
                done = (offset + len(keys)) / len(missing)
                await ctx.progress(start + (end - start) * done, "embedding")
        return vectors

    def _check_vectors(self, vectors: Any) -> None:
        for vector in vectors:
            if len(vector) != self._embedder.dimensions:
                raise InvalidInputError(
                    f"embedder {self._embedder.name!r} returned {len(vector)} dimensions, "
                    f"expected {self._embedder.dimensions}"
                )

    # ------------------------------------------------------------------ generations

    async def start_build(
        self, *, owner_id: str | None = None, activate: str = "no"
    ) -> tuple[IndexGeneration, Job]:
        """Record a ``building`` generation over the current version of every document and
        queue its build. ``activate``: ``no``, ``yes`` or ``if_better`` (golden set gate)."""
        if activate not in {"no", "yes", "if_better"}:
            raise ValueError("activate must be no, yes or if_better")
        now = self._clock.now()
        async with self._storage.unit_of_work() as uow:
            documents = await uow.documents.list_current()
            if not documents:
                raise ConflictError("there are no ingested documents to build an index from")
            generation = IndexGeneration(
                id=new_id(),
                embedder=self._embedder.name,
                dimensions=self._embedder.dimensions,
                document_versions={
                    d.id: d.current_version for d in documents if d.current_version is not None
                },
                created_at=now,
                updated_at=now,
            )
            job = self._job(
                BUILD_JOB, {"generation_id": generation.id, "activate": activate}, owner_id
            )
            generation = generation.model_copy(update={"job_id": job.id})
            await uow.generations.add(generation)
            await uow.jobs.enqueue(job)
            await uow.commit()
        self._queued(job)
        log.info("kb.generation.queued", generation_id=generation.id, documents=len(documents))
        return generation, job

    async def run_build(self, ctx: JobContext) -> Mapping[str, Any]:
        generation_id = str(ctx.job.payload["generation_id"])
        activate = str(ctx.job.payload.get("activate", "no"))
        try:
            return await self._build(ctx, generation_id, activate)
        except Exception as exc:
            if ctx.fails_for_good(exc):
                await self._fail_generation(generation_id, exc)
            raise

    async def _build(self, ctx: JobContext, generation_id: str, activate: str) -> Mapping[str, Any]:
        async with self._storage.unit_of_work() as uow:
            generation = await uow.generations.get(generation_id)
            if generation is None:
                raise InvalidInputError(f"generation {generation_id} is gone")
            if generation.status == "ready":
                return {"generation_id": generation_id, "status": "ready"}
            chunks = await _generation_chunks(uow, generation)
            titles = await _titles(uow, chunks)
        texts = [indexed_text(t, c.heading, c.text) for t, c in zip(titles, chunks, strict=True)]
        hashes = [_text_hash(t) for t in texts]
        self._require_own_embedder(
            generation,
            InvalidInputError,
            f"generation {generation_id} is for embedder {generation.embedder!r}, this "
            f"worker embeds with {self._embedder.name!r}",
        )
        await ctx.progress(0.02, "embedding")
        vectors = await self._embed_cached(hashes, texts, ctx, 0.02, 0.6)
        await self._fill_index(generation, chunks, titles, hashes, vectors, ctx)
        if self._lexical_indexer is not None:
            await ctx.progress(0.86, "lexical index")
            indexer = self._lexical_indexer
            data = await asyncio.to_thread(lambda: indexer.build([chunk_tokens(t) for t in texts]))
            async with self._storage.unit_of_work() as uow:
                await uow.generations.put_lexical(
                    StoredLexicalIndex(
                        generation_id=generation_id,
                        indexer=indexer.name,
                        tokenizer=TOKENIZER_VERSION,
                        chunk_ids=[chunk_id(c.document_id, c.version, c.index) for c in chunks],
                        data=data,
                    )
                )
                await uow.commit()
            self._lexical.pop(generation_id, None)  # a retried build: load the new bytes
        await ctx.progress(0.92, "evaluating")
        metrics: dict[str, Any] = {"chunks": len(chunks), "built_at": self._clock.now().isoformat()}
        golden = await self._evaluate_index(generation_id, generation, chunks)
        if golden is not None:
            metrics["golden"] = golden.model_dump()
        async with self._storage.unit_of_work() as uow:
            current = await uow.generations.get(generation_id) or generation
            await uow.generations.update(
                current.model_copy(
                    update={
                        "status": "ready",
                        "chunk_count": len(chunks),
                        "metrics": {**current.metrics, **metrics},
                        "error": None,
                        "updated_at": self._clock.now(),
                    }
                )
            )
            await uow.commit()
        log.info("kb.generation.built", generation_id=generation_id, chunks=len(chunks))
        result: dict[str, Any] = {
            "generation_id": generation_id,
            "status": "ready",
            "chunks": len(chunks),
        }
        if activate == "yes" or (activate == "if_better" and await self._no_regression(golden)):
            await self.activate(generation_id)
            result["activated"] = True
        else:
            result["activated"] = False
        await self.prune()
        return result

    def _require_own_embedder(
        self, generation: IndexGeneration, error: type[AvatarstackError], message: str
    ) -> None:
        """Raise ``error(message)`` unless the configured embedder made (and can extend) this
        generation's vectors: the same embedder name and the same dimensions. The one check
        behind startup (``check_embedder``), builds, index restores and activation."""
        if (generation.embedder, generation.dimensions) != (
            self._embedder.name,
            self._embedder.dimensions,
        ):
            raise error(message)

    async def _fill_index(
        self,
        generation: IndexGeneration,
        chunks: Sequence[StoredChunk],
        titles: Sequence[str | None],
        hashes: Sequence[str],
        vectors: Mapping[str, list[float]],
        ctx: JobContext | None,
    ) -> None:
        """(Re)create the generation's vector index from its chunks (with their documents'
        titles and the hashes of their indexed texts, which key ``vectors``) and check what it
        holds."""
        generation_id = generation.id
        await self._store.drop(generation_id)  # a retry starts from an empty index
        await self._store.create(
            generation_id, embedder=generation.embedder, dimensions=generation.dimensions
        )
        batch = self.config.index_batch
        for offset in range(0, len(chunks), batch):
            part = chunks[offset : offset + batch]
            part_hashes = hashes[offset : offset + batch]
            part_titles = titles[offset : offset + batch]
            await self._store.add(
                generation_id,
                [
                    IndexedChunk(
                        chunk_id=chunk_id(c.document_id, c.version, c.index),
                        document_id=c.document_id,
                        version=c.version,
                        page_start=c.page_start,
                        page_end=c.page_end,
                        text=c.text,
                        embedding=vectors[h],
                        title=t,
                        heading=c.heading,
                    )
                    for c, h, t in zip(part, part_hashes, part_titles, strict=True)
                ],
            )
            if ctx is not None:
                await ctx.progress(0.6 + 0.25 * (offset + len(part)) / len(chunks), "indexing")
        info = await self._store.describe(generation_id)
        if info is None or info.count != len(chunks) or info.dimensions != generation.dimensions:
            raise InvalidInputError(
                f"validation failed: the index holds {info.count if info else 0} vectors of "
                f"{info.dimensions if info else 0} dimensions, expected {len(chunks)} of "
                f"{generation.dimensions}"
            )

    async def index_matches(self, generation_id: str) -> bool:
        """Whether the vector index of a ``ready`` generation holds exactly its chunks."""
        async with self._storage.unit_of_work() as uow:
            generation = await uow.generations.get(generation_id)
        if generation is None:
            raise NotFoundError("generation not found")
        info = await self._store.describe(generation_id)
        return (
            info is not None
            and info.count == generation.chunk_count
            and info.dimensions == generation.dimensions
        )

    async def restore_index(self, generation_id: str) -> int:
        """Rebuild the vector index of a ``ready`` generation from what the database keeps
        (its chunks and their cached embeddings), leaving the generation as it is: after a
        restore, or a move to another Chroma. Embeddings missing from the cache are computed,
        which needs the generation's embedder. Returns the number of vectors."""
        async with self._storage.unit_of_work() as uow:
            generation = await uow.generations.get(generation_id)
            if generation is None:
                raise NotFoundError("generation not found")
            if generation.status != "ready":
                raise ConflictError(
                    f"generation {generation_id} is {generation.status}; only ready ones are "
                    "restored"
                )
            chunks = await _generation_chunks(uow, generation)
            titles = await _titles(uow, chunks)
            texts = [
                indexed_text(t, c.heading, c.text) for t, c in zip(titles, chunks, strict=True)
            ]
            hashes = [_text_hash(t) for t in texts]
            vectors = await uow.embeddings.get_many(
                generation.embedder, generation.dimensions, hashes
            )
        missing = [(h, t) for h, t in zip(hashes, texts, strict=True) if h not in vectors]
        if missing:
            self._require_own_embedder(
                generation,
                ConflictError,
                f"generation {generation_id} needs {len(missing)} embeddings from embedder "
                f"{generation.embedder!r} that are not cached; the configured embedder is "
                f"{self._embedder.name!r}",
            )
            vectors.update(
                await self._embed_cached(
                    [h for h, _ in missing], [t for _, t in missing], None, 0.0, 1.0
                )
            )
        await self._fill_index(generation, chunks, titles, hashes, vectors, None)
        log.info("kb.generation.index_restored", generation_id=generation_id, chunks=len(chunks))
        return len(chunks)

    async def _fail_generation(self, generation_id: str, exc: Exception) -> None:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        async with self._storage.unit_of_work() as uow:
            generation = await uow.generations.get(generation_id)
            if generation is not None and generation.status == "building":
                await uow.generations.update(
                    generation.model_copy(
                        update={
                            "status": "failed",
                            "error": reason[:500],
                            "updated_at": self._clock.now(),
                        }
                    )
                )
                await uow.commit()
        try:
            await self._store.drop(generation_id)
        except Exception:
            log.warning("kb.generation.drop_failed", generation_id=generation_id)
        log.warning("kb.generation.failed", generation_id=generation_id, reason=reason)

    async def _no_regression(self, candidate: GoldenMetrics | None) -> bool:
        """True when there is nothing to compare with, or the candidate scores at least as well
        as the active generation on the current golden set (hit@k and recall@k not lower, MRR
        not lower by more than 0.01)."""
        async with self._storage.unit_of_work() as uow:
            active = await uow.generations.get_active()
        if active is None:
            return True
        if candidate is None:
            return True
        baseline = await self._evaluate_index(active.id)
        if baseline is None:
            return True
        better = (
            candidate.hit_at_k >= baseline.hit_at_k - 1e-9
            and candidate.recall_at_k >= baseline.recall_at_k - 1e-9
            and candidate.mrr >= baseline.mrr - 0.01
        )
        log.info(
            "kb.generation.gate",
            candidate_mrr=candidate.mrr,
            baseline_mrr=baseline.mrr,
            passed=better,
        )
        return better

    async def list_generations(
        self, *, limit: int = 50
    ) -> tuple[list[IndexGeneration], str | None]:
        async with self._storage.unit_of_work() as uow:
            generations = list(await uow.generations.list(limit=limit))
            active = await uow.generations.get_active()
        return generations, active.id if active else None

    async def get_generation(
        self, generation_id: str
    ) -> tuple[IndexGeneration, bool, dict[str, Any]]:
        """The generation, whether it is active, and its search figures."""
        async with self._storage.unit_of_work() as uow:
            generation = await uow.generations.get(generation_id)
            if generation is None:
                raise NotFoundError("generation not found")
            active = await uow.generations.get_active()
            summary = await uow.searches.summary(generation_id)
        return generation, active is not None and active.id == generation_id, summary.model_dump()

    async def activate(self, generation_id: str) -> IndexGeneration:
        """Point searches at this generation (one transactional switch); rollback = activate an
        older generation."""
        async with self._storage.unit_of_work() as uow:
            generation = await uow.generations.get(generation_id)
        if generation is None:
            raise NotFoundError("generation not found")
        self._require_own_embedder(
            generation,
            ConflictError,
            f"generation {generation_id} was built with embedder {generation.embedder!r}; "
            f"the configured embedder is {self._embedder.name!r}",
        )
        if generation.status == "ready":
            info = await self._store.describe(generation_id)
            if info is None or info.count != generation.chunk_count:
                raise ConflictError(
                    f"the index of generation {generation_id} is missing or incomplete; "
                    "build a new one"
                )
        async with self._storage.unit_of_work() as uow:
            await uow.lock(_GENERATIONS_LOCK)
            await uow.generations.set_active(generation_id, self._clock.now())
            await uow.commit()
        log.info("kb.generation.activated", generation_id=generation_id)
        return generation

    async def prune(self) -> list[str]:
        """Drop generations beyond the newest ``keep_generations`` (never the active one, never
        one still building) with their indexes."""
        async with self._storage.unit_of_work() as uow:
            generations = list(await uow.generations.list(limit=1000))
            active = await uow.generations.get_active()
        keep = self.config.keep_generations
        done = [g for g in generations if g.status != "building"]
        doomed = [g for g in done[keep:] if active is None or g.id != active.id]
        dropped: list[str] = []
        for generation in doomed:
            await self._store.drop(generation.id)
            async with self._storage.unit_of_work() as uow:
                await uow.lock(_GENERATIONS_LOCK)
                try:
                    removed = await uow.generations.delete(generation.id)
                except ConflictError:  # activated meanwhile
                    continue
                await uow.commit()
            if removed:
                dropped.append(generation.id)
        if dropped:
            log.info("kb.generation.pruned", generations=dropped)
        return dropped

    # ------------------------------------------------------------------ search

    async def search(
        self, query: str, *, k: int | None = None, user_id: str | None = None
    ) -> SearchResult:
        """The ``k`` best chunks of the **active** generation (none before one is active)."""
        text = " ".join(query.split())
        if not text:
            raise InvalidInputError("query is empty", [FieldError(field="query", message="empty")])
        if len(text) > _MAX_QUERY:
            raise InvalidInputError(
                f"query is longer than {_MAX_QUERY} characters",
                [FieldError(field="query", message="too long")],
            )
        size = k or self.config.search_k
        if not 1 <= size <= self.config.max_k:
            raise InvalidInputError(
                f"k must be between 1 and {self.config.max_k}",
                [FieldError(field="k", message="out of range")],
            )
        async with self._storage.unit_of_work() as uow:
            active = await uow.generations.get_active()
        if active is None:
            return SearchResult(generation_id=None, hits=[])
        started = time.perf_counter()
        [vector] = await self._embedder.embed([text])
        embedded = time.perf_counter()
        hits = await self._rank(active.id, text, vector, size)
        searched = time.perf_counter()
        hits = await self._visible(hits)
        embed_s, search_s = embedded - started, searched - embedded
        top = hits[0].score if hits else None
        if self._observer is not None:
            self._observer.observe_search(
                active.id,
                embed_seconds=embed_s,
                search_seconds=search_s,
                top_score=top,
                empty=not hits,
            )
        record = SearchRecord(
            generation_id=active.id,
            user_id=user_id,
            query=text,
            k=size,
            result_count=len(hits),
            top_score=top,
            embed_ms=embed_s * 1000,
            search_ms=search_s * 1000,
            created_at=self._clock.now(),
        )
        try:
            async with self._storage.unit_of_work() as uow:
                await uow.searches.append(record)
                await uow.commit()
        except Exception:  # monitoring must not fail the search
            log.warning("kb.search.record_failed", generation_id=active.id)
        return SearchResult(active.id, hits, embed_s * 1000, search_s * 1000)

    async def _rank(
        self, generation_id: str, text: str, vector: Sequence[float], k: int
    ) -> list[SearchHit]:
        """The ``k`` best chunks of a generation for a query: both channels' top candidates,
        each scored on both channels, fused (see :mod:`avatarstack.core.lexical`). A generation
        without a lexical index (built before there was one) ranks by cosine alone."""
        depth = max(k, self.config.candidates)
        dense = await self._store.query(generation_id, vector, depth)
        lexical = await self._lexical_index(generation_id)
        if lexical is None:
            return [h.model_copy(update={"channels": ("dense",)}) for h in dense[:k]]
        question = query_tokens(text)
        terms = question + expand(question, self._related)
        found = await asyncio.to_thread(lexical.index.search, terms, depth) if terms else []
        ceiling = lexical.index.ceiling(question)
        candidates: dict[str, Candidate] = {}
        by_id = {h.chunk_id: h for h in dense}
        for hit in dense:
            candidates[hit.chunk_id] = Candidate(
                hit.chunk_id, dense=normalised_dense(hit.score), channels={"dense"}
            )
        for position, score in found:
            cid = lexical.chunk_ids[position]
            candidate = candidates.setdefault(cid, Candidate(cid))
            candidate.lexical = normalised_lexical(score, ceiling)
            candidate.channels.add("lexical")
        dense_only = [c for c in candidates.values() if "lexical" not in c.channels]
        if terms and dense_only:
            positions = [lexical.positions.get(c.chunk_id, -1) for c in dense_only]
            for candidate, score in zip(
                dense_only, lexical.index.scores(terms, positions), strict=True
            ):
                candidate.lexical = normalised_lexical(score, ceiling)
        missing = [c.chunk_id for c in candidates.values() if c.chunk_id not in by_id]
        if missing:
            for hit in await self._store.fetch(generation_id, missing, vector):
                by_id[hit.chunk_id] = hit
                candidates[hit.chunk_id].dense = normalised_dense(hit.score)
        ranked = fuse(
            (c for c in candidates.values() if c.chunk_id in by_id), self.config.dense_weight
        )
        return [
            by_id[c.chunk_id].model_copy(
                update={"score": c.score, "channels": tuple(channel_names(sorted(c.channels)))}
            )
            for c in ranked[:k]
        ]

    async def _lexical_index(self, generation_id: str) -> _LoadedLexical | None:
        """The generation's lexical index, loaded once per instance from storage (the same
        bytes everywhere) and kept for the last ``lexical_cache`` generations."""
        if self._lexical_indexer is None:
            return None
        if generation_id in self._lexical:
            self._lexical.move_to_end(generation_id)
            return self._lexical[generation_id]
        async with self._lexical_lock:
            if generation_id in self._lexical:
                return self._lexical[generation_id]
            async with self._storage.unit_of_work() as uow:
                stored = await uow.generations.get_lexical(generation_id)
            loaded: _LoadedLexical | None = None
            if stored is not None and stored.tokenizer == TOKENIZER_VERSION:
                indexer = self._lexical_indexer
                index = await asyncio.to_thread(indexer.load, stored.data)
                loaded = _LoadedLexical(
                    index, stored.chunk_ids, {c: n for n, c in enumerate(stored.chunk_ids)}
                )
            elif stored is not None:
                log.warning(
                    "kb.lexical.tokenizer_mismatch",
                    generation_id=generation_id,
                    stored=stored.tokenizer,
                    expected=TOKENIZER_VERSION,
                )
            self._lexical[generation_id] = loaded
            while len(self._lexical) > self.config.lexical_cache:
                self._lexical.popitem(last=False)
            return loaded

    async def _visible(self, hits: list[SearchHit]) -> list[SearchHit]:
        """Drop hits of documents deleted after the generation was built."""
        if not hits:
            return hits
        async with self._storage.unit_of_work() as uow:
            alive = {
                document_id
                for document_id in {h.document_id for h in hits}
                if await uow.documents.get(document_id) is not None
            }
        return [h for h in hits if h.document_id in alive]

    # ------------------------------------------------------------------ golden set

    async def set_golden_set(self, items: Sequence[GoldenQuestionInput]) -> list[GoldenQuestion]:
        if len(items) > _MAX_GOLDEN:
            raise InvalidInputError(f"at most {_MAX_GOLDEN} questions")
        now = self._clock.now()
        errors: list[FieldError] = []
        questions: list[GoldenQuestion] = []
        async with self._storage.unit_of_work() as uow:
            for n, item in enumerate(items):
                question = " ".join(item.question.split())
                document_id = item.expected_document_id or None
                phrase = " ".join((item.expected_phrase or "").split()) or None
                if not question:
                    errors.append(FieldError(field=f"questions.{n}.question", message="required"))
                if document_id is None and phrase is None:
                    errors.append(
                        FieldError(
                            field=f"questions.{n}",
                            message="give expected_document_id, expected_phrase or both",
                        )
                    )
                if document_id is not None and await uow.documents.get(document_id) is None:
                    errors.append(
                        FieldError(
                            field=f"questions.{n}.expected_document_id", message="unknown document"
                        )
                    )
                questions.append(
                    GoldenQuestion(
                        id=item.id or new_id(),
                        question=question,
                        expected_document_id=document_id,
                        expected_phrase=phrase,
                        created_at=now,
                    )
                )
            if errors:
                raise InvalidInputError("the golden set has invalid questions", errors)
            await uow.golden_set.replace(questions)
            await uow.commit()
        return questions

    async def golden_set(self) -> list[GoldenQuestion]:
        async with self._storage.unit_of_work() as uow:
            return list(await uow.golden_set.list())

    async def evaluate(self, generation_id: str) -> GoldenMetrics:
        """Score a ready generation on the golden set and store the figures on it."""
        async with self._storage.unit_of_work() as uow:
            generation = await uow.generations.get(generation_id)
        if generation is None:
            raise NotFoundError("generation not found")
        if generation.status != "ready":
            raise ConflictError(f"generation {generation_id} is {generation.status}")
        metrics = await self._evaluate_index(generation_id, generation)
        if metrics is None:
            raise ConflictError("the golden set is empty; store its questions first")
        async with self._storage.unit_of_work() as uow:
            current = await uow.generations.get(generation_id) or generation
            await uow.generations.update(
                current.model_copy(
                    update={
                        "metrics": {**current.metrics, "golden": metrics.model_dump()},
                        "updated_at": self._clock.now(),
                    }
                )
            )
            await uow.commit()
        return metrics

    async def _evaluate_index(
        self,
        generation_id: str,
        generation: IndexGeneration | None = None,
        chunks: Sequence[StoredChunk] | None = None,
    ) -> GoldenMetrics | None:
        """Golden-set figures of the generation's index (None without a golden set);
        ``chunks``, when the caller has them, spares reading them again."""
        async with self._storage.unit_of_work() as uow:
            questions = list(await uow.golden_set.list())
            if not questions:
                return None
            generation = generation or await uow.generations.get(generation_id)
            if generation is None:
                return None
            if chunks is None:
                chunks = await _generation_chunks(uow, generation)
        k = self.config.eval_k
        judged = [self._relevance(q, chunks) for q in questions]
        vectors = await self._embedder.embed([q.question for q in questions])
        recall = 0.0
        firsts: list[int | None] = []
        missed: list[str] = []
        for item, vector in zip(judged, vectors, strict=True):
            text = " ".join(item.question.question.split())
            hits = await self._rank(generation_id, text, vector, k)
            flags = [self._matches(item, h) for h in hits]
            firsts.append(first_relevant_rank(flags, k))
            if firsts[-1] is None:
                missed.append(item.question.id)
            if item.relevant:
                recall += sum(flags) / min(len(item.relevant), k)
        figures = rank_figures(firsts, k)
        return GoldenMetrics(
            k=k,
            questions=figures.questions,
            hit_at_1=figures.hit_at_1,
            hit_at_k=figures.hit_at_k,
            recall_at_k=recall / figures.questions,
            mrr=figures.mrr,
            missed=missed[:50],
            evaluated_at=self._clock.now().isoformat(),
        )

    @staticmethod
    def _relevance(question: GoldenQuestion, chunks: Sequence[StoredChunk]) -> _Relevance:
        item = _Relevance(
            question, _phrase_key(question.expected_phrase) if question.expected_phrase else None
        )
        for c in chunks:
            if question.expected_document_id and c.document_id != question.expected_document_id:
                continue
            if item.phrase and item.phrase not in _phrase_key(c.text):
                continue
            item.relevant.add(chunk_id(c.document_id, c.version, c.index))
        return item

    @staticmethod
    def _matches(item: _Relevance, hit: SearchHit) -> bool:
        return hit.chunk_id in item.relevant
