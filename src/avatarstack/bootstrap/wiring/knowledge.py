"""Knowledge wiring: parsers, the embedder, the vector store, the knowledge settings, and the
knowledge base's use-case services wired to each other."""

from __future__ import annotations

from collections.abc import Sequence

from avatarstack.adapters.chroma import ChromaKnowledgeStore, HnswOptions
from avatarstack.adapters.memory import MemoryKnowledgeStore
from avatarstack.adapters.parsers import choose_parser, parse_isolated
from avatarstack.bootstrap.settings import KbSettings, Settings
from avatarstack.bootstrap.wiring.choosing import pick
from avatarstack.core.knowledge import (
    DocumentService,
    EmbeddingCache,
    EvaluationService,
    GenerationIndexes,
    GenerationService,
    IngestionService,
    KnowledgeConfig,
    KnowledgeJobs,
    KnowledgeService,
    LexicalIndexes,
    ParseFunction,
    ParserChooser,
    SearchObserver,
    SearchService,
)
from avatarstack.core.text import ChunkerConfig
from avatarstack.plugins.manager import PluginError, PluginManager, collect
from avatarstack.ports.clock import Clock
from avatarstack.ports.documents import DocumentParser, ParsedDocument
from avatarstack.ports.embeddings import Embedder
from avatarstack.ports.knowledge import KnowledgeStore
from avatarstack.ports.lexical import LexicalIndexer
from avatarstack.ports.storage import Storage


def collect_parsers(pm: PluginManager) -> list[DocumentParser]:
    found: dict[str, DocumentParser] = collect(
        pm, "register_document_parsers", key=lambda p: p.name, kind="document parser"
    )
    return list(found.values())


def pick_embedder(pm: PluginManager, settings: Settings) -> Embedder:
    available: dict[str, Embedder] = collect(
        pm, "register_embedders", key=lambda e: e.name, kind="embedder", settings=settings
    )
    return pick(available, settings.kb.embedder, "AVATARSTACK_KB__EMBEDDER")


def make_knowledge_store(settings: Settings) -> KnowledgeStore:
    """A Chroma server when ``kb.chroma_url`` is set, else embedded Chroma in the data dir
    (one process only: the folder is locked)."""
    if settings.kb.chroma_url == "memory://":
        return MemoryKnowledgeStore()
    hnsw = HnswOptions(
        m=settings.kb.hnsw_m,
        construction_ef=settings.kb.hnsw_construction_ef,
        search_ef=settings.kb.hnsw_search_ef,
    )
    if settings.kb.chroma_url:
        return ChromaKnowledgeStore.remote(settings.kb.chroma_url, hnsw=hnsw)
    return ChromaKnowledgeStore.embedded(settings.chroma_path, hnsw=hnsw)


def default_dense_weight(kb: KbSettings) -> float:
    """The dense channel's weight when ``kb.dense_weight`` is unset: the offline hashing
    embedder's cosine carries little meaning beyond shared words (which BM25 weighs better), a
    model's carries paraphrases (measured on benchmarks/retrieval.py's corpus)."""
    return 0.1 if kb.embedder == "hashing" else 0.5


def make_knowledge_config(settings: Settings) -> KnowledgeConfig:
    kb = settings.kb
    target = kb.chunk_chars
    return KnowledgeConfig(
        chunker=ChunkerConfig(
            target_chars=target,
            overlap_chars=kb.chunk_overlap_chars,
            max_chars=max(target + kb.chunk_overlap_chars, int(target * 1.5)),
        ),
        keep_generations=kb.keep_generations,
        auto_activate=kb.auto_activate,
        search_k=kb.search_k,
        dense_weight=kb.dense_weight if kb.dense_weight is not None else default_dense_weight(kb),
        candidates=kb.search_candidates,
        related_terms=kb.related_terms,
    )


def make_knowledge(
    storage: Storage,
    store: KnowledgeStore,
    embedder: Embedder,
    clock: Clock,
    *,
    parsers: Sequence[DocumentParser],
    choose_parser: ParserChooser,
    parse: ParseFunction,
    config: KnowledgeConfig | None = None,
    observer: SearchObserver | None = None,
    lexical: LexicalIndexer | None = None,
) -> KnowledgeService:
    """The knowledge base's services wired to each other (each gets the part of the storage it
    declares); tests and benchmarks call this too, with adapters of their own."""
    config = config or KnowledgeConfig()
    jobs = KnowledgeJobs(storage, clock, attempts=config.job_attempts)
    embeddings = EmbeddingCache(storage, embedder, clock, batch=config.embed_batch)
    lexical_indexes = LexicalIndexes(storage, lexical, cache=config.lexical_cache)
    search = SearchService(
        storage, store, embedder, clock, lexical_indexes, config=config, observer=observer
    )
    evaluation = EvaluationService(storage, embedder, clock, search, config=config)
    indexes = GenerationIndexes(storage, store, embeddings, batch=config.index_batch)
    generations = GenerationService(
        storage,
        store,
        embeddings,
        clock,
        jobs,
        indexes,
        lexical_indexes,
        evaluation,
        config=config,
    )
    ingestion = IngestionService(
        storage,
        embeddings,
        clock,
        generations,
        parsers=parsers,
        choose_parser=choose_parser,
        parse=parse,
        config=config,
    )
    return KnowledgeService(
        jobs=jobs,
        documents=DocumentService(storage, clock, jobs, choose_parser=choose_parser),
        ingestion=ingestion,
        generations=generations,
        indexes=indexes,
        evaluation=evaluation,
        search=search,
    )


class Parsing:
    """The parse function and parser chooser the knowledge services get: the sandboxed child
    process with the configured limits, and the configured preference order."""

    def __init__(self, parsers: list[DocumentParser], settings: Settings) -> None:
        self.parsers = parsers
        self.prefer = tuple(settings.kb.parsers)
        unknown = sorted(set(self.prefer) - {p.name for p in parsers})
        if unknown:  # a typo, or a parser whose extra is not installed: say so, do not fall back
            known = ", ".join(sorted(p.name for p in parsers))
            raise PluginError(
                f"AVATARSTACK_KB__PARSERS names {', '.join(unknown)}, which is not available "
                f"(available: {known}); the pdfium parser needs pip install 'avatarstack[pdfium]'"
            )
        self.timeout = settings.kb.parse_timeout_seconds
        self.memory_bytes = settings.kb.parse_memory_mb * 1024 * 1024

    def choose(self, media_type: str | None, filename: str) -> DocumentParser:
        return choose_parser(self.parsers, media_type, filename, prefer=self.prefer)

    async def parse(self, parser: DocumentParser, data: bytes, filename: str) -> ParsedDocument:
        return await parse_isolated(
            parser, data, filename, timeout=self.timeout, memory_bytes=self.memory_bytes
        )
