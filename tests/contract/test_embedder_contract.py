"""The Embedder contract over every built-in embedder, then CachedEmbedder's own behaviour.

Both implementations run the same suite: the offline ``HashingEmbedder`` and a ``CachedEmbedder``
wrapping one (the building block of the embedding cache).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from collections.abc import Sequence

import pytest

from avatarstack.adapters.embedders import CachedEmbedder, HashingEmbedder
from avatarstack.ports.embeddings import Embedder


@pytest.fixture(params=["hashing", "cached-hashing"])
def embedder(request: pytest.FixtureRequest) -> Embedder:
    if request.param == "hashing":
        return HashingEmbedder()
    return CachedEmbedder(HashingEmbedder())


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))  # vectors are unit-length


def assert_unit(vector: Sequence[float], dimensions: int) -> None:
    assert len(vector) == dimensions
    assert all(isinstance(v, float) and math.isfinite(v) for v in vector)
    assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-9)


TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Invoices are payable within thirty days of receipt.",
    "Ünïcödé ﬁligree — \uff26\uff35\uff2c\uff2c (fullwidth) text, émoji 🎉 and 中文字符.",
    "x",
    "   \n\t  ",
    "Chunk " * 200,
]

# =========================================================================== contract


def test_name_and_dimensions(embedder: Embedder) -> None:
    assert isinstance(embedder.name, str)
    assert embedder.name
    assert isinstance(embedder.dimensions, int)
    assert embedder.dimensions > 0


async def test_one_unit_vector_per_text_in_order(embedder: Embedder) -> None:
    vectors = await embedder.embed(TEXTS)
    assert len(vectors) == len(TEXTS)
    for vector in vectors:
        assert_unit(vector, embedder.dimensions)
    singles = [(await embedder.embed([text]))[0] for text in TEXTS]
    assert vectors == singles  # order preserved; a text's vector does not depend on its batch
    reversed_vectors = await embedder.embed(list(reversed(TEXTS)))
    assert reversed_vectors == list(reversed(vectors))


async def test_deterministic(embedder: Embedder) -> None:
    assert await embedder.embed(TEXTS) == await embedder.embed(TEXTS)


async def test_empty_batch(embedder: Embedder) -> None:
    assert await embedder.embed([]) == []


async def test_featureless_texts_get_one_fixed_unit_vector(embedder: Embedder) -> None:
    empty, blank, punctuation, word = await embedder.embed(["", "  \n ", "?!… —", "word"])
    assert_unit(empty, embedder.dimensions)
    assert empty == blank == punctuation
    assert abs(cosine(empty, word)) < 0.5


async def test_large_batch_in_a_thread_keeps_order(embedder: Embedder) -> None:
    texts = [f"document number {i} about topic {i % 7}" for i in range(200)]
    vectors = await embedder.embed(texts)
    assert vectors[123] == (await embedder.embed([texts[123]]))[0]
    assert len({tuple(v) for v in vectors}) == len(texts)


async def test_similar_texts_are_closer_than_unrelated(embedder: Embedder) -> None:
    base, similar, unrelated = await embedder.embed(
        [
            "How do I reset my account password?",
            "Resetting the password of your account",
            "The annual rainfall in the Amazon basin is very high.",
        ]
    )
    assert cosine(base, similar) > cosine(base, unrelated) + 0.2
    case_a, case_b = await embedder.embed(["Quarterly REVENUE report", "quarterly revenue report"])
    assert cosine(case_a, case_b) == pytest.approx(1.0)


DOCUMENTS = [
    "To reset your password, open the login page and click 'Forgot password'; an email "
    "with a reset link is sent to you.",
    "Refunds are issued within 14 days after the returned item reaches our warehouse.",
    "Our office in Lyon is open Monday to Friday from 9am to 6pm.",
    "The mobile app supports dark mode on both Android and iOS devices.",
    "Shipping to Canada takes five to seven business days with tracked delivery.",
    "Invoices can be downloaded as PDF files from the billing section of your account.",
    "Two-factor authentication adds a one-time code from an authenticator app at sign-in.",
    "The premium subscription costs 12 euros per month and can be cancelled anytime.",
    "Employees accrue 25 days of paid vacation per year, prorated for part-time staff.",
    "The cafeteria serves vegetarian and vegan lunch options every weekday.",
    "Parking permits for the staff garage are requested through the facilities portal.",
    "Data backups run every night at 2am and are kept for thirty days.",
    "The API rate limit is 100 requests per minute per key; exceeding it returns HTTP 429.",
    "Our headquarters were founded in 1998 by two engineers in a small garage.",
    "Pets are welcome in the hotel rooms for an additional cleaning fee.",
    "The printer on the third floor jams when loaded with glossy paper.",
    "Wi-Fi guests connect to the network named Visitor using the code posted at reception.",
    "Expense reports must include scanned receipts and be approved by a manager.",
    "The fire drill is held every spring; everyone gathers at the assembly point by the lake.",
    "Gift cards never expire and can be combined with other discounts at checkout.",
]
QUESTIONS = [
    "I forgot my password, how can I reset it?",
    "How long until I get my refund for a returned item?",
    "What are the opening hours of the Lyon office?",
    "Does the app have a dark mode?",
    "How many days does shipping to Canada take?",
    "Where do I download my invoices?",
    "How does two-factor authentication work?",
    "How much is the premium subscription per month?",
    "How many vacation days do employees get?",
    "Are there vegan options in the cafeteria?",
    "How do I get a parking permit?",
    "How long are backups kept?",
    "What is the API rate limit?",
    "When was the company founded?",
    "Can I bring my pet to the hotel?",
    "Why does the printer jam?",
    "How do guests connect to the Wi-Fi?",
    "What do expense reports need?",
    "Where do we gather during the fire drill?",
    "Do gift cards expire?",
]


async def test_retrieval_sanity(embedder: Embedder) -> None:
    documents = await embedder.embed(DOCUMENTS)
    questions = await embedder.embed(QUESTIONS)
    right = 0
    for expected, question in enumerate(questions):
        scores = [cosine(question, document) for document in documents]
        right += max(range(len(scores)), key=scores.__getitem__) == expected
    assert right >= 18


# =========================================================================== hashing


def test_hashing_is_deterministic_across_processes() -> None:
    """Python's ``hash()`` is salted per process; the embedder must not depend on it."""
    script = textwrap.dedent(
        """
        import asyncio, json, sys
        from avatarstack.adapters.embedders import HashingEmbedder
        texts = json.loads(sys.stdin.read())
        print(json.dumps(asyncio.run(HashingEmbedder().embed(texts))))
        """
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps(TEXTS),
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1]
    assert json.loads(runs[0]) == HashingEmbedder().embed_sync(TEXTS)


async def test_hashing_configuration() -> None:
    small = HashingEmbedder(dimensions=64, name="hashing-64")
    assert (small.name, small.dimensions) == ("hashing-64", 64)
    (vector,) = await small.embed(["hello world"])
    assert_unit(vector, 64)
    with pytest.raises(ValueError, match="dimensions"):
        HashingEmbedder(dimensions=1)


# =========================================================================== cached


class CountingEmbedder:
    def __init__(self) -> None:
        self.inner = HashingEmbedder(dimensions=32, name="counting")
        self.name, self.dimensions = self.inner.name, self.inner.dimensions
        self.seen: list[str] = []

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.seen.extend(texts)
        return await self.inner.embed(texts)


async def test_cached_embeds_each_distinct_text_once() -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner)
    assert (cached.name, cached.dimensions) == ("counting", 32)
    first = await cached.embed(["a", "b", "a", "c"])
    assert inner.seen == ["a", "b", "c"]
    assert (cached.misses, cached.hits) == (3, 1)
    second = await cached.embed(["c", "d", "a"])
    assert inner.seen == ["a", "b", "c", "d"]
    assert (cached.misses, cached.hits) == (4, 3)
    assert second[0] == first[3]
    assert second[2] == first[0]
    assert first == await inner.inner.embed(["a", "b", "a", "c"])
    second[0][0] = 42.0  # callers get copies: the cache is not corrupted
    assert (await cached.embed(["c"]))[0] == first[3]


async def test_cached_evicts_least_recently_used() -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, max_entries=2)
    await cached.embed(["a", "b"])
    await cached.embed(["a"])  # "b" is now the least recently used
    await cached.embed(["c"])
    assert len(cached) == 2
    inner.seen.clear()
    await cached.embed(["a", "c", "b"])
    assert inner.seen == ["b"]
    with pytest.raises(ValueError, match="max_entries"):
        CachedEmbedder(inner, max_entries=0)


async def test_cached_refuses_a_wrong_count_from_the_inner_embedder() -> None:
    class Broken(CountingEmbedder):
        async def embed(self, texts: Sequence[str]) -> list[list[float]]:
            return []

    with pytest.raises(RuntimeError, match="0 vectors for 1 texts"):
        await CachedEmbedder(Broken()).embed(["x"])
