"""The knowledge-store contract over the in-memory reference store, an embedded Chroma
(``PersistentClient`` in a temporary folder) and a real Chroma server (``chroma run`` on
127.0.0.1, started once per session), plus a recall check of Chroma's HNSW index against the
exact brute-force search, and an outage of the server turning into ``UnavailableError``.
"""

from __future__ import annotations

import math
import os
import random
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from avatarstack.adapters.chroma import ChromaKnowledgeStore, folder_holder
from avatarstack.adapters.memory.knowledge import MemoryKnowledgeStore
from avatarstack.ports.errors import (
    ConflictError,
    IndexInUseError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
)
from avatarstack.ports.knowledge import IndexedChunk, KnowledgeStore
from avatarstack.testkit.chroma import ChromaServer, start_chroma_server

DIMENSIONS = 8
EMBEDDER = "test-embedder"

# =========================================================================== fixtures

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("chroma-embedded", id="chroma-embedded"),
    pytest.param("chroma-server", id="chroma-server"),
]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KnowledgeStore]:
    backend: str = request.param
    instance: KnowledgeStore
    if backend == "memory":
        instance = MemoryKnowledgeStore()
    elif backend == "chroma-embedded":
        instance = ChromaKnowledgeStore.embedded(tmp_path / "chroma")
    else:
        server: ChromaServer = request.getfixturevalue("chroma_server")
        instance = ChromaKnowledgeStore.remote(server.url)
    await instance.ping()
    try:
        yield instance
    finally:
        await instance.close()


def new_generation() -> str:
    """A unique generation id: the session's server is shared by every test."""
    return f"g{secrets.token_hex(6)}"


def unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def basis(i: int, dimensions: int = DIMENSIONS) -> list[float]:
    return [1.0 if j == i else 0.0 for j in range(dimensions)]


def chunk(
    chunk_id: str,
    embedding: list[float],
    *,
    document_id: str = "doc-1",
    version: int = 1,
    page_start: int = 1,
    page_end: int = 1,
    text: str | None = None,
) -> IndexedChunk:
    return IndexedChunk(
        chunk_id=chunk_id,
        document_id=document_id,
        version=version,
        page_start=page_start,
        page_end=page_end,
        text=text if text is not None else f"text of {chunk_id}",
        embedding=embedding,
    )


# =========================================================================== contract


async def test_a_created_generation_is_described_empty(store: KnowledgeStore) -> None:
    generation = new_generation()
    await store.create(generation, embedder=EMBEDDER, dimensions=DIMENSIONS)

    info = await store.describe(generation)

    assert info is not None
    assert info.generation_id == generation
    assert info.embedder == EMBEDDER
    assert info.dimensions == DIMENSIONS
    assert info.count == 0


async def test_the_nearest_chunk_comes_first_with_its_metadata(store: KnowledgeStore) -> None:
    generation = new_generation()
    await store.create(generation, embedder=EMBEDDER, dimensions=DIMENSIONS)
    await store.add(
        generation,
        [
            chunk("a", basis(0), document_id="doc-a", version=3, page_start=4, page_end=6),
            chunk("b", unit([1.0, 1.0] + [0.0] * (DIMENSIONS - 2)), document_id="doc-b"),
            chunk("c", basis(1), text="third"),
            chunk("d", [-x for x in basis(0)]),
        ],
    )

    hits = await store.query(generation, unit([1.0, 0.1] + [0.0] * (DIMENSIONS - 2)), k=4)

    assert [hit.chunk_id for hit in hits] == ["a", "b", "c", "d"]
    first = hits[0]
    assert (first.document_id, first.version, first.page, first.page_end) == ("doc-a", 3, 4, 6)
    assert first.text == "text of a"
    assert hits[2].text == "third"
    assert first.score == pytest.approx(1 / math.sqrt(1.01), abs=1e-4)
    assert hits[3].score == pytest.approx(-1 / math.sqrt(1.01), abs=1e-4)
    assert all(-1.0 <= hit.score <= 1.0 for hit in hits)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert (await store.describe(generation)).count == 4  # type: ignore[union-attr]


async def test_k_larger_than_the_index_returns_every_chunk(store: KnowledgeStore) -> None:
    generation = new_generation()
    await store.create(generation, embedder=EMBEDDER, dimensions=DIMENSIONS)
    await store.add(generation, [chunk("a", basis(0)), chunk("b", basis(1))])

    hits = await store.query(generation, basis(0), k=50)

    assert [hit.chunk_id for hit in hits] == ["a", "b"]


async def test_an_empty_generation_answers_no_hits(store: KnowledgeStore) -> None:
    generation = new_generation()
    await store.create(generation, embedder=EMBEDDER, dimensions=DIMENSIONS)

    assert await store.query(generation, basis(0), k=5) == []


async def test_adding_the_same_chunk_twice_keeps_one_copy_with_the_latest_content(
    store: KnowledgeStore,
) -> None:
    generation = new_generation()
    await store.create(generation, embedder=EMBEDDER, dimensions=DIMENSIONS)
    await store.add(generation, [chunk("a", basis(0)), chunk("b", basis(1))])
    await store.add(generation, [chunk("a", basis(0), text="new text", version=2)])
    await store.add(generation, [chunk("b", basis(1)), chunk("b", basis(1), text="last wins")])

    info = await store.describe(generation)
    hits = await store.query(generation, basis(0), k=2)

    assert info is not None
    assert info.count == 2
    assert (hits[0].chunk_id, hits[0].text, hits[0].version) == ("a", "new text", 2)
    assert (hits[1].chunk_id, hits[1].text) == ("b", "last wins")


async def test_wrong_dimensions_are_refused_and_nothing_is_added(store: KnowledgeStore) -> None:
    generation = new_generation()
    await store.create(generation, embedder=EMBEDDER, dimensions=DIMENSIONS)

    with pytest.raises(InvalidInputError):
        await store.add(generation, [chunk("ok", basis(0)), chunk("bad", [1.0, 0.0])])
    with pytest.raises(InvalidInputError):
        await store.query(generation, [1.0, 0.0, 0.0], k=3)

    assert (await store.describe(generation)).count == 0  # type: ignore[union-attr]


async def test_an_unknown_generation_is_not_found(store: KnowledgeStore) -> None:
    generation = new_generation()

    assert await store.describe(generation) is None
    with pytest.raises(NotFoundError):
        await store.add(generation, [chunk("a", basis(0))])
    with pytest.raises(NotFoundError):
        await store.query(generation, basis(0), k=3)


async def test_creating_a_generation_twice_is_a_conflict(store: KnowledgeStore) -> None:
    generation = new_generation()
    await store.create(generation, embedder=EMBEDDER, dimensions=DIMENSIONS)

    with pytest.raises(ConflictError):
        await store.create(generation, embedder="other", dimensions=DIMENSIONS + 1)

    info = await store.describe(generation)
    assert info is not None
    assert (info.embedder, info.dimensions) == (EMBEDDER, DIMENSIONS)


async def test_a_dropped_generation_is_gone_and_dropping_again_succeeds(
    store: KnowledgeStore,
) -> None:
    generation = new_generation()
    await store.create(generation, embedder=EMBEDDER, dimensions=DIMENSIONS)
    await store.add(generation, [chunk("a", basis(0))])

    await store.drop(generation)
    await store.drop(generation)
    await store.drop(new_generation())

    assert await store.describe(generation) is None
    with pytest.raises(NotFoundError):
        await store.query(generation, basis(0), k=1)
    # the id can be reused for a fresh, empty generation
    await store.create(generation, embedder=EMBEDDER, dimensions=DIMENSIONS)
    assert (await store.describe(generation)).count == 0  # type: ignore[union-attr]


async def test_generations_are_isolated_from_each_other(store: KnowledgeStore) -> None:
    first, second = new_generation(), new_generation()
    await store.create(first, embedder=EMBEDDER, dimensions=DIMENSIONS)
    await store.create(second, embedder="other-embedder", dimensions=4)
    await store.add(first, [chunk("shared-id", basis(0), text="in first")])
    await store.add(second, [chunk("shared-id", basis(1, 4), text="in second")])
    await store.add(second, [chunk("only-second", basis(2, 4))])

    first_hits = await store.query(first, basis(0), k=10)
    second_hits = await store.query(second, basis(1, 4), k=10)
    await store.drop(second)

    assert [(h.chunk_id, h.text) for h in first_hits] == [("shared-id", "in first")]
    assert [h.chunk_id for h in second_hits] == ["shared-id", "only-second"]
    assert second_hits[0].text == "in second"
    assert (await store.describe(first)).count == 1  # type: ignore[union-attr]


async def test_fetch_scores_the_given_chunks_in_their_order_and_skips_unknown_ids(
    store: KnowledgeStore,
) -> None:
    generation = new_generation()
    await store.create(generation, embedder=EMBEDDER, dimensions=DIMENSIONS)
    await store.add(
        generation,
        [
            chunk("a", basis(0), document_id="doc-a", page_start=2, page_end=3),
            chunk("b", basis(1), text="second"),
            chunk("c", unit([1.0, 1.0] + [0.0] * (DIMENSIONS - 2))),
        ],
    )

    hits = await store.fetch(generation, ["c", "missing", "a", "c"], basis(0))

    assert [hit.chunk_id for hit in hits] == ["c", "a"]
    assert hits[0].score == pytest.approx(1 / math.sqrt(2), abs=1e-4)
    assert hits[1].score == pytest.approx(1.0, abs=1e-4)
    assert (hits[1].document_id, hits[1].page, hits[1].page_end) == ("doc-a", 2, 3)
    assert hits[1].text == "text of a"
    assert await store.fetch(generation, [], basis(0)) == []
    with pytest.raises(InvalidInputError):
        await store.fetch(generation, ["a"], [1.0, 0.0])
    with pytest.raises(NotFoundError):
        await store.fetch(new_generation(), ["a"], basis(0))


async def test_recall_at_10_matches_exact_search(store: KnowledgeStore) -> None:
    """HNSW is approximate: recall@10 against brute force must stay ≥ 0.95."""
    rng = random.Random(20240917)
    dimensions, count, queries, k = 32, 2000, 25, 10
    vectors = [unit([rng.gauss(0, 1) for _ in range(dimensions)]) for _ in range(count)]
    chunks = [chunk(f"c{i:05d}", vector) for i, vector in enumerate(vectors)]
    exact = MemoryKnowledgeStore()
    generation = new_generation()
    for target in (store, exact):
        await target.create(generation, embedder=EMBEDDER, dimensions=dimensions)
        await target.add(generation, chunks)

    found = 0
    for _ in range(queries):
        query = unit([rng.gauss(0, 1) for _ in range(dimensions)])
        expected = {hit.chunk_id for hit in await exact.query(generation, query, k)}
        got = await store.query(generation, query, k)
        assert len(got) == k
        found += len(expected & {hit.chunk_id for hit in got})

    assert (await store.describe(generation)).count == count  # type: ignore[union-attr]
    assert found / (queries * k) >= 0.95


# =========================================================================== chroma only


def test_a_remote_url_must_be_http_or_https() -> None:
    with pytest.raises(InvalidInputError):
        ChromaKnowledgeStore.remote("ftp://example.invalid")


async def test_an_invalid_generation_id_is_refused_before_reaching_chroma(tmp_path: Path) -> None:
    store = ChromaKnowledgeStore.embedded(tmp_path / "chroma")

    with pytest.raises(InvalidInputError):
        await store.create("bad id/with spaces", embedder=EMBEDDER, dimensions=DIMENSIONS)


async def test_a_held_embedded_folder_names_its_holder(tmp_path: Path) -> None:
    folder = tmp_path / "chroma"
    first = ChromaKnowledgeStore.embedded(folder)
    await first.ping()
    try:
        with pytest.raises(IndexInUseError) as raised:
            await ChromaKnowledgeStore.embedded(folder).ping()
        assert raised.value.holder == f"pid {os.getpid()}"
        assert folder_holder(folder) == f"pid {os.getpid()}"
    finally:
        await first.close()
    assert folder_holder(folder) is None


async def test_a_stopped_server_makes_every_call_unavailable() -> None:
    server = start_chroma_server()
    try:
        store = ChromaKnowledgeStore.remote(server.url)
        generation = new_generation()
        await store.ping()
        await store.create(generation, embedder=EMBEDDER, dimensions=DIMENSIONS)
        await store.add(generation, [chunk("a", basis(0))])

        server.stop()

        with pytest.raises(UnavailableError):
            await store.ping()
        with pytest.raises(UnavailableError):
            await store.query(generation, basis(0), k=1)
        with pytest.raises(UnavailableError):
            await store.describe(generation)
        await store.close()
    finally:
        server.close()


async def test_a_server_that_is_down_at_startup_is_unavailable_not_a_crash() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = ChromaKnowledgeStore.remote(f"http://127.0.0.1:{port}")

    with pytest.raises(UnavailableError):
        await store.ping()
    with pytest.raises(UnavailableError):
        await store.describe(new_generation())
