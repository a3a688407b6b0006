"""The knowledge-base routes' request and response models, and what the route modules share."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from avatarstack.adapters.http.body import Offset
from avatarstack.core.knowledge import GoldenQuestionInput, Upload
from avatarstack.ports.storage import Document, DocumentVersion, IndexGeneration, Job

API = "/api/v1/kb"
TAGS = ("knowledge",)
READ = "kb:read"
WRITE = "kb:write"


class VersionOut(BaseModel):
    version: int
    status: str = Field(description="queued, processing, ready or failed")
    filename: str
    media_type: str
    size_bytes: int
    content_hash: str | None
    parser: str | None = None
    pages: int | None = None
    chunks: int | None = None
    error: str | None = None
    restored_from: int | None = None
    job_id: str | None = None
    created_at: datetime

    @classmethod
    def of(cls, v: DocumentVersion) -> VersionOut:
        meta = v.meta
        return cls(
            version=v.version,
            status=v.status,
            filename=v.filename,
            media_type=v.media_type,
            size_bytes=v.size_bytes,
            content_hash=v.content_hash or None,
            parser=meta.get("parser"),
            pages=meta.get("pages"),
            chunks=meta.get("chunks"),
            error=v.error,
            restored_from=meta.get("restored_from"),
            job_id=meta.get("job_id"),
            created_at=v.created_at,
        )


class DocumentOut(BaseModel):
    document_id: str
    title: str
    current_version: int | None
    created_at: datetime
    updated_at: datetime
    current: VersionOut | None = None
    latest: VersionOut | None = Field(
        None, description="The newest version (may be queued or failed)."
    )

    @classmethod
    def of(cls, d: Document, versions: list[DocumentVersion] | None = None) -> DocumentOut:
        versions = versions or []
        current = next((v for v in versions if v.version == d.current_version), None)
        return cls(
            document_id=d.id,
            title=d.title,
            current_version=d.current_version,
            created_at=d.created_at,
            updated_at=d.updated_at,
            current=VersionOut.of(current) if current else None,
            latest=VersionOut.of(versions[-1]) if versions else None,
        )


class DocumentsOut(BaseModel):
    documents: list[DocumentOut]
    total: int


class VersionsOut(BaseModel):
    document_id: str
    current_version: int | None
    versions: list[VersionOut]


class UploadOut(BaseModel):
    document_id: str
    version: int
    job_id: str | None
    status: str
    created: bool = Field(description="False when the same file was already uploaded.")

    @classmethod
    def of(cls, upload: Upload) -> UploadOut:
        job = upload.job
        return cls(
            document_id=upload.document.id,
            version=upload.version.version,
            job_id=job.id if job else None,
            status=upload.version.status,
            created=upload.created,
        )


class JobOut(BaseModel):
    job_id: str
    kind: str
    status: Literal["queued", "running", "succeeded", "failed"]
    progress: float
    attempts: int
    error: str | None = None
    result: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            job_id=job.id,
            kind=job.kind,
            status=job.status,
            progress=job.progress,
            attempts=job.attempts,
            error=job.error,
            result=job.result,
            created_at=job.created_at,
            updated_at=job.updated_at,
        )


class BuildIn(BaseModel):
    activate: Literal["no", "yes", "if_better"] = Field(
        "no",
        description="Activate when built: never, always, or when the golden set does not regress.",
    )


class BuildOut(BaseModel):
    generation_id: str
    job_id: str
    status: str


class GenerationOut(BaseModel):
    generation_id: str
    status: str
    active: bool
    embedder: str
    dimensions: int
    document_versions: dict[str, int]
    chunk_count: int
    metrics: dict[str, Any]
    error: str | None = None
    job_id: str | None = None
    created_at: datetime
    updated_at: datetime
    searches: dict[str, Any] | None = Field(
        None, description="Search figures recorded against this generation (detail only)."
    )

    @classmethod
    def of(
        cls, g: IndexGeneration, active: bool, searches: dict[str, Any] | None = None
    ) -> GenerationOut:
        return cls(
            generation_id=g.id,
            status=g.status,
            active=active,
            embedder=g.embedder,
            dimensions=g.dimensions,
            document_versions=g.document_versions,
            chunk_count=g.chunk_count,
            metrics=g.metrics,
            error=g.error,
            job_id=g.job_id,
            created_at=g.created_at,
            updated_at=g.updated_at,
            searches=searches,
        )


class GenerationsOut(BaseModel):
    active_generation_id: str | None
    generations: list[GenerationOut]


class GoldenQuestionIn(BaseModel):
    id: str | None = Field(None, max_length=64)
    question: str = Field(min_length=1, max_length=2000)
    expected_document_id: str | None = Field(None, max_length=64)
    expected_phrase: str | None = Field(None, max_length=2000)

    def to_input(self) -> GoldenQuestionInput:
        """The question as the knowledge service takes it."""
        return GoldenQuestionInput(
            question=self.question,
            expected_document_id=self.expected_document_id,
            expected_phrase=self.expected_phrase,
            id=self.id,
        )


class GoldenSetIn(BaseModel):
    questions: list[GoldenQuestionIn] = Field(max_length=500)


class GoldenSetOut(BaseModel):
    questions: list[GoldenQuestionIn]


class SearchIn(BaseModel):
    query: str = Field(min_length=1, max_length=2000)
    k: int | None = Field(None, ge=1, le=50, strict=True)


class SearchResultOut(BaseModel):
    chunk_id: str
    text: str
    score: float = Field(
        description="fused score 0..1: dense_weight x cosine + (1 - dense_weight) x BM25 / the "
        "query's BM25 ceiling (cosine alone for a generation without a lexical index)"
    )
    channels: list[Literal["lexical", "dense"]] = Field(
        default_factory=list, description="the channels whose candidates included this passage"
    )
    document_id: str
    version: int
    page: int
    page_end: int


class SearchOut(BaseModel):
    generation_id: str | None = Field(description="null before any generation was activated")
    results: list[SearchResultOut]
    embed_ms: float
    search_ms: float


class JobsOut(BaseModel):
    jobs: list[JobOut]


class JobsQuery(BaseModel):
    limit: int = Field(50, ge=1, le=200)


class ListQuery(BaseModel):
    limit: int = Field(50, ge=1, le=200)
    offset: Offset = 0
