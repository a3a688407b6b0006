"""What the knowledge services share: their configuration, the values they return, the storage
they need, the job kinds, and the small rules every service applies the same way (chunk ids,
file names, the title indexed with each chunk)."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import PurePath
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from avatarstack.core.text import ChunkerConfig
from avatarstack.ports.documents import DocumentParser, ParsedDocument
from avatarstack.ports.knowledge import SearchHit
from avatarstack.ports.storage import (
    Document,
    DocumentVersion,
    IndexGeneration,
    Job,
    JobUnitOfWork,
    KnowledgeUnitOfWork,
    StoredChunk,
)

__all__ = [
    "BUILD_JOB",
    "DOCUMENTS_LOCK",
    "GENERATIONS_LOCK",
    "INGEST_JOB",
    "GoldenMetrics",
    "GoldenQuestionInput",
    "KnowledgeConfig",
    "KnowledgeServiceStorage",
    "KnowledgeServiceUnitOfWork",
    "ParseFunction",
    "ParserChooser",
    "SearchObserver",
    "SearchResult",
    "Upload",
    "chunk_id",
    "generation_chunks",
    "index_title",
    "safe_filename",
    "text_hash",
]

INGEST_JOB = "kb.ingest"
BUILD_JOB = "kb.build"
#: the lock every change to document version numbers takes (PostgreSQL advisory lock)
DOCUMENTS_LOCK = "kb:documents"
#: the lock every change to the active generation and to the set of generations takes
GENERATIONS_LOCK = "kb:generations"
_MAX_FILENAME = 200

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
    """One question of a golden set to store (``EvaluationService.set_golden_set``): the
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


class KnowledgeServiceUnitOfWork(KnowledgeUnitOfWork, JobUnitOfWork, Protocol):
    """The knowledge repositories and the job queue (ingest and build jobs are enqueued in the
    transaction that records the upload or the generation)."""


class KnowledgeServiceStorage(Protocol):
    """What the services that queue jobs (documents, generations) need of a storage (a full
    ``Storage`` is one); the others need a ``KnowledgeStorage`` only."""

    def unit_of_work(self) -> AbstractAsyncContextManager[KnowledgeServiceUnitOfWork]: ...


def chunk_id(document_id: str, version: int, index: int) -> str:
    """Stable across generations: citations keep pointing at the same chunk."""
    return f"{document_id}:{version}:{index}"


def text_hash(text: str) -> str:
    """The key of a text in the embedding cache."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


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


def index_title(document: Document | None, version: DocumentVersion | None) -> str:
    """The title carried into every chunk's indexed text: the title given at upload, else the
    title in the file's metadata, else the document's title (from the file name)."""
    meta = version.meta if version is not None else {}
    for candidate in (meta.get("title"), meta.get("parsed_title")):
        if isinstance(candidate, str) and candidate.strip():
            return " ".join(candidate.split())
    return document.title if document is not None else ""


async def generation_chunks(
    uow: KnowledgeUnitOfWork, generation: IndexGeneration
) -> list[StoredChunk]:
    """The stored chunks of the document versions a generation is built from."""
    chunks: list[StoredChunk] = []
    for document_id, number in sorted(generation.document_versions.items()):
        chunks.extend(await uow.chunks.list_for_version(document_id, number))
    return chunks
