"""Index generations: each built (job ``kb.build``) from the current version of every document
into its own vector index and lexical index, validated and evaluated; activation moves one
pointer in storage, so searches always hit exactly one generation; rollback activates an older
one; old generations are pruned. Also the startup check that the active generation matches the
configured embedder (the check itself is ``EmbeddingCache.require_own``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from avatarstack.core.jobs import JobContext
from avatarstack.core.knowledge.embedding_cache import EmbeddingCache
from avatarstack.core.knowledge.evaluation import EvaluationService
from avatarstack.core.knowledge.indexes import GenerationIndexes, index_input
from avatarstack.core.knowledge.jobs import KnowledgeJobs
from avatarstack.core.knowledge.lexical_indexes import LexicalIndexes
from avatarstack.core.knowledge.models import (
    BUILD_JOB,
    GENERATIONS_LOCK,
    KnowledgeConfig,
    KnowledgeServiceStorage,
)
from avatarstack.ports.clock import Clock
from avatarstack.ports.errors import ConflictError, InvalidInputError, NotFoundError
from avatarstack.ports.knowledge import KnowledgeStore
from avatarstack.ports.storage import IndexGeneration, Job, new_id

__all__ = ["GenerationService"]

log = structlog.get_logger("avatarstack.knowledge")


class GenerationService:
    """Use cases of index generations, and the build job."""

    def __init__(
        self,
        storage: KnowledgeServiceStorage,
        store: KnowledgeStore,
        embeddings: EmbeddingCache,
        clock: Clock,
        jobs: KnowledgeJobs,
        indexes: GenerationIndexes,
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
        self._indexes = indexes
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
        self._embeddings.require_own(
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
            source = await index_input(uow, generation)
        chunks = source.chunks
        self._embeddings.require_own(
            generation,
            InvalidInputError,
            f"generation {generation_id} is for embedder {generation.embedder!r}, this "
            f"worker embeds with {self._embedder.name!r}",
        )
        await ctx.progress(0.02, "embedding")
        vectors = await self._embeddings.vectors(source.hashes, source.texts, ctx, 0.02, 0.6)
        await self._indexes.fill(generation, source, vectors, ctx)
        if self._lexical.enabled:
            await ctx.progress(0.86, "lexical index")
            await self._lexical.build(generation_id, chunks, source.texts)
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
        self._embeddings.require_own(
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
