"""Vector search on embedded Chroma against exact brute-force search over the same vectors.

Run on demand (never part of the test suite)::

    .venv/bin/python benchmarks/search.py [--sizes 10000,100000] [--queries 200]
    .venv/bin/python benchmarks/search.py --sizes 100000 --hnsw search_ef=400 \
        --hnsw M=64,construction_ef=400,search_ef=400

For each size, one child process per index variant (so memory figures do not mix):

1. synthetic chunk texts: sentences of words drawn with Zipf-like frequencies from a vocabulary
   (English function words first, then made-up words), ~800 characters each, grouped into
   documents of 10 chunks that share topic words; questions built from the words of a random
   chunk (its "source"); see benchmarks/README.md for how the mix was calibrated;
2. embedding with the default :class:`HashingEmbedder` (384 dimensions): chunks/s, one thread,
   as the knowledge service runs it (the first variant embeds, later ones reuse the vectors);
3. adding to ``ChromaKnowledgeStore.embedded(<temp dir>)`` in batches of ``--batch``: chunks/s;
4. ``--queries`` searches through ``ChromaKnowledgeStore.query`` with k=10 (after 10 untimed
   ones): p50/p99 latency, the same on chromadb's ``Collection`` directly (what the adapter
   adds), and recall@10, top-1 and cosine ratio against the baseline;
5. the baseline: exact cosine search with numpy over the same float32 vectors (a matrix-vector
   product and a partial sort, one BLAS thread), timed on each query right after Chroma, so the
   latency ratio is visible;
6. memory: RSS growth of the child from before the store is opened to after the adds and the
   queries (texts and vectors are already loaded then), scaled per 100k chunks; and the size of
   the Chroma folder on disk.

Recall@10 counts a Chroma hit as correct when its exact cosine reaches the 10th best exact
cosine (so ties cannot count as misses). The first variant is the adapter as it is: the
collection created by ``ChromaKnowledgeStore.create`` (its default ``HnswOptions``). Each ``--hnsw``
adds a variant whose collection is created with the same metadata plus ``hnsw:<key>`` entries
(``search_ef``, ``construction_ef``, ``M``), as a change to ``create`` would; adds and queries
still go through the adapter. Goals from the issue: p50 ≤ 15 ms and recall@10 ≥ 0.95. Exit
status 0 whether or not they are met (this is a measurement); 1 when a run failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

# ``benchmarks/http.py`` would shadow the standard library's ``http`` package that chromadb
# (through httpx) imports: ``_common`` takes this folder off ``sys.path``, so import it first
from _common import children_cpu, exit_on_sigterm, percentile
from chromadb import PersistentClient
from chromadb import __version__ as chromadb_version
from chromadb.config import Settings

from avatarstack.adapters.chroma import ChromaKnowledgeStore
from avatarstack.adapters.embedders.hashing import HashingEmbedder
from avatarstack.ports.knowledge import IndexedChunk

SCRIPT = Path(__file__).resolve()
K = 10
WARMUP_QUERIES = 10
GOAL_P50_MS = 15.0
GOAL_RECALL = 0.95
GENERATION = "bench"
HNSW_KEYS = {
    "search_ef": "hnsw:search_ef",
    "construction_ef": "hnsw:construction_ef",
    "M": "hnsw:M",
}

# --------------------------------------------------------------------------- synthetic text

#: the most frequent words of English text, in rank order: they head the Zipf distribution
FUNCTION_WORDS = (  # noqa: SIM905 (word lists read better as text)
    "the of and to a in is that for it as with was on be by are this at from or an which "
    "not but have has can its we their these more also been one other were may such than "
    "into all used when there between two each both only most some however what about"
).split()
ONSETS = (  # noqa: SIM905
    "b c d f g h j k l m n p r s t v w y z bl br ch cl cr dr fl fr gl gr kn ph pl pr qu sc sh "
    "sk sl sm sn sp st sw th tr tw wh wr scr spr str"
).split()
VOWELS = "a e i o u y ai au ea ee ei ie oa oo ou ue".split()  # noqa: SIM905
CODAS = ("", "", "", *"n t s r l d m ng nt st rd ck ll ss th sh tch x rk mp nd".split())  # noqa: SIM905
TEMPLATES = (
    "what is the {} of {}",
    "how does {} affect {} in {}",
    "why is {} used for {}",
    "which {} {} is {}",
    "explain {} and {} for {} {}",
    "{} {} {}",
    "when should the {} {} be {}",
    "difference between {} and {}",
)
CHUNK_CHARS = 800
# calibrated so that, with HashingEmbedder, the chunks resemble 800-character chunks of English
# prose (Python's documentation, ``pydoc_data.topics``): mean cosine of two chunks ~0.14 (0.135),
# of a chunk's nearest neighbour ~0.50 (0.56), of its 10th nearest ~0.29 (0.30)
CHUNKS_PER_DOCUMENT = 10
TOPIC_WORDS = 20
TOPIC_SHARE = 0.4


def vocabulary(size: int, rng: random.Random) -> list[str]:
    """Function words, then distinct made-up words, longer as they get rarer (as in English)."""
    words = list(FUNCTION_WORDS)
    seen = set(words)
    while len(words) < size:
        syllables = 1 + min(3, int(rng.expovariate(1.0) + len(words) / (size / 2.5)))
        word = "".join(
            (rng.choice(ONSETS) if rng.random() < 0.85 else "")
            + rng.choice(VOWELS)
            + rng.choice(CODAS)
            for _ in range(syllables)
        )
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def zipf_probabilities(size: int, exponent: float = 1.0, shift: float = 2.7) -> np.ndarray:
    """Zipf-Mandelbrot: p(rank r) ∝ 1 / (r + shift)^exponent."""
    weights = 1.0 / np.power(np.arange(1, size + 1) + shift, exponent)
    return weights / weights.sum()


def make_chunks(count: int, seed: int, vocab_size: int = 30_000) -> list[str]:
    """``count`` chunk texts of about :data:`CHUNK_CHARS` characters."""
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    words = vocabulary(vocab_size, rng)
    global_p = zipf_probabilities(vocab_size)
    topic_p = zipf_probabilities(TOPIC_WORDS, exponent=0.8)
    # enough draws for every chunk (about 130 words each), taken as needed
    per_chunk = CHUNK_CHARS // 4
    draws = np_rng.choice(vocab_size, size=(count, per_chunk), p=global_p)
    topic_draws = np_rng.choice(TOPIC_WORDS, size=(count, per_chunk), p=topic_p)
    use_topic = np_rng.random((count, per_chunk)) < TOPIC_SHARE
    chunks = []
    topic: np.ndarray = np.empty(0, dtype=np.int64)
    for i in range(count):
        if i % CHUNKS_PER_DOCUMENT == 0:  # a new document: new topic words (mid-frequency)
            topic = np_rng.choice(np.arange(200, vocab_size), size=TOPIC_WORDS, replace=False)
        picks = np.where(use_topic[i], topic[topic_draws[i]], draws[i])
        stream = [words[j] for j in picks]
        sentences = []
        length = 0
        position = 0
        while length < CHUNK_CHARS - 40 and position < len(stream):
            n = rng.randint(6, 26)
            sentence = stream[position : position + n]
            position += n
            if len(sentence) > 8 and rng.random() < 0.4:
                sentence[rng.randint(3, len(sentence) - 3)] += ","
            text = " ".join(sentence)
            text = text[0].upper() + text[1:] + "."
            sentences.append(text)
            length += len(text) + 1
        chunks.append(" ".join(sentences))
    return chunks


def make_queries(
    chunks: Sequence[str], count: int, seed: int, vocab_size: int = 30_000
) -> tuple[list[str], list[int]]:
    """Questions about random chunks, and those chunks' indexes. A question fills a template
    with content words of its chunk, mostly its rarer ones (people ask about specific terms)."""
    rng = random.Random(seed + 1)
    rank = {word: i for i, word in enumerate(vocabulary(vocab_size, random.Random(seed)))}
    stop = set(FUNCTION_WORDS)
    queries, sources = [], []
    for _ in range(count):
        source = rng.randrange(len(chunks))
        words = {w.strip(".,").lower() for w in chunks[source].split()} - stop - {""}
        content = sorted(words, key=lambda w: -rank.get(w, 0))  # rarest first
        template = rng.choice(TEMPLATES)
        slots = template.count("{}")
        rare = content[: max(slots, len(content) // 3)]
        picked = [
            rng.choice(rare) if rng.random() < 0.7 else rng.choice(content) for _ in range(slots)
        ]
        queries.append(template.format(*picked) + "?")
        sources.append(source)
    return queries, sources


# --------------------------------------------------------------------------- measuring


def rss_bytes() -> tuple[int | None, str]:
    """Resident set size of this process, and where it came from."""
    try:
        import psutil
    except ImportError:
        pass
    else:
        return int(psutil.Process().memory_info().rss), "psutil"
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024, "/proc/self/status"
    except OSError:
        pass
    import resource

    # peak, not current: the best there is without /proc (KiB on Linux, bytes on macOS)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if sys.platform == "darwin" else 1024), "getrusage peak"


def release_free_memory() -> None:
    """Collect garbage and hand freed heap back to the OS, so RSS shows what is still used."""
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if libc_name and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc_name).malloc_trim(0)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def machine_cpu() -> tuple[float, float] | None:
    """CPU seconds the whole machine has been busy, and has had in all (summed over its cores),
    since boot (Linux ``/proc/stat``)."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    ticks = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / hz, sum(ticks) / hz


def run_worker(job: Job) -> Outcome | None:
    """Run ``job`` in a child process (None if it failed), and note how busy the rest of the
    machine was meanwhile."""
    env = dict(os.environ)
    # one BLAS thread for the baseline, like the one thread that answers a Chroma query (and no
    # BLAS threads waiting on each other when the machine is busy)
    env |= {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    machine_before, own_before = machine_cpu(), children_cpu()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--worker", json.dumps(asdict(job))],
        stdout=subprocess.PIPE,
        env=env,
        check=False,
    )
    machine_after, own = machine_cpu(), children_cpu() - own_before
    if done.returncode != 0:
        return None
    outcome = Outcome(**json.loads(done.stdout.decode().splitlines()[-1]))
    if machine_before and machine_after and machine_after[1] > machine_before[1]:
        busy = machine_after[0] - machine_before[0] - own
        cores = os.cpu_count() or 1
        total = machine_after[1] - machine_before[1]
        outcome.other_cpu_pct = max(0.0, 100 * cores * busy / total)
    return outcome


def progress(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Outcome:
    size: int
    variant: str
    effective_hnsw: dict[str, Any]
    text_chars: float
    embed_seconds: float | None
    add_seconds: float
    query_ms: list[float]
    raw_ms: list[float]
    query_embed_ms: list[float]
    exact_ms: list[float]
    recall: float
    top1: float
    cos_ratio: float
    source_found_chroma: float
    source_found_exact: float
    rss_before: int | None
    rss_after: int | None
    rss_source: str
    disk_bytes: int
    #: CPU the rest of the machine used during the run, % of one core (set by the parent)
    other_cpu_pct: float | None = None

    def p(self, values: list[float], q: float) -> float:
        value = percentile(sorted(values), q)
        assert value is not None
        return value


@dataclass(frozen=True)
class Job:
    size: int
    variant: str
    hnsw: dict[str, int]
    queries: int
    batch: int
    seed: int
    workdir: str


def exact_top(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """The baseline: indexes of the :data:`K` best cosines, best first (unit vectors, so a
    matrix-vector product), by a partial sort."""
    scores = matrix @ vector
    top = np.argpartition(-scores, K)[:K]
    return top[np.argsort(-scores[top])]


async def run_job(job: Job) -> Outcome:
    workdir = Path(job.workdir)
    cache_texts = workdir / f"texts-{job.size}.json"
    cache_vectors = workdir / f"vectors-{job.size}.npy"
    embedder = HashingEmbedder()
    embed_seconds = None
    if cache_vectors.exists():
        texts = json.loads(cache_texts.read_text())
        matrix = np.load(cache_vectors)
        progress(f"{job.size} chunks: reusing the texts and vectors of the first variant")
    else:
        started = time.perf_counter()
        texts = make_chunks(job.size, job.seed)
        progress(f"{job.size} chunks generated in {time.perf_counter() - started:.1f} s")
        matrix = np.empty((job.size, embedder.dimensions), dtype=np.float32)
        started = time.perf_counter()
        step = 256  # the knowledge service's default embed batch
        for offset in range(0, job.size, step):
            matrix[offset : offset + step] = embedder.embed_sync(texts[offset : offset + step])
            if offset and offset % 20_000 == 0:
                progress(f"embedded {offset}")
        embed_seconds = time.perf_counter() - started
        progress(f"embedded {job.size} in {embed_seconds:.1f} s")
        cache_texts.write_text(json.dumps(texts))
        np.save(cache_vectors, matrix)
    queries, sources = make_queries(texts, job.queries + WARMUP_QUERIES, job.seed)
    query_embed_ms = []
    query_vectors = []
    for question in queries:
        started = time.perf_counter()
        vector = embedder.embed_sync([question])[0]
        query_embed_ms.append((time.perf_counter() - started) * 1000)
        query_vectors.append(np.asarray(vector, dtype=np.float32))

    folder = (
        workdir / f"chroma-{job.size}-{''.join(c if c.isalnum() else '_' for c in job.variant)}"
    )
    release_free_memory()
    rss_before, rss_source = rss_bytes()
    store = ChromaKnowledgeStore.embedded(folder)
    try:
        if job.hnsw:
            # what a change to ChromaKnowledgeStore.create would do: same metadata plus HNSW keys
            await store.ping()  # opens the client (and the folder lock) first
            client = PersistentClient(
                path=str(folder), settings=Settings(anonymized_telemetry=False)
            )
            metadata = {
                "embedder": embedder.name,
                "dimensions": embedder.dimensions,
                "hnsw:space": "cosine",
                **{HNSW_KEYS[key]: value for key, value in job.hnsw.items()},
            }
            client.create_collection(
                ChromaKnowledgeStore.collection_name(GENERATION),
                metadata=metadata,
                embedding_function=None,
            )
        else:
            await store.create(GENERATION, embedder=embedder.name, dimensions=embedder.dimensions)
            client = PersistentClient(
                path=str(folder), settings=Settings(anonymized_telemetry=False)
            )
        collection = client.get_collection(ChromaKnowledgeStore.collection_name(GENERATION))
        effective = dict((collection.configuration or {}).get("hnsw") or {})

        started = time.perf_counter()
        for offset in range(0, job.size, job.batch):
            part = matrix[offset : offset + job.batch].tolist()
            await store.add(
                GENERATION,
                [
                    IndexedChunk(
                        chunk_id=f"c{offset + i}",
                        document_id=f"d{(offset + i) // CHUNKS_PER_DOCUMENT}",
                        version=1,
                        page_start=1,
                        page_end=1,
                        text=texts[offset + i],
                        embedding=vector,
                    )
                    for i, vector in enumerate(part)
                ],
            )
            done = offset + job.batch
            if done % 20_000 == 0 and done < job.size:
                progress(f"{job.variant}: added {done} ({time.perf_counter() - started:.0f} s)")
        add_seconds = time.perf_counter() - started
        progress(f"{job.variant}: added {job.size} in {add_seconds:.1f} s; querying")

        # the adapter and Chroma directly (in turn first, so neither always finds the other's
        # pages in the cache), then the baseline on the same query: all under the same load
        found: list[list[int]] = []
        exact: list[np.ndarray] = []
        query_ms, raw_ms, exact_ms = [], [], []

        def raw_query(vector: list[float]) -> float:
            started = time.perf_counter()
            collection.query(
                query_embeddings=[vector],
                n_results=K,
                include=["documents", "metadatas", "distances"],
            )
            return (time.perf_counter() - started) * 1000

        for number, vector in enumerate(query_vectors):
            as_list = vector.tolist()
            if number % 2:
                raw_elapsed = raw_query(as_list)
            started = time.perf_counter()
            hits = await store.query(GENERATION, as_list, K)
            elapsed = (time.perf_counter() - started) * 1000
            if not number % 2:
                raw_elapsed = raw_query(as_list)
            started = time.perf_counter()
            top = exact_top(matrix, vector)
            exact_elapsed = (time.perf_counter() - started) * 1000
            if number >= WARMUP_QUERIES:
                query_ms.append(elapsed)
                raw_ms.append(raw_elapsed)
                found.append([int(hit.chunk_id[1:]) for hit in hits])
                exact_ms.append(exact_elapsed)
                exact.append(top)
        release_free_memory()
        rss_after, _ = rss_bytes()
    finally:
        await store.close()

    correct, top1, cos_ratios = 0, 0, []
    for vector, ids, best in zip(query_vectors[WARMUP_QUERIES:], found, exact, strict=True):
        got = matrix[ids[:K]] @ vector
        want = matrix[best] @ vector
        correct += int((got >= want[-1] - 1e-6).sum())  # reaches the 10th best exact cosine
        top1 += bool(ids) and got[0] >= want[0] - 1e-6
        cos_ratios.append(float(got.sum() / want.sum()))
    timed_sources = sources[WARMUP_QUERIES:]
    return Outcome(
        size=job.size,
        variant=job.variant,
        effective_hnsw={k: effective[k] for k in sorted(effective) if not k.startswith("_")},
        text_chars=float(np.mean([len(t) for t in texts])),
        embed_seconds=embed_seconds,
        add_seconds=add_seconds,
        query_ms=query_ms,
        raw_ms=raw_ms,
        query_embed_ms=query_embed_ms[WARMUP_QUERIES:],
        exact_ms=exact_ms,
        recall=correct / (K * len(found)),
        top1=top1 / len(found),
        cos_ratio=float(np.mean(cos_ratios)),
        source_found_chroma=float(
            np.mean([s in f for s, f in zip(timed_sources, found, strict=True)])
        ),
        source_found_exact=float(
            np.mean([s in e.tolist() for s, e in zip(timed_sources, exact, strict=True)])
        ),
        rss_before=rss_before,
        rss_after=rss_after,
        rss_source=rss_source,
        disk_bytes=folder_bytes(folder),
    )


# --------------------------------------------------------------------------- reporting


def mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1_048_576:.0f}"


def report(outcomes: list[Outcome], args: argparse.Namespace) -> None:
    print()
    print(
        f"python {sys.version.split()[0]}, chromadb {chromadb_version}, numpy "
        f"{np.__version__}; {os.cpu_count()} CPUs; k={K}; {args.queries} queries per index "
        f"(after {WARMUP_QUERIES} untimed); add batches of {args.batch}"
    )
    for size in dict.fromkeys(o.size for o in outcomes):
        rows = [o for o in outcomes if o.size == size]
        first = rows[0]
        print()
        embed = (
            f"embed {size / first.embed_seconds:,.0f} chunks/s ({first.embed_seconds:.1f} s, "
            "HashingEmbedder, one thread)"
            if first.embed_seconds
            else "embed: vectors reused"
        )
        print(
            f"== {size:,} chunks (avg {first.text_chars:.0f} chars): {embed}; "
            f"question embedding p50 {first.p(first.query_embed_ms, 50):.2f} ms"
        )
        width = max(len("exact numpy (baseline)"), *(len(f"chroma {o.variant}") for o in rows)) + 2
        header = (
            f"{'index':<{width}}{'add/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'raw p50':>9}"
            f"{'vs exact':>10}{'recall@10':>11}{'top-1':>7}{'cos ratio':>11}{'source@10':>11}"
            f"{'RSS Δ MB':>10}{'MB/100k':>9}{'disk MB':>9}"
            f"{'other CPU%':>12}"
        )
        print(header)
        print("-" * len(header))
        print(
            f"{'exact numpy (baseline)':<{width}}{'-':>7}{first.p(first.exact_ms, 50):>8.2f}"
            f"{first.p(first.exact_ms, 99):>8.2f}{'-':>9}{1.0:>10.2f}{1.0:>11.3f}{1.0:>7.2f}"
            f"{1.0:>11.4f}{first.source_found_exact:>11.2f}{mb(size * 4 * 384):>10}"
            f"{mb(100_000 * 4 * 384):>9}{'-':>9}{'-':>12}"
        )
        for o in rows:
            delta = (
                None if o.rss_before is None or o.rss_after is None else o.rss_after - o.rss_before
            )
            per_100k = None if delta is None else delta * 100_000 / size
            # the ratio to the baseline measured on the same queries, in the same child
            ratio = o.p(o.query_ms, 50) / o.p(o.exact_ms, 50)
            other = "-" if o.other_cpu_pct is None else f"{o.other_cpu_pct:.0f}"
            print(
                f"{'chroma ' + o.variant:<{width}}{size / o.add_seconds:>7,.0f}"
                f"{o.p(o.query_ms, 50):>8.2f}{o.p(o.query_ms, 99):>8.2f}"
                f"{o.p(o.raw_ms, 50):>9.2f}{ratio:>10.2f}"
                f"{o.recall:>11.3f}{o.top1:>7.2f}{o.cos_ratio:>11.4f}"
                f"{o.source_found_chroma:>11.2f}{mb(delta):>10}"
                f"{mb(per_100k):>9}{mb(o.disk_bytes):>9}{other:>12}"
            )
        print()
        for o in rows:
            p50 = o.p(o.query_ms, 50)
            hnsw = ", ".join(
                f"{key}={o.effective_hnsw[key]}"
                for key in ("space", "ef_construction", "ef_search", "max_neighbors")
                if key in o.effective_hnsw
            )
            print(f"  chroma {o.variant} (HNSW {hnsw}):")
            p50_ok = "MET" if p50 <= GOAL_P50_MS else "NOT MET"
            recall_ok = "MET" if o.recall >= GOAL_RECALL else "NOT MET"
            print(f"    goal p50 ≤ {GOAL_P50_MS:g} ms: {p50_ok} ({p50:.2f} ms)")
            print(f"    goal recall@10 ≥ {GOAL_RECALL}: {recall_ok} ({o.recall:.3f})")
    print()
    print(
        f"RSS ({outcomes[0].rss_source}): growth of the child from before the store opened to "
        "after the adds and queries (texts and vectors were loaded before); for the baseline, "
        "its float32 matrix. raw p50: the same queries on chromadb's Collection directly (the "
        "adapter adds the rest). vs exact: p50 over the baseline's p50 on the same queries in "
        "the same child. top-1: share of queries whose first hit is the exact best. cos ratio: "
        "sum of the 10 hits' cosines over the exact top 10's (near misses keep it near 1). "
        "source@10: share of questions whose source chunk is in the top 10. "
        "other CPU%: what the rest of the machine used meanwhile (100 = one core)."
    )
    busy = [o.other_cpu_pct for o in outcomes if o.other_cpu_pct is not None]
    if busy and max(busy) >= 15:
        print(
            f"warning: other processes used up to {max(busy):.0f}% of a core during the run; "
            "latencies and throughputs are lower than on a quiet machine. Run it again when the "
            "machine is idle."
        )


# --------------------------------------------------------------------------- main


def parse_hnsw(spec: str) -> dict[str, int]:
    settings = {}
    for part in spec.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in HNSW_KEYS or not value.strip().isdigit():
            raise argparse.ArgumentTypeError(
                f"expected KEY=N[,KEY=N] with KEY in {', '.join(HNSW_KEYS)}; got {spec!r}"
            )
        settings[key] = int(value)
    return settings


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Embedded Chroma search latency, recall@10, throughput and memory against "
        "exact numpy search over the same vectors."
    )
    parser.add_argument(
        "--sizes", default="10000,100000", help="comma-separated chunk counts (10000,100000)"
    )
    parser.add_argument("--queries", type=int, default=200, help="timed queries per index (200)")
    parser.add_argument("--batch", type=int, default=1000, help="chunks per add call (1000)")
    parser.add_argument("--seed", type=int, default=1, help="of the synthetic texts (1)")
    parser.add_argument(
        "--hnsw",
        type=parse_hnsw,
        action="append",
        default=[],
        metavar="KEY=N[,KEY=N]",
        help="also measure a collection created with these HNSW settings (search_ef, "
        "construction_ef, M); repeatable",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one job, JSON out
    args = parser.parse_args(argv)
    try:
        args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes must be comma-separated integers")
    if not args.size_list or min(args.size_list) <= K or args.queries < 1 or args.batch < 1:
        parser.error(f"sizes must be > {K}; --queries and --batch must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        outcome = asyncio.run(run_job(Job(**json.loads(args.worker))))
        print(json.dumps(asdict(outcome)))
        return 0
    # SIGTERM unwinds like Ctrl-C: subprocess.run kills the worker, the temp dir is removed
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    variants = [("adapter defaults", {})] + [
        (",".join(f"{k}={v}" for k, v in h.items()), h) for h in args.hnsw
    ]
    outcomes = []
    try:
        with tempfile.TemporaryDirectory(prefix="avatarstack-bench-") as tmp:
            for size in args.size_list:
                for label, hnsw in variants:
                    print(f"{size} chunks, {label} ...", file=sys.stderr, flush=True)
                    job = Job(size, label, hnsw, args.queries, args.batch, args.seed, tmp)
                    outcome = run_worker(job)
                    if outcome is None:
                        print(f"error: the {size}/{label} run failed", file=sys.stderr)
                        return 1
                    outcomes.append(outcome)
    except KeyboardInterrupt:
        return 130
    report(outcomes, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
