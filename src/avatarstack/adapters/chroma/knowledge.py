"""``KnowledgeStore`` on Chroma: one collection per index generation.

* Embedded (``PersistentClient`` on a folder) or remote (``HttpClient`` from a URL).
* We always pass embeddings ourselves: collections are created and opened with
  ``embedding_function=None``, so Chroma never loads or downloads an embedding model.
* Telemetry is off (``Settings(anonymized_telemetry=False)``); nothing leaves the process but
  the calls to the configured server.
* chromadb is synchronous: every call runs in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import chromadb
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings
from chromadb.errors import ChromaError
from chromadb.errors import InvalidArgumentError as ChromaInvalidArgumentError
from chromadb.errors import NotFoundError as ChromaNotFoundError

from avatarstack.ports.errors import (
    AvatarstackError,
    ConflictError,
    IndexInUseError,
    InvalidInputError,
    NotFoundError,
    StorageError,
    UnavailableError,
)
from avatarstack.ports.knowledge import IndexedChunk, IndexInfo, SearchHit

T = TypeVar("T")

COLLECTION_PREFIX = "avs_gen_"
#: Chroma collection names: 3-512 chars of [a-zA-Z0-9._-], alphanumeric at both ends
_GENERATION_ID = re.compile(r"^(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]{0,400}[A-Za-z0-9])$")
#: fallback when the client cannot tell its maximum batch size
DEFAULT_BATCH_SIZE = 1000
#: held (flock) by the one process using an embedded folder
LOCK_FILE = "avatarstack.lock"


def _settings() -> Settings:
    return Settings(anonymized_telemetry=False)


def _lock_folder(folder: Path) -> IO[str]:
    """Hold an exclusive ``flock`` on the folder's lock file for the life of the process."""
    handle = (folder / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise IndexInUseError(
            f"the embedded Chroma folder {folder} is in use by {holder}; embedded Chroma is not "
            "safe for several processes: run one process, or run a Chroma server and set "
            "AVATARSTACK_KB__CHROMA_URL",
            holder=holder,
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    module = type(exc).__module__
    if module.startswith(("httpx", "httpcore")):
        return True
    # HttpClient() raises a bare ValueError when the server does not answer its first call
    return isinstance(exc, ValueError) and "could not connect" in str(exc).lower()


@dataclass(frozen=True, slots=True)
class HnswOptions:
    """The HNSW index of each new collection. The defaults reach recall@10 ≥ 0.95 against exact
    search at 100k chunks of the offline hashing embedder, whose vectors are nearly orthogonal
    (Chroma's own defaults, M=16 and ef=100, reach 0.35 there); see benchmarks/search.py."""

    m: int = 64
    construction_ef: int = 400
    search_ef: int = 400


class ChromaKnowledgeStore:
    """Vector index of each generation in its own Chroma collection ``avs_gen_<id>``.

    ``client`` is a chromadb client or a zero-argument factory returning one; a factory is
    called lazily (in a worker thread) on first use, so an unreachable server surfaces as
    ``UnavailableError`` from that call rather than at construction.
    """

    name = "chroma"

    def __init__(
        self, client: ClientAPI | Callable[[], ClientAPI], *, hnsw: HnswOptions | None = None
    ) -> None:
        self.hnsw = hnsw or HnswOptions()
        if isinstance(client, ClientAPI):
            self._client: ClientAPI | None = client
            self._factory: Callable[[], ClientAPI] | None = None
        else:
            self._client = None
            self._factory = client
        self._lock = threading.Lock()
        self._batch_size: int | None = None
        self._folder_lock: IO[str] | None = None
        #: the folder of an embedded store (None for a server)
        self.embedded_path: Path | None = None

    # ------------------------------------------------------------------ constructors

    @classmethod
    def embedded(cls, path: str | Path, *, hnsw: HnswOptions | None = None) -> ChromaKnowledgeStore:
        """An embedded, persistent Chroma in the folder ``path`` (created if needed).

        Chroma's embedded mode is not safe for several processes (each keeps its own in-memory
        HNSW indexes and SQLite handle), so the first use takes an exclusive lock on
        ``<path>/avatarstack.lock``; a second process gets :class:`IndexInUseError` naming the
        holder, and should use a Chroma server (``AVATARSTACK_KB__CHROMA_URL``) instead.
        """
        folder = Path(path)
        store: ChromaKnowledgeStore

        def factory() -> ClientAPI:
            folder.mkdir(parents=True, exist_ok=True)
            store._folder_lock = _lock_folder(folder)
            return chromadb.PersistentClient(path=str(folder), settings=_settings())

        store = cls(factory, hnsw=hnsw)
        store.embedded_path = folder
        return store

    @classmethod
    def remote(cls, url: str, *, hnsw: HnswOptions | None = None) -> ChromaKnowledgeStore:
        """A Chroma server at ``url`` (``http://host:8000`` or ``https://host``)."""
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise InvalidInputError(f"Chroma URL must be http(s)://host[:port], got {url!r}")
        ssl = parts.scheme == "https"
        host = parts.hostname
        port = parts.port or (443 if ssl else 8000)

        def factory() -> ClientAPI:
            return chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=_settings())

        return cls(factory, hnsw=hnsw)

    # ------------------------------------------------------------------ plumbing

    def _get_client(self) -> ClientAPI:
        with self._lock:
            if self._client is None:
                assert self._factory is not None
                self._client = self._factory()
            return self._client

    async def _run(self, action: str, func: Callable[[ClientAPI], T]) -> T:
        def call() -> T:
            return func(self._get_client())

        try:
            return await asyncio.to_thread(call)
        except AvatarstackError:
            raise
        except Exception as exc:
            raise self._translate(action, exc) from exc

    @staticmethod
    def _translate(action: str, exc: Exception) -> AvatarstackError:
        if _is_connection_error(exc):
            return UnavailableError(f"Chroma is unreachable ({action})")
        if isinstance(exc, ChromaNotFoundError):
            return NotFoundError(f"Chroma: {exc}")
        if isinstance(exc, ChromaError) and "already exists" in str(exc):
            return ConflictError(f"Chroma: {exc}")
        if isinstance(exc, ChromaInvalidArgumentError):
            return InvalidInputError(f"Chroma: {exc}")
        return StorageError(f"Chroma {action} failed: {type(exc).__name__}: {exc}")

    @staticmethod
    def collection_name(generation_id: str) -> str:
        if not _GENERATION_ID.match(generation_id):
            raise InvalidInputError(
                "generation_id must be letters, digits, '.', '_' or '-', "
                f"starting and ending with a letter or digit; got {generation_id!r}"
            )
        return f"{COLLECTION_PREFIX}{generation_id}"

    @staticmethod
    def _open(client: ClientAPI, name: str, generation_id: str) -> Collection:
        try:
            return client.get_collection(name, embedding_function=None)
        except ChromaNotFoundError as exc:
            raise NotFoundError(f"index generation {generation_id!r} does not exist") from exc

    @staticmethod
    def _dimensions(collection: Collection) -> int:
        return int((collection.metadata or {}).get("dimensions", 0) or 0)

    @classmethod
    def _check_query(
        cls, collection: Collection, vector: Sequence[float], generation_id: str
    ) -> None:
        dimensions = cls._dimensions(collection)
        if len(vector) != dimensions:
            raise InvalidInputError(
                f"query has {len(vector)} dimensions, "
                f"index generation {generation_id!r} expects {dimensions}"
            )

    def _max_batch(self, client: ClientAPI) -> int:
        if self._batch_size is None:
            try:
                size = int(client.get_max_batch_size())
            except Exception:
                size = DEFAULT_BATCH_SIZE
            self._batch_size = max(1, size)
        return self._batch_size

    # ------------------------------------------------------------------ the port

    async def create(self, generation_id: str, *, embedder: str, dimensions: int) -> None:
        name = self.collection_name(generation_id)
        if dimensions < 1:
            raise InvalidInputError(f"dimensions must be positive, got {dimensions}")

        def create(client: ClientAPI) -> None:
            client.create_collection(
                name,
                metadata={
                    "embedder": embedder,
                    "dimensions": dimensions,
                    "hnsw:space": "cosine",
                    "hnsw:M": self.hnsw.m,
                    "hnsw:construction_ef": self.hnsw.construction_ef,
                    "hnsw:search_ef": self.hnsw.search_ef,
                },
                embedding_function=None,
            )

        try:
            await self._run("create", create)
        except ConflictError as exc:
            raise ConflictError(f"index generation {generation_id!r} already exists") from exc

    async def add(self, generation_id: str, chunks: Sequence[IndexedChunk]) -> None:
        name = self.collection_name(generation_id)
        # the last occurrence of a chunk_id wins (Chroma refuses duplicates in one call)
        unique = list({chunk.chunk_id: chunk for chunk in chunks}.values())

        def add(client: ClientAPI) -> None:
            collection = self._open(client, name, generation_id)
            dimensions = self._dimensions(collection)
            for chunk in unique:
                if len(chunk.embedding) != dimensions:
                    raise InvalidInputError(
                        f"chunk {chunk.chunk_id!r} has {len(chunk.embedding)} dimensions, "
                        f"index generation {generation_id!r} expects {dimensions}"
                    )
            batch = self._max_batch(client)
            for start in range(0, len(unique), batch):
                part = unique[start : start + batch]
                vectors: list[Sequence[float]] = [c.embedding for c in part]
                collection.upsert(
                    ids=[c.chunk_id for c in part],
                    embeddings=vectors,
                    documents=[c.text for c in part],
                    metadatas=[
                        {
                            "document_id": c.document_id,
                            "version": c.version,
                            "page_start": c.page_start,
                            "page_end": c.page_end,
                            "title": c.title,
                            "heading": c.heading or "",
                        }
                        for c in part
                    ],
                )

        await self._run("add", add)

    async def query(
        self, generation_id: str, embedding: Sequence[float], k: int
    ) -> list[SearchHit]:
        name = self.collection_name(generation_id)
        if k < 1:
            raise InvalidInputError(f"k must be at least 1, got {k}")
        vector = [float(x) for x in embedding]

        def query(client: ClientAPI) -> dict[str, Any]:
            collection = self._open(client, name, generation_id)
            self._check_query(collection, vector, generation_id)
            queries: list[Sequence[float]] = [vector]
            result = collection.query(
                query_embeddings=queries,
                n_results=k,
                include=["documents", "metadatas", "distances"],
            )
            return dict(result)

        result = await self._run("query", query)
        hits = [
            self._hit(chunk_id, document, meta, 1.0 - float(distance))
            for chunk_id, document, meta, distance in zip(
                (result.get("ids") or [[]])[0],
                (result.get("documents") or [[]])[0] or [],
                (result.get("metadatas") or [[]])[0] or [],
                (result.get("distances") or [[]])[0] or [],
                strict=False,
            )
        ]
        hits.sort(key=lambda hit: (-hit.score, hit.chunk_id))
        return hits

    @staticmethod
    def _hit(chunk_id: str, document: str | None, meta: Any, score: float) -> SearchHit:
        meta = meta or {}
        return SearchHit(
            chunk_id=chunk_id,
            document_id=str(meta.get("document_id", "")),
            version=int(meta.get("version", 0)),
            page=int(meta.get("page_start", 0)),
            page_end=int(meta.get("page_end", 0)),
            text=document or "",
            score=min(1.0, max(-1.0, score)),
            title=str(meta.get("title") or ""),
            heading=str(meta.get("heading") or "") or None,
        )

    async def fetch(
        self, generation_id: str, chunk_ids: Sequence[str], embedding: Sequence[float]
    ) -> list[SearchHit]:
        name = self.collection_name(generation_id)
        wanted = list(dict.fromkeys(chunk_ids))
        vector = [float(x) for x in embedding]

        def fetch(client: ClientAPI) -> dict[str, Any]:
            collection = self._open(client, name, generation_id)
            self._check_query(collection, vector, generation_id)
            if not wanted:
                return {}
            return dict(
                collection.get(ids=wanted, include=["documents", "metadatas", "embeddings"])
            )

        result = await self._run("fetch", fetch)
        ids = list(result.get("ids") or [])
        if not ids:
            return []
        import numpy as np  # a dependency of chromadb

        matrix = np.asarray(result.get("embeddings"), dtype=np.float64)
        query = np.asarray(vector, dtype=np.float64)
        norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(query) or 1.0)
        cosines = (matrix @ query) / np.where(norms == 0.0, 1.0, norms)
        documents = result.get("documents") or [None] * len(ids)
        metadatas = result.get("metadatas") or [None] * len(ids)
        found = {
            chunk_id: self._hit(chunk_id, documents[i], metadatas[i], float(cosines[i]))
            for i, chunk_id in enumerate(ids)
        }
        return [found[c] for c in wanted if c in found]

    async def describe(self, generation_id: str) -> IndexInfo | None:
        name = self.collection_name(generation_id)

        def describe(client: ClientAPI) -> IndexInfo | None:
            try:
                collection = client.get_collection(name, embedding_function=None)
            except ChromaNotFoundError:
                return None
            metadata = collection.metadata or {}
            return IndexInfo(
                generation_id=generation_id,
                embedder=str(metadata.get("embedder", "")),
                dimensions=self._dimensions(collection),
                count=collection.count(),
            )

        return await self._run("describe", describe)

    async def drop(self, generation_id: str) -> None:
        name = self.collection_name(generation_id)

        def drop(client: ClientAPI) -> None:
            with contextlib.suppress(ChromaNotFoundError):
                client.delete_collection(name)

        await self._run("drop", drop)

    async def ping(self) -> None:
        await self._run("ping", lambda client: client.heartbeat())

    async def claim(self) -> None:
        """An embedded folder is opened and locked now; a server is left for its first use."""
        if self.embedded_path is not None:
            await self.ping()

    async def close(self) -> None:
        """Forget the client and release the embedded folder's lock."""
        with self._lock:
            if self._factory is not None:
                self._client = None
            if self._folder_lock is not None:
                self._folder_lock.close()  # closing the descriptor releases the flock
                self._folder_lock = None
