"""The knowledge context: documents and their versions, chunks, index generations (with their
lexical indexes), the golden set, file blobs, the embedding cache and the search log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import Field

from avatarstack.ports.storage._base import Record
from avatarstack.ports.storage.uow import Locking, Transaction

__all__ = [
    "BlobRepository",
    "ChunkRepository",
    "Document",
    "DocumentRepository",
    "DocumentVersion",
    "EmbeddingCacheRepository",
    "GenerationRepository",
    "GenerationStatus",
    "GoldenQuestion",
    "GoldenSetRepository",
    "IndexGeneration",
    "KnowledgeStorage",
    "KnowledgeUnitOfWork",
    "SearchLogRepository",
    "SearchRecord",
    "SearchSummary",
    "StoredChunk",
    "StoredLexicalIndex",
]


class Document(Record):
    id: str
    title: str
    owner_id: str | None = None
    current_version: int | None = None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None


class DocumentVersion(Record):
    """A version of a document; ``content_hash`` identifies its normalised content and
    ``file_sha256`` the uploaded bytes (kept as a blob until no version refers to them)."""

    document_id: str
    version: int
    content_hash: str
    filename: str
    media_type: str
    size_bytes: int
    status: str = "pending"
    error: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    file_sha256: str | None = Field(
        default=None, description="SHA-256 (hex) of the uploaded file's bytes."
    )
    created_at: datetime


class StoredChunk(Record):
    """One chunk of a document version as the chunker produced it; keyed by
    ``(document_id, version, index)``."""

    document_id: str
    version: int
    index: int
    text: str
    page_start: int
    page_end: int
    char_start: int
    char_end: int
    heading: str | None = None
    hash: str


GenerationStatus = Literal["building", "ready", "failed"]


class IndexGeneration(Record):
    """One build of the search index over a set of document versions.

    Which generation serves queries is a separate pointer (:meth:`GenerationRepository.
    set_active`), so ``status`` only says whether the build finished."""

    id: str
    status: GenerationStatus = "building"
    embedder: str
    dimensions: int
    document_versions: dict[str, int] = Field(
        default_factory=dict, description="Document id to the version indexed."
    )
    chunk_count: int = 0
    metrics: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    job_id: str | None = None
    created_at: datetime
    updated_at: datetime


class StoredLexicalIndex(Record):
    """The lexical (BM25) index of one generation, as its indexer serialised it: stored with the
    generation, so every instance loads the same bytes; deleted with the generation."""

    generation_id: str
    #: the ``LexicalIndexer.name`` that built it
    indexer: str
    #: the tokenizer version (``avatarstack.core.lexical.TOKENIZER_VERSION``)
    tokenizer: str
    #: chunk id of each indexed document, by position
    chunk_ids: list[str]
    data: bytes = Field(repr=False)


class GoldenQuestion(Record):
    """A question of the golden set that rates index generations, with what a good answer
    cites: a document (plain id; the document may since have been deleted) and/or a phrase."""

    id: str
    question: str
    expected_document_id: str | None = None
    expected_phrase: str | None = None
    created_at: datetime


class SearchRecord(Record):
    """One knowledge-base search as served. ``id`` is assigned by the store (monotonic)."""

    id: int | None = None
    generation_id: str
    user_id: str | None = None
    query: str
    k: int
    result_count: int
    top_score: float | None = None
    embed_ms: float
    search_ms: float
    created_at: datetime


class SearchSummary(Record):
    """Figures over the searches one generation served; the means are None without searches
    (``mean_top_score`` also when no search had a score)."""

    count: int
    empty_count: int = Field(description="Searches that returned no result.")
    mean_top_score: float | None
    mean_embed_ms: float | None
    mean_search_ms: float | None


class DocumentRepository(Protocol):
    async def add(self, document: Document) -> None: ...

    async def get(self, document_id: str) -> Document | None:
        """Deleted documents are not returned."""

    async def list(self, *, limit: int = 50, offset: int = 0) -> Sequence[Document]: ...

    async def set_current_version(self, document_id: str, version: int, now: datetime) -> None: ...

    async def delete(self, document_id: str, now: datetime) -> bool:
        """Soft delete; True when a visible document was deleted."""

    async def add_version(self, version: DocumentVersion) -> None:
        """DuplicateError when (document_id, version) exists."""

    async def get_version(self, document_id: str, version: int) -> DocumentVersion | None: ...

    async def list_versions(self, document_id: str) -> Sequence[DocumentVersion]:
        """Oldest first."""

    async def find_version_by_hash(
        self, document_id: str, content_hash: str
    ) -> DocumentVersion | None: ...

    async def update_version_status(
        self,
        document_id: str,
        version: int,
        status: str,
        *,
        error: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None: ...

    async def update_version(self, version: DocumentVersion) -> None:
        """Replace ``content_hash``, ``status``, ``error``, ``meta`` and ``file_sha256`` of the
        stored ``(document_id, version)``; NotFoundError if absent."""

    async def delete_version(self, document_id: str, version: int) -> bool:
        """Hard delete (its chunks go with it); True when a row was removed."""

    async def find_by_file(self, file_sha256: str) -> DocumentVersion | None:
        """The newest (``created_at``, then ``version``) version with that file hash whose
        status is not ``failed`` and whose document is not deleted."""

    async def find_by_content(self, content_hash: str) -> DocumentVersion | None:
        """The newest ``ready`` version with that content hash whose document is not
        deleted."""

    async def list_current(self) -> Sequence[Document]:
        """Every document not deleted that has a current version, oldest first
        (``created_at``, then ``id``)."""

    async def count(self) -> int:
        """Documents not deleted."""


class ChunkRepository(Protocol):
    async def add_many(self, chunks: Sequence[StoredChunk]) -> None:
        """Insert; DuplicateError when (document_id, version, index) exists, ConflictError
        when the document version does not."""

    async def list_for_version(self, document_id: str, version: int) -> Sequence[StoredChunk]:
        """Ordered by ``index``."""

    async def delete_for_version(self, document_id: str, version: int) -> int:
        """Returns how many chunks were removed."""

    async def count_for_version(self, document_id: str, version: int) -> int: ...


class GenerationRepository(Protocol):
    async def add(self, generation: IndexGeneration) -> None:
        """DuplicateError when the id exists."""

    async def get(self, generation_id: str) -> IndexGeneration | None: ...

    async def list(self, *, limit: int = 50) -> Sequence[IndexGeneration]:
        """Newest (``created_at``) first."""

    async def update(self, generation: IndexGeneration) -> None:
        """Replace the mutable fields; NotFoundError if absent."""

    async def delete(self, generation_id: str) -> bool:
        """True when a row was removed; ConflictError for the active generation."""

    async def get_active(self) -> IndexGeneration | None:
        """The generation the active pointer names, None before any was activated."""

    async def set_active(self, generation_id: str, now: datetime) -> None:
        """Point the active pointer at the generation in one transactional switch.

        NotFoundError for an unknown id, ConflictError unless its status is ``ready``."""

    async def put_lexical(self, index: StoredLexicalIndex) -> None:
        """Store (or replace) a generation's lexical index; NotFoundError for an unknown
        generation. Deleting the generation deletes it."""

    async def get_lexical(self, generation_id: str) -> StoredLexicalIndex | None: ...


class GoldenSetRepository(Protocol):
    async def replace(self, questions: Sequence[GoldenQuestion]) -> None:
        """Make ``questions`` the whole golden set; DuplicateError for a repeated id."""

    async def list(self) -> Sequence[GoldenQuestion]:
        """Ordered by ``created_at``, then ``id``."""


class BlobRepository(Protocol):
    """Uploaded files by the SHA-256 (hex) of their bytes, readable by every instance."""

    async def put(self, sha256: str, data: bytes, now: datetime) -> None:
        """Store the bytes; a no-op when ``sha256`` is already stored."""

    async def get(self, sha256: str) -> bytes | None: ...

    async def delete_unreferenced(self) -> int:
        """Delete the blobs no document version's ``file_sha256`` names; returns how many."""


class EmbeddingCacheRepository(Protocol):
    """Vectors keyed by (embedder, dimensions, chunk text hash), stored as float32
    (:func:`encode_vector`): values read back are rounded to float32 precision."""

    async def get_many(
        self, embedder: str, dimensions: int, hashes: Sequence[str]
    ) -> dict[str, list[float]]:
        """The stored vectors among ``hashes`` (misses are left out); any number of hashes."""

    async def put_many(
        self,
        embedder: str,
        dimensions: int,
        vectors: Mapping[str, Sequence[float]],
        now: datetime,
    ) -> None:
        """Store vectors by text hash, leaving stored keys unchanged; InvalidInputError (and
        nothing stored) when a vector's length is not ``dimensions``."""

    async def count(self, embedder: str | None = None) -> int: ...


class SearchLogRepository(Protocol):
    async def append(self, record: SearchRecord) -> None:
        """Store the record; its ``id`` is assigned by the store."""

    async def list(
        self, generation_id: str | None = None, *, limit: int = 50
    ) -> Sequence[SearchRecord]:
        """Newest (``created_at``, then ``id``) first, optionally of one generation."""

    async def summary(self, generation_id: str) -> SearchSummary: ...

    async def purge(self, before: datetime) -> int:
        """Delete records created before ``before``; returns how many."""


@runtime_checkable
class KnowledgeUnitOfWork(Locking, Transaction, Protocol):
    """A transaction over the knowledge repositories only, with named locks."""

    @property
    def documents(self) -> DocumentRepository: ...

    @property
    def chunks(self) -> ChunkRepository: ...

    @property
    def generations(self) -> GenerationRepository: ...

    @property
    def golden_set(self) -> GoldenSetRepository: ...

    @property
    def blobs(self) -> BlobRepository: ...

    @property
    def embeddings(self) -> EmbeddingCacheRepository: ...

    @property
    def searches(self) -> SearchLogRepository: ...


class KnowledgeStorage(Protocol):
    """What a service of this context needs of a storage: its units of work (a full
    :class:`~avatarstack.ports.storage.Storage` is one)."""

    def unit_of_work(self) -> AbstractAsyncContextManager[KnowledgeUnitOfWork]: ...
