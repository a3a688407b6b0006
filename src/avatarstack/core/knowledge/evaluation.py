"""The golden set (questions with the document and/or phrase a good answer finds) and the
evaluation of a generation on it: hit rate, recall@k and MRR (the metric code of
:mod:`avatarstack.core.evaluation`), and the gate an ``if_better`` build passes before it is
activated."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from avatarstack.core.evaluation import first_relevant_rank, phrase_key, rank_figures
from avatarstack.core.knowledge.models import (
    GoldenMetrics,
    GoldenQuestionInput,
    KnowledgeConfig,
    chunk_id,
    generation_chunks,
)
from avatarstack.core.knowledge.search import SearchService
from avatarstack.ports.clock import Clock
from avatarstack.ports.embeddings import Embedder
from avatarstack.ports.errors import ConflictError, FieldError, InvalidInputError, NotFoundError
from avatarstack.ports.knowledge import SearchHit
from avatarstack.ports.storage import (
    GoldenQuestion,
    IndexGeneration,
    KnowledgeStorage,
    StoredChunk,
    new_id,
)

__all__ = ["EvaluationService"]

log = structlog.get_logger("avatarstack.knowledge")

_MAX_GOLDEN = 500


@dataclass
class _Relevance:
    question: GoldenQuestion
    phrase: str | None = None
    relevant: set[str] = field(default_factory=set)


class EvaluationService:
    """Use cases of the golden set, and the scores of generations on it."""

    def __init__(
        self,
        storage: KnowledgeStorage,
        embedder: Embedder,
        clock: Clock,
        search: SearchService,
        *,
        config: KnowledgeConfig,
    ) -> None:
        self._storage = storage
        self._embedder = embedder
        self._clock = clock
        self._search = search
        self._config = config

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
        metrics = await self.evaluate_index(generation_id, generation)
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

    async def no_regression(self, candidate: GoldenMetrics | None) -> bool:
        """True when there is nothing to compare with, or the candidate scores at least as well
        as the active generation on the current golden set (hit@k and recall@k not lower, MRR
        not lower by more than 0.01)."""
        async with self._storage.unit_of_work() as uow:
            active = await uow.generations.get_active()
        if active is None:
            return True
        if candidate is None:
            return True
        baseline = await self.evaluate_index(active.id)
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

    async def evaluate_index(
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
                chunks = await generation_chunks(uow, generation)
        k = self._config.eval_k
        judged = [self._relevance(q, chunks) for q in questions]
        vectors = await self._embedder.embed([q.question for q in questions])
        recall = 0.0
        firsts: list[int | None] = []
        missed: list[str] = []
        for item, vector in zip(judged, vectors, strict=True):
            text = " ".join(item.question.question.split())
            hits = await self._search.rank(generation_id, text, vector, k)
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
            question, phrase_key(question.expected_phrase) if question.expected_phrase else None
        )
        for c in chunks:
            if question.expected_document_id and c.document_id != question.expected_document_id:
                continue
            if item.phrase and item.phrase not in phrase_key(c.text):
                continue
            item.relevant.add(chunk_id(c.document_id, c.version, c.index))
        return item

    @staticmethod
    def _matches(item: _Relevance, hit: SearchHit) -> bool:
        return hit.chunk_id in item.relevant
