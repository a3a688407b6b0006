"""Index generations: each built (job ``kb.build``) from the current version of every document
into its own vector index and lexical index, validated and evaluated; activation moves one
pointer in storage, so searches always hit exactly one generation; rollback activates an older
one; old generations are pruned. Also the one check that a generation matches the configured
embedder (at startup, on builds, index restores and activation)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from avatarstack.core.jobs import JobContext
from avatarstack.core.knowledge.embedding_cache import EmbeddingCache
from avatarstack.core.knowledge.evaluation import EvaluationService
from avatarstack.core.knowledge.jobs import KnowledgeJobs
from avatarstack.core.knowledge.lexical_indexes import LexicalIndexes
from avatarstack.core.knowledge.models import (
    BUILD_JOB,
    GENERATIONS_LOCK,
    KnowledgeConfig,
    KnowledgeServiceStorage,
    chunk_id,
    generation_chunks,
    index_title,
    text_hash,
)
from avatarstack.core.lexical import indexed_text
from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import (
    AvatarstackError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from avatarstack.ports.knowledge import IndexedChunk, KnowledgeStore
from avatarstack.ports.storage import (
    IndexGeneration,
    Job,
    KnowledgeUnitOfWork,
    StoredChunk,
    new_id,
)

__all__ = ["GenerationService"]

log = structlog.get_logger("avatarstack.knowledge")


async def _titles(uow: KnowledgeUnitOfWork, chunks: Sequence[StoredChunk]) -> list[str]:
    """Each chunk's document title (see :func:`~.models.index_title`)."""
    titles: dict[tuple[str, int], str] = {}
    for key in dict.fromkeys((c.document_id, c.version) for c in chunks):
        document = await uow.documents.get(key[0])
        version = await uow.documents.get_version(*key)
        titles[key] = index_title(document, version)
    return [titles[(c.document_id, c.version)] for c in chunks]


class GenerationService:
    """Use cases of index generations, and the build job."""

    def __init__(
        self,
        storage: KnowledgeServiceStorage,
        store: KnowledgeStore,
        embeddings: EmbeddingCache,
        clock: Clock,
        jobs: KnowledgeJobs,
        lexical: LexicalIndexes,
        evaluation: EvaluationService,
        *,
        config: KnowledgeConfig,
    ) -> None:
        self._storage = storage
        self._store = store
        self._embeddings = embeddings
        self._embedder = embeddings.embedder
        self._clock = clock
        self._jobs = jobs
        self._lexical = lexical
        self._evaluation = evaluation
        self._config = config

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
            job = self._jobs.new(
                BUILD_JOB, {"generation_id": generation.id, "activate": activate}, owner_id
            )
            generation = generation.model_copy(update={"job_id": job.id})
            await uow.generations.add(generation)
            await uow.jobs.enqueue(job)
            await uow.commit()
        self._jobs.queued(job)
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
            chunks = await generation_chunks(uow, generation)
            titles = await _titles(uow, chunks)
        texts = [indexed_text(t, c.heading, c.text) for t, c in zip(titles, chunks, strict=True)]
        hashes = [text_hash(t) for t in texts]
        self._require_own_embedder(
            generation,
            InvalidInputError,
            f"generation {generation_id} is for embedder {generation.embedder!r}, this "
            f"worker embeds with {self._embedder.name!r}",
        )
        await ctx.progress(0.02, "embedding")
        vectors = await self._embeddings.vectors(hashes, texts, ctx, 0.02, 0.6)
        await self._fill_index(generation, chunks, titles, hashes, vectors, ctx)
        if self._lexical.enabled:
            await ctx.progress(0.86, "lexical index")
            await self._lexical.build(generation_id, chunks, texts)
        await ctx.progress(0.92, "evaluating")
        metrics: dict[str, Any] = {"chunks": len(chunks), "built_at": self._clock.now().isoformat()}
        golden = await self._evaluation.evaluate_index(generation_id, generation, chunks)
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
        if activate == "yes" or (
            activate == "if_better" and await self._evaluation.no_regression(golden)
        ):
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
        batch = self._config.index_batch
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
            chunks = await generation_chunks(uow, generation)
            titles = await _titles(uow, chunks)
            texts = [
                indexed_text(t, c.heading, c.text) for t, c in zip(titles, chunks, strict=True)
            ]
            hashes = [text_hash(t) for t in texts]
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
                await self._embeddings.vectors(
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
            await uow.lock(GENERATIONS_LOCK)
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
        keep = self._config.keep_generations
        done = [g for g in generations if g.status != "building"]
        doomed = [g for g in done[keep:] if active is None or g.id != active.id]
        dropped: list[str] = []
        for generation in doomed:
            await self._store.drop(generation.id)
            async with self._storage.unit_of_work() as uow:
                await uow.lock(GENERATIONS_LOCK)
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
