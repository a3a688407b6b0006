"""Knowledge-base routes: /api/v1/kb (docs/knowledge.md, docs/api.md). Editors and admins write
(``kb:write``); every signed-in member may read and search (``kb:read``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, Field

from avatarstack.adapters.http import keys
from avatarstack.adapters.http.auth import principal
from avatarstack.adapters.http.body import Offset, model_response, path_id, read_json, read_query
from avatarstack.adapters.http.routing import Route
from avatarstack.core.knowledge import GoldenMetrics, Upload
from avatarstack.ports.errors import (
    FieldError,
    InvalidInputError,
    MalformedRequestError,
    NotFoundError,
    UnsupportedMediaTypeError,
)
from avatarstack.ports.storage import Document, DocumentVersion, IndexGeneration, Job

API = "/api/v1/kb"
TAGS = ("knowledge",)
READ = "kb:read"
WRITE = "kb:write"
_TITLE_BYTES = 4096


# ----------------------------------------------------------------------------- models


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


# ----------------------------------------------------------------------------- uploads


async def _read_upload(request: web.Request) -> tuple[bytes, str | None, str | None, str | None]:
    """The ``file`` part (bytes, filename, media type) and the optional ``title`` of a
    multipart body, streamed with the upload limit (413 beyond it)."""
    limit = request.app[keys.CONFIG].max_upload_bytes
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaTypeError(
            "send the file as multipart/form-data with a part named `file`"
        )
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError) as exc:
        raise MalformedRequestError("the multipart body is malformed") from exc
    data: bytes | None = None
    filename = media_type = title = None
    try:
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise MalformedRequestError("nested multipart bodies are not accepted")
            if part.name == "file" and data is None:
                filename = part.filename
                media_type = part.headers.get("Content-Type")
                data = await _read_part(part, limit)
            elif part.name == "title":
                raw = await _read_part(part, _TITLE_BYTES)
                title = raw.decode("utf-8", "replace")
            else:
                await part.release()
    except (ValueError, AssertionError, HttpProcessingError) as exc:
        raise MalformedRequestError("the multipart body is malformed") from exc
    if data is None:
        raise InvalidInputError(
            "the body has no `file` part", [FieldError(field="file", message="required")]
        )
    return data, filename, media_type, title


async def _read_part(part: BodyPartReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await part.read_chunk(256 * 1024)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


def _document_id(request: web.Request) -> str:
    return path_id(request, "document_id", "document")


async def _upload(request: web.Request, document_id: str | None) -> web.Response:
    data, filename, media_type, title = await _read_upload(request)
    upload = await request.app[keys.KNOWLEDGE].upload(
        data,
        filename=filename,
        media_type=media_type,
        title=title,
        owner_id=principal(request).user.id,
        document_id=document_id,
    )
    return model_response(UploadOut.of(upload), 202 if upload.created else 200)


async def upload_document(request: web.Request) -> web.Response:
    return await _upload(request, None)


async def replace_document(request: web.Request) -> web.Response:
    return await _upload(request, _document_id(request))


async def list_documents(request: web.Request) -> web.Response:
    query = read_query(request, ListQuery)
    documents, total = await request.app[keys.KNOWLEDGE].list_documents(
        limit=query.limit, offset=query.offset
    )
    return model_response(
        DocumentsOut(documents=[DocumentOut.of(d) for d in documents], total=total)
    )


async def get_document(request: web.Request) -> web.Response:
    document, versions = await request.app[keys.KNOWLEDGE].get_document(_document_id(request))
    return model_response(DocumentOut.of(document, versions))


async def list_versions(request: web.Request) -> web.Response:
    document, versions = await request.app[keys.KNOWLEDGE].get_document(_document_id(request))
    return model_response(
        VersionsOut(
            document_id=document.id,
            current_version=document.current_version,
            versions=[VersionOut.of(v) for v in versions],
        )
    )


async def restore_version(request: web.Request) -> web.Response:
    raw = request.match_info["version"]
    if not raw.isdigit() or len(raw) > 9:
        raise NotFoundError("no such version")
    document, version = await request.app[keys.KNOWLEDGE].restore(_document_id(request), int(raw))
    return model_response(DocumentOut.of(document, [version]), 201)


async def delete_document(request: web.Request) -> web.Response:
    await request.app[keys.KNOWLEDGE].delete_document(_document_id(request))
    return web.Response(status=204)


async def get_job(request: web.Request) -> web.Response:
    job = await request.app[keys.KNOWLEDGE].get_job(path_id(request, "job_id", "job"))
    return model_response(JobOut.of(job))


async def list_jobs(request: web.Request) -> web.Response:
    query = read_query(request, JobsQuery)
    jobs = await request.app[keys.KNOWLEDGE].list_jobs(limit=query.limit)
    return model_response(JobsOut(jobs=[JobOut.of(job) for job in jobs]))


# ----------------------------------------------------------------------------- generations


def _generation_id(request: web.Request) -> str:
    return path_id(request, "generation_id", "generation")


async def build_generation(request: web.Request) -> web.Response:
    body = BuildIn()
    if request.can_read_body:
        body = await read_json(request, BuildIn, max_bytes=request.app[keys.CONFIG].max_body_bytes)
    generation, job = await request.app[keys.KNOWLEDGE].start_build(
        owner_id=principal(request).user.id, activate=body.activate
    )
    return model_response(
        BuildOut(generation_id=generation.id, job_id=job.id, status=generation.status), 202
    )


async def list_generations(request: web.Request) -> web.Response:
    generations, active = await request.app[keys.KNOWLEDGE].list_generations()
    return model_response(
        GenerationsOut(
            active_generation_id=active,
            generations=[GenerationOut.of(g, g.id == active) for g in generations],
        )
    )


async def get_generation(request: web.Request) -> web.Response:
    generation, active, searches = await request.app[keys.KNOWLEDGE].get_generation(
        _generation_id(request)
    )
    return model_response(GenerationOut.of(generation, active, searches))


async def activate_generation(request: web.Request) -> web.Response:
    service = request.app[keys.KNOWLEDGE]
    await service.activate(_generation_id(request))
    generation, active, searches = await service.get_generation(_generation_id(request))
    return model_response(GenerationOut.of(generation, active, searches))


async def evaluate_generation(request: web.Request) -> web.Response:
    metrics = await request.app[keys.KNOWLEDGE].evaluate(_generation_id(request))
    return model_response(metrics)


async def put_golden_set(request: web.Request) -> web.Response:
    body = await read_json(request, GoldenSetIn, max_bytes=request.app[keys.CONFIG].max_body_bytes)
    questions = await request.app[keys.KNOWLEDGE].set_golden_set(
        [q.model_dump() for q in body.questions]
    )
    return model_response(
        GoldenSetOut(questions=[GoldenQuestionIn.model_validate(q.model_dump()) for q in questions])
    )


async def get_golden_set(request: web.Request) -> web.Response:
    questions = await request.app[keys.KNOWLEDGE].golden_set()
    return model_response(
        GoldenSetOut(questions=[GoldenQuestionIn.model_validate(q.model_dump()) for q in questions])
    )


async def search(request: web.Request) -> web.Response:
    body = await read_json(request, SearchIn, max_bytes=request.app[keys.CONFIG].max_body_bytes)
    result = await request.app[keys.KNOWLEDGE].search(
        body.query, k=body.k, user_id=principal(request).user.id
    )
    return model_response(
        SearchOut(
            generation_id=result.generation_id,
            results=[
                SearchResultOut(
                    chunk_id=h.chunk_id,
                    text=h.text,
                    score=h.score,
                    channels=[c for c in h.channels if c in ("lexical", "dense")],
                    document_id=h.document_id,
                    version=h.version,
                    page=h.page,
                    page_end=h.page_end,
                )
                for h in result.hits
            ],
            embed_ms=round(result.embed_ms, 3),
            search_ms=round(result.search_ms, 3),
        )
    )


_DOC = {404: "No such document"}
_GEN = {404: "No such generation", 409: "Not ready, or built with another embedder"}

ROUTES = [
    Route(
        "POST",
        f"{API}/documents",
        upload_document,
        WRITE,
        "kb_document_upload",
        "Upload a document (multipart `file`, optional `title`): 202 with the ingestion job, "
        "200 when the same file is already there.",
        TAGS,
        response_model=UploadOut,
        status=202,
        upload=True,
        responses={200: "The same file was already uploaded: the existing version"},
    ),
    Route(
        "PUT",
        f"{API}/documents/{{document_id}}",
        replace_document,
        WRITE,
        "kb_document_replace",
        "Upload a new version of a document (202), or get the current one back (200).",
        TAGS,
        response_model=UploadOut,
        status=202,
        upload=True,
        responses={**_DOC, 200: "Same file as the current version"},
    ),
    Route(
        "GET",
        f"{API}/documents",
        list_documents,
        READ,
        "kb_documents",
        "Documents (not deleted), newest first.",
        TAGS,
        query_model=ListQuery,
        response_model=DocumentsOut,
    ),
    Route(
        "GET",
        f"{API}/documents/{{document_id}}",
        get_document,
        READ,
        "kb_document",
        "A document with its current and latest version (status, pages, chunks, parser, error).",
        TAGS,
        response_model=DocumentOut,
        responses=_DOC,
    ),
    Route(
        "GET",
        f"{API}/documents/{{document_id}}/versions",
        list_versions,
        READ,
        "kb_document_versions",
        "Version history, oldest first.",
        TAGS,
        response_model=VersionsOut,
        responses=_DOC,
    ),
    Route(
        "POST",
        f"{API}/documents/{{document_id}}/versions/{{version}}/restore",
        restore_version,
        WRITE,
        "kb_document_restore",
        "Make version n current again as a new version.",
        TAGS,
        response_model=DocumentOut,
        status=201,
        responses={404: "No such document or version", 409: "That version is not ready"},
    ),
    Route(
        "DELETE",
        f"{API}/documents/{{document_id}}",
        delete_document,
        WRITE,
        "kb_document_delete",
        "Delete a document: it leaves listings and search results at once.",
        TAGS,
        status=204,
        responses=_DOC,
    ),
    Route(
        "GET",
        f"{API}/jobs",
        list_jobs,
        WRITE,
        "kb_jobs",
        "The most recent ingestion and build jobs of every editor, newest first.",
        TAGS,
        query_model=JobsQuery,
        response_model=JobsOut,
    ),
    Route(
        "GET",
        f"{API}/jobs/{{job_id}}",
        get_job,
        WRITE,
        "kb_job",
        "Status and progress (0..1) of an ingestion or build job.",
        TAGS,
        response_model=JobOut,
        responses={404: "No such job"},
    ),
    Route(
        "POST",
        f"{API}/generations",
        build_generation,
        WRITE,
        "kb_generation_build",
        "Build an index generation from the current version of every document.",
        TAGS,
        request_model=BuildIn,
        response_model=BuildOut,
        status=202,
        responses={409: "No ingested documents"},
    ),
    Route(
        "GET",
        f"{API}/generations",
        list_generations,
        READ,
        "kb_generations",
        "Index generations, newest first, with the active one marked.",
        TAGS,
        response_model=GenerationsOut,
    ),
    Route(
        "GET",
        f"{API}/generations/{{generation_id}}",
        get_generation,
        READ,
        "kb_generation",
        "One generation: documents, chunk count, embedder, evaluation and search figures.",
        TAGS,
        response_model=GenerationOut,
        responses={404: "No such generation"},
    ),
    Route(
        "POST",
        f"{API}/generations/{{generation_id}}/activate",
        activate_generation,
        WRITE,
        "kb_generation_activate",
        "Make searches use this generation (atomic switch; an older one = rollback).",
        TAGS,
        response_model=GenerationOut,
        responses=_GEN,
    ),
    Route(
        "POST",
        f"{API}/generations/{{generation_id}}/evaluate",
        evaluate_generation,
        WRITE,
        "kb_generation_evaluate",
        "Score the generation on the golden set (hit rate, recall@k, MRR) and store it.",
        TAGS,
        response_model=GoldenMetrics,
        responses={**_GEN, 409: "Not ready, or the golden set is empty"},
    ),
    Route(
        "PUT",
        f"{API}/golden-set",
        put_golden_set,
        WRITE,
        "kb_golden_set_put",
        "Replace the golden set: questions with the expected document and/or phrase.",
        TAGS,
        request_model=GoldenSetIn,
        response_model=GoldenSetOut,
    ),
    Route(
        "GET",
        f"{API}/golden-set",
        get_golden_set,
        WRITE,
        "kb_golden_set",
        "The golden set.",
        TAGS,
        response_model=GoldenSetOut,
    ),
    Route(
        "POST",
        f"{API}/search",
        search,
        READ,
        "kb_search",
        "Search the active generation; results cite document, version and page.",
        TAGS,
        request_model=SearchIn,
        response_model=SearchOut,
    ),
]
