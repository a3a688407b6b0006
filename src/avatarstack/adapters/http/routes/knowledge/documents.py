"""Documents (uploads, versions, restore, delete) and ingestion jobs: /api/v1/kb/documents,
/api/v1/kb/jobs; docs/knowledge.md."""

from __future__ import annotations

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from avatarstack.adapters.http import keys
from avatarstack.adapters.http.auth import principal
from avatarstack.adapters.http.body import model_response, path_id, read_query
from avatarstack.adapters.http.routes.knowledge.models import (
    API,
    READ,
    TAGS,
    WRITE,
    DocumentOut,
    DocumentsOut,
    JobOut,
    JobsOut,
    JobsQuery,
    ListQuery,
    UploadOut,
    VersionOut,
    VersionsOut,
)
from avatarstack.adapters.http.routing import Route
from avatarstack.ports.errors import (
    FieldError,
    InvalidInputError,
    MalformedRequestError,
    NotFoundError,
    UnsupportedMediaTypeError,
)

_TITLE_BYTES = 4096


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
    upload = await request.app[keys.KNOWLEDGE].documents.upload(
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
    documents, total = await request.app[keys.KNOWLEDGE].documents.list_documents(
        limit=query.limit, offset=query.offset
    )
    return model_response(
        DocumentsOut(documents=[DocumentOut.of(d) for d in documents], total=total)
    )


async def get_document(request: web.Request) -> web.Response:
    document, versions = await request.app[keys.KNOWLEDGE].documents.get_document(
        _document_id(request)
    )
    return model_response(DocumentOut.of(document, versions))


async def list_versions(request: web.Request) -> web.Response:
    document, versions = await request.app[keys.KNOWLEDGE].documents.get_document(
        _document_id(request)
    )
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
    document, version = await request.app[keys.KNOWLEDGE].documents.restore(
        _document_id(request), int(raw)
    )
    return model_response(DocumentOut.of(document, [version]), 201)


async def delete_document(request: web.Request) -> web.Response:
    await request.app[keys.KNOWLEDGE].documents.delete_document(_document_id(request))
    return web.Response(status=204)


async def get_job(request: web.Request) -> web.Response:
    job = await request.app[keys.KNOWLEDGE].jobs.get_job(path_id(request, "job_id", "job"))
    return model_response(JobOut.of(job))


async def list_jobs(request: web.Request) -> web.Response:
    query = read_query(request, JobsQuery)
    jobs = await request.app[keys.KNOWLEDGE].jobs.list_jobs(limit=query.limit)
    return model_response(JobsOut(jobs=[JobOut.of(job) for job in jobs]))


_DOC = {404: "No such document"}

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
]
