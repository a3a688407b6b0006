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

One use-case service a reason to change, grouped by :class:`KnowledgeService`:
:mod:`.documents` (uploads, versions), :mod:`.ingestion` (the ingest job), :mod:`.generations`
(builds, activation, pruning), :mod:`.indexes` (each generation's vector index, and its repair),
:mod:`.evaluation` (the golden set), :mod:`.search`, and :mod:`.jobs` (the jobs they queue).
Everything here talks to ports only; the composition root wires the services and injects the
parse function (the child-process sandbox), the parser chooser, the vector store and the
embedder.
"""

from __future__ import annotations

from dataclasses import dataclass

from avatarstack.core.jobs import JobHandler
from avatarstack.core.knowledge.documents import DocumentService
from avatarstack.core.knowledge.embedding_cache import EmbeddingCache
from avatarstack.core.knowledge.evaluation import EvaluationService
from avatarstack.core.knowledge.generations import GenerationService
from avatarstack.core.knowledge.indexes import GenerationIndexes
from avatarstack.core.knowledge.ingestion import IngestionService
from avatarstack.core.knowledge.jobs import KnowledgeJobs
from avatarstack.core.knowledge.lexical_indexes import LexicalIndexes
from avatarstack.core.knowledge.models import (
    BUILD_JOB,
    INGEST_JOB,
    GoldenMetrics,
    GoldenQuestionInput,
    KnowledgeConfig,
    KnowledgeServiceStorage,
    KnowledgeServiceUnitOfWork,
    ParseFunction,
    ParserChooser,
    SearchObserver,
    SearchResult,
    Upload,
    chunk_id,
    index_title,
    safe_filename,
)
from avatarstack.core.knowledge.search import SearchService

__all__ = [
    "BUILD_JOB",
    "INGEST_JOB",
    "DocumentService",
    "EmbeddingCache",
    "EvaluationService",
    "GenerationIndexes",
    "GenerationService",
    "GoldenMetrics",
    "GoldenQuestionInput",
    "IngestionService",
    "KnowledgeConfig",
    "KnowledgeJobs",
    "KnowledgeService",
    "KnowledgeServiceStorage",
    "KnowledgeServiceUnitOfWork",
    "LexicalIndexes",
    "ParseFunction",
    "ParserChooser",
    "SearchObserver",
    "SearchResult",
    "SearchService",
    "Upload",
    "chunk_id",
    "index_title",
    "safe_filename",
]


@dataclass(frozen=True)
class KnowledgeService:
    """The knowledge base's services, as the composition root wired them (one instance per
    application): callers use the service of their use case, e.g.
    ``knowledge.documents.upload(...)`` or ``knowledge.search.search(...)``."""

    jobs: KnowledgeJobs
    documents: DocumentService
    ingestion: IngestionService
    generations: GenerationService
    indexes: GenerationIndexes
    evaluation: EvaluationService
    search: SearchService

    def job_handlers(self) -> dict[str, JobHandler]:
        """The handlers of the jobs the services queue, for the job worker."""
        return {INGEST_JOB: self.ingestion.run_ingest, BUILD_JOB: self.generations.run_build}
