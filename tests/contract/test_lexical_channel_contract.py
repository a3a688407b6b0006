"""The lexical (BM25) channel: the ``LexicalIndexer`` contract over bm25s and the pure-Python
reference, the generation's stored index over every storage backend (SQLite and PostgreSQL
included), and the knowledge service's hybrid search on top: built with the generation, rolled
back with it, and ranked the same by two instances that share the database and a Chroma server.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from avatarstack.adapters.bm25 import Bm25sIndexer
from avatarstack.adapters.chroma import ChromaKnowledgeStore
from avatarstack.adapters.embedders import HashingEmbedder
from avatarstack.adapters.memory.lexical import PythonBm25Indexer
from avatarstack.adapters.parsers import MarkdownParser, PlainTextParser, choose_parser
from avatarstack.bootstrap.wiring.knowledge import make_knowledge
from avatarstack.core.jobs import Worker
from avatarstack.core.knowledge import KnowledgeConfig, KnowledgeService
from avatarstack.core.lexical import query_tokens, tokens
from avatarstack.ports.documents import DocumentParser, ParsedDocument
from avatarstack.ports.errors import InvalidInputError, NotFoundError
from avatarstack.ports.lexical import LexicalIndexer
from avatarstack.ports.storage import IndexGeneration, Storage, StoredLexicalIndex
from avatarstack.testkit.chroma import ChromaServer
from avatarstack.testkit.clock import ManualClock

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DOCUMENTS = [
    "Halvard T142 cordless vacuum. The warranty of the unit is 3 years from purchase.",
    "Halvard T143 cordless vacuum. The warranty of the unit is 5 years from purchase.",
    "Halvard T142 cordless vacuum. On a full charge the unit runs for 7.5 hours.",
    "Norvik r114 cordless vacuum. The battery pack is rated at 18 V, 12V adapter.",
    "General safety notes for every cordless vacuum cleaner vacuum vacuum.",
]


@pytest.fixture(params=["bm25s", "python"])
def indexer(request: pytest.FixtureRequest) -> LexicalIndexer:
    return Bm25sIndexer() if request.param == "bm25s" else PythonBm25Indexer()


def build(indexer: LexicalIndexer, texts: Sequence[str]) -> Any:
    return indexer.load(indexer.build([list(dict.fromkeys(tokens(t))) for t in texts]))


# =========================================================================== indexer


def test_a_model_number_finds_its_own_document_first(indexer: LexicalIndexer) -> None:
    index = build(indexer, DOCUMENTS)

    found = index.search(query_tokens("How many years of warranty come with the T142?"), 5)

    assert found[0][0] == 0
    assert 1 in [position for position, _ in found]  # the sibling T143 still matches "warranty"
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)


def test_figures_glued_to_units_match_figures_written_apart(indexer: LexicalIndexer) -> None:
    index = build(indexer, DOCUMENTS)

    assert index.search(query_tokens("12 V adapter"), 1)[0][0] == 3
    assert index.search(query_tokens("the r114's battery"), 1)[0][0] == 3


def test_scores_are_bounded_by_the_ceiling_and_zero_without_a_shared_token(
    indexer: LexicalIndexer,
) -> None:
    index = build(indexer, DOCUMENTS)
    terms = query_tokens("T142 warranty years")

    scores = index.scores(terms, range(len(DOCUMENTS)))

    assert all(0.0 <= s <= index.ceiling(terms) for s in scores)
    assert index.scores(query_tokens("xylophone"), [0, 1]) == [0.0, 0.0]
    assert index.search(query_tokens("xylophone"), 5) == []
    assert index.search([], 5) == []
    assert index.size == len(DOCUMENTS)


def test_bm25s_and_the_reference_give_the_same_scores() -> None:
    fast, reference = build(Bm25sIndexer(), DOCUMENTS), build(PythonBm25Indexer(), DOCUMENTS)
    for query in ("T142 warranty years", "cordless vacuum", "12 V", "full charge hours"):
        terms = query_tokens(query)
        positions = list(range(len(DOCUMENTS)))

        assert fast.scores(terms, positions) == pytest.approx(
            reference.scores(terms, positions), rel=1e-5, abs=1e-6
        )
        assert fast.ceiling(terms) == pytest.approx(reference.ceiling(terms))
        assert [p for p, _ in fast.search(terms, 5)] == [p for p, _ in reference.search(terms, 5)]


def test_the_same_bytes_load_into_the_same_ranking(indexer: LexicalIndexer) -> None:
    data = indexer.build([tokens(t) for t in DOCUMENTS])
    terms = query_tokens("T142 cordless vacuum warranty")

    assert indexer.load(data).search(terms, 5) == indexer.load(bytes(data)).search(terms, 5)


def test_an_empty_index_finds_nothing(indexer: LexicalIndexer) -> None:
    index = indexer.load(indexer.build([]))

    assert index.size == 0
    assert index.search(query_tokens("anything"), 3) == []


def test_bytes_that_are_not_an_index_are_refused(indexer: LexicalIndexer) -> None:
    with pytest.raises(InvalidInputError):
        indexer.load(b"not an index at all")


# =========================================================================== storage


def generation(generation_id: str) -> IndexGeneration:
    return IndexGeneration(
        id=generation_id, embedder="hashing", dimensions=384, created_at=T0, updated_at=T0
    )


async def test_a_generation_stores_its_lexical_index_and_loses_it_with_the_generation(
    storage: Storage,
) -> None:
    stored = StoredLexicalIndex(
        generation_id="g1", indexer="bm25s", tokenizer="1", chunk_ids=["a:1:0"], data=b"\x00\x01"
    )
    async with storage.unit_of_work() as uow:
        await uow.generations.add(generation("g1"))
        await uow.generations.put_lexical(stored)
        await uow.generations.put_lexical(stored.model_copy(update={"data": b"\x02" * 70_000}))
        await uow.commit()
    async with storage.unit_of_work() as uow:
        loaded = await uow.generations.get_lexical("g1")
        with pytest.raises(NotFoundError):
            await uow.generations.put_lexical(stored.model_copy(update={"generation_id": "g2"}))
    async with storage.unit_of_work() as uow:
        assert await uow.generations.delete("g1")
        await uow.commit()
    async with storage.unit_of_work() as uow:
        gone = await uow.generations.get_lexical("g1")

    assert loaded is not None
    assert (loaded.indexer, loaded.tokenizer, loaded.chunk_ids) == ("bm25s", "1", ["a:1:0"])
    assert loaded.data == b"\x02" * 70_000
    assert gone is None


# =========================================================================== service

PARSERS: list[DocumentParser] = [PlainTextParser(), MarkdownParser()]
MANUAL = """# Halvard {model} cordless vacuum

## Overview

Thank you for choosing this cordless vacuum. {filler}

## Warranty

The manufacturer grants a warranty of {years} years from the date of purchase.
"""
FILLER = "Read the instructions before first use and keep them for later reference. " * 6


async def parse_here(parser: DocumentParser, data: bytes, filename: str) -> ParsedDocument:
    return parser.parse(data, filename)


def service(
    storage: Storage, store: Any, config: KnowledgeConfig | None = None
) -> KnowledgeService:
    return make_knowledge(
        storage,
        store,
        HashingEmbedder(),
        ManualClock(),
        parsers=PARSERS,
        choose_parser=lambda media, name: choose_parser(PARSERS, media, name),
        parse=parse_here,
        config=config or KnowledgeConfig(),
        lexical=Bm25sIndexer(),
    )


async def run_jobs(storage: Storage, knowledge: KnowledgeService) -> None:
    worker = Worker(storage, ManualClock(), knowledge.job_handlers())
    while await worker.run_once():
        pass


async def upload(
    storage: Storage, knowledge: KnowledgeService, model: str, years: int, doc: str | None = None
) -> str:
    text = MANUAL.format(model=model, years=years, filler=FILLER)
    result = await knowledge.documents.upload(
        text.encode(), filename=f"{model.lower()}.md", media_type=None, document_id=doc
    )
    await run_jobs(storage, knowledge)
    return result.document.id


async def test_hybrid_search_builds_both_channels_rolls_back_with_the_generation_and_ranks_alike(
    storage: Storage, chroma_server: ChromaServer
) -> None:
    first_store = ChromaKnowledgeStore.remote(chroma_server.url)
    first = service(storage, first_store)
    t142 = await upload(storage, first, "T142", 3)
    for model, years in (("T143", 4), ("T241", 2), ("K104", 6)):
        await upload(storage, first, model, years)
    old, _ = await first.generations.start_build(activate="yes")
    await run_jobs(storage, first)
    await upload(storage, first, "T142", 5, doc=t142)
    new, _ = await first.generations.start_build(activate="yes")
    await run_jobs(storage, first)
    question = "How many years of warranty come with the Halvard T142?"

    latest = await first.search.search(question, k=3)
    await first.generations.activate(old.id)
    rolled_back = await first.search.search(question, k=3)
    # another instance: its own Chroma client and lexical cache, the same database and server
    second_store = ChromaKnowledgeStore.remote(chroma_server.url)
    second = service(storage, second_store)
    elsewhere = await second.search.search(question, k=3)

    top = latest.hits[0]
    assert latest.generation_id == new.id
    assert (top.document_id, "5 years" in top.text) == (t142, True)
    assert top.channels == ("lexical", "dense")
    assert top.heading == "Warranty"
    assert 0.0 < top.score <= 1.0
    assert rolled_back.generation_id == old.id
    assert "3 years" in rolled_back.hits[0].text
    assert rolled_back.hits[0].document_id == t142
    assert [(h.chunk_id, h.score, h.channels) for h in elsewhere.hits] == [
        (h.chunk_id, h.score, h.channels) for h in rolled_back.hits
    ]
    await first_store.close()
    await second_store.close()


async def test_a_question_sharing_no_word_with_the_corpus_scores_low(
    storage: Storage, chroma_server: ChromaServer
) -> None:
    store = ChromaKnowledgeStore.remote(chroma_server.url)
    knowledge = service(storage, store)
    await upload(storage, knowledge, "T142", 3)
    await knowledge.generations.start_build(activate="yes")
    await run_jobs(storage, knowledge)

    result = await knowledge.search.search("quantum chromodynamics lattice", k=3)

    assert all("lexical" not in h.channels for h in result.hits)
    assert all(h.score < 0.15 for h in result.hits)  # below answer.min_score's default
    await store.close()


async def test_related_terms_let_a_paraphrase_find_the_passage_and_the_operator_can_add_some(
    storage: Storage, chroma_server: ChromaServer
) -> None:
    # the dense weight `serve` gives the hashing embedder
    plain_store = ChromaKnowledgeStore.remote(chroma_server.url)
    plain = service(storage, plain_store, KnowledgeConfig(dense_weight=0.1))
    t142 = await upload(storage, plain, "T142", 3)
    for model, years in (("T143", 4), ("K104", 6)):
        await upload(storage, plain, model, years)
    await plain.generations.start_build(activate="yes")
    await run_jobs(storage, plain)
    extended_store = ChromaKnowledgeStore.remote(chroma_server.url)
    extended = service(
        storage,
        extended_store,
        KnowledgeConfig(dense_weight=0.1, related_terms={"assurance": "warranty"}),
    )

    # built in: "covered" also matches "warranty"
    covered = await plain.search.search("How long is the Halvard T142 covered?", k=3)
    question = "What assurance comes with the Halvard T142?"
    without = await plain.search.search(question, k=3)
    with_it = await extended.search.search(question, k=3)

    assert (covered.hits[0].document_id, covered.hits[0].heading) == (t142, "Warranty")
    assert (with_it.hits[0].document_id, with_it.hits[0].heading) == (t142, "Warranty")
    assert 0.0 < with_it.hits[0].score <= 1.0
    same_chunk = [h for h in without.hits if h.chunk_id == with_it.hits[0].chunk_id]
    assert not same_chunk or same_chunk[0].score < with_it.hits[0].score
    await plain_store.close()
    await extended_store.close()
