"""The storage contract of the knowledge context: documents and versions, chunks and index
generations (see test_storage_contract.py; the rest of the knowledge repositories are in
test_kb_storage_contract.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from storage_support import (
    NESTED,
    T0,
    add_user,
    at,
    committed,
    make_document,
    make_version,
)

from avatarstack.ports.errors import ConflictError, DuplicateError, NotFoundError
from avatarstack.ports.storage import Document, IndexGeneration, Storage, StoredChunk, new_id

# --------------------------------------------------------------------------- documents


async def test_a_document_round_trips_and_is_listed_oldest_first(storage: Storage) -> None:
    owner = await add_user(storage)
    later = make_document(title="Later", owner_id=owner.id, created_at=at(2), updated_at=at(2))
    earlier = make_document(title="Earlier", created_at=at(1), updated_at=at(1))
    async with committed(storage) as uow:
        await uow.documents.add(later)
        await uow.documents.add(earlier)
    async with storage.unit_of_work() as uow:
        assert await uow.documents.get(later.id) == later
        assert await uow.documents.list() == [earlier, later]
        assert await uow.documents.list(limit=1, offset=1) == [later]
        assert await uow.documents.get("missing") is None


async def test_soft_deleting_a_document_hides_it(storage: Storage) -> None:
    kept = make_document(created_at=at(1))
    gone = make_document(created_at=at(2))
    async with committed(storage) as uow:
        await uow.documents.add(kept)
        await uow.documents.add(gone)
    async with committed(storage) as uow:
        assert await uow.documents.delete(gone.id, at(10)) is True
    async with committed(storage) as uow:
        assert await uow.documents.delete(gone.id, at(11)) is False
        assert await uow.documents.delete("missing", at(11)) is False
        assert await uow.documents.get(gone.id) is None
        assert await uow.documents.list() == [kept]


async def test_document_versions_are_listed_oldest_first(storage: Storage) -> None:
    document = make_document()
    versions = [make_version(document.id, n) for n in (2, 1, 3)]
    async with committed(storage) as uow:
        await uow.documents.add(document)
        for version in versions:
            await uow.documents.add_version(version)
    async with storage.unit_of_work() as uow:
        assert await uow.documents.list_versions(document.id) == sorted(
            versions, key=lambda v: v.version
        )
        assert await uow.documents.get_version(document.id, 2) == versions[0]
        assert await uow.documents.get_version(document.id, 9) is None
        assert await uow.documents.list_versions("missing") == []


async def test_find_version_by_hash_returns_the_newest_match(storage: Storage) -> None:
    document = make_document()
    async with committed(storage) as uow:
        await uow.documents.add(document)
        await uow.documents.add_version(make_version(document.id, 1, content_hash="h-a"))
        await uow.documents.add_version(make_version(document.id, 2, content_hash="h-b"))
        await uow.documents.add_version(make_version(document.id, 3, content_hash="h-a"))
    async with storage.unit_of_work() as uow:
        found = await uow.documents.find_version_by_hash(document.id, "h-a")
        assert found is not None
        assert found.version == 3
        assert await uow.documents.find_version_by_hash(document.id, "h-z") is None
        assert await uow.documents.find_version_by_hash("missing", "h-a") is None


async def test_update_version_status_sets_status_error_and_optionally_meta(
    storage: Storage,
) -> None:
    document = make_document()
    version = make_version(document.id, 1, meta={"pages": 3})
    async with committed(storage) as uow:
        await uow.documents.add(document)
        await uow.documents.add_version(version)
    async with committed(storage) as uow:
        await uow.documents.update_version_status(document.id, 1, "failed", error="parse error")
    async with committed(storage) as uow:
        stored = await uow.documents.get_version(document.id, 1)
        assert stored == version.model_copy(update={"status": "failed", "error": "parse error"})
        await uow.documents.update_version_status(document.id, 1, "ready", meta={"chunks": 12})
    async with storage.unit_of_work() as uow:
        stored = await uow.documents.get_version(document.id, 1)
        assert stored == version.model_copy(
            update={"status": "ready", "error": None, "meta": {"chunks": 12}}
        )


async def test_update_version_status_of_a_missing_version_raises_not_found(
    storage: Storage,
) -> None:
    document = make_document()
    async with committed(storage) as uow:
        await uow.documents.add(document)
    with pytest.raises(NotFoundError):
        async with storage.unit_of_work() as uow:
            await uow.documents.update_version_status(document.id, 7, "ready")


async def test_set_current_version_updates_the_document(storage: Storage) -> None:
    document = make_document()
    async with committed(storage) as uow:
        await uow.documents.add(document)
        await uow.documents.add_version(make_version(document.id, 1))
    async with committed(storage) as uow:
        await uow.documents.set_current_version(document.id, 1, at(30))
    async with storage.unit_of_work() as uow:
        assert await uow.documents.get(document.id) == document.model_copy(
            update={"current_version": 1, "updated_at": at(30)}
        )


async def test_set_current_version_of_a_missing_document_raises_not_found(
    storage: Storage,
) -> None:
    with pytest.raises(NotFoundError):
        async with storage.unit_of_work() as uow:
            await uow.documents.set_current_version("missing", 1, at(1))


async def test_set_current_version_of_a_deleted_document_raises_not_found(
    storage: Storage,
) -> None:
    document = make_document()
    async with committed(storage) as uow:
        await uow.documents.add(document)
        await uow.documents.delete(document.id, at(1))
    with pytest.raises(NotFoundError):
        async with storage.unit_of_work() as uow:
            await uow.documents.set_current_version(document.id, 1, at(2))


async def test_adding_a_version_for_a_missing_document_raises_conflict(storage: Storage) -> None:
    with pytest.raises(ConflictError):
        async with storage.unit_of_work() as uow:
            await uow.documents.add_version(make_version("missing", 1))


async def test_adding_an_existing_version_raises_duplicate_error(storage: Storage) -> None:
    document = make_document()
    async with committed(storage) as uow:
        await uow.documents.add(document)
        await uow.documents.add_version(make_version(document.id, 1))
    with pytest.raises(DuplicateError):
        async with storage.unit_of_work() as uow:
            await uow.documents.add_version(make_version(document.id, 1, content_hash="x"))


# --------------------------------------------------------------------------- chunks


def make_chunk(document_id: str, version: int, index: int, **overrides: Any) -> StoredChunk:
    fields: dict[str, Any] = {
        "document_id": document_id,
        "version": version,
        "index": index,
        "text": f'chunk {index}: héllo ✓ "quoted"',
        "page_start": index + 1,
        "page_end": index + 2,
        "char_start": index * 100,
        "char_end": index * 100 + 120,
        "heading": f"Section {index}" if index % 2 == 0 else None,
        "hash": f"sha256:chunk-{index}",
    }
    fields.update(overrides)
    return StoredChunk(**fields)


async def add_document_versions(storage: Storage, *versions: int) -> Document:
    document = make_document()
    async with committed(storage) as uow:
        await uow.documents.add(document)
        for version in versions:
            await uow.documents.add_version(make_version(document.id, version))
    return document


async def test_chunks_round_trip_in_index_order_with_every_field(storage: Storage) -> None:
    document = await add_document_versions(storage, 1)
    chunks = [make_chunk(document.id, 1, i) for i in (2, 0, 3, 1)]
    async with committed(storage) as uow:
        await uow.chunks.add_many(chunks)
    async with committed(storage) as uow:
        stored = await uow.chunks.list_for_version(document.id, 1)
        assert await uow.chunks.count_for_version(document.id, 1) == 4
    assert list(stored) == sorted(chunks, key=lambda c: c.index)


async def test_many_chunks_are_added_in_one_call(storage: Storage) -> None:
    document = await add_document_versions(storage, 1)
    async with committed(storage) as uow:
        await uow.chunks.add_many([make_chunk(document.id, 1, i) for i in range(130)])
    async with committed(storage) as uow:
        assert await uow.chunks.count_for_version(document.id, 1) == 130
        stored = await uow.chunks.list_for_version(document.id, 1)
    assert [c.index for c in stored] == list(range(130))


async def test_adding_no_chunks_is_a_no_op(storage: Storage) -> None:
    document = await add_document_versions(storage, 1)
    async with committed(storage) as uow:
        await uow.chunks.add_many([])
        assert await uow.chunks.count_for_version(document.id, 1) == 0


async def test_a_duplicate_chunk_index_is_refused(storage: Storage) -> None:
    document = await add_document_versions(storage, 1)
    async with committed(storage) as uow:
        await uow.chunks.add_many([make_chunk(document.id, 1, 0)])
    with pytest.raises(DuplicateError):
        async with committed(storage) as uow:
            await uow.chunks.add_many(
                [make_chunk(document.id, 1, 1), make_chunk(document.id, 1, 0)]
            )
    async with committed(storage) as uow:
        assert await uow.chunks.count_for_version(document.id, 1) == 1


async def test_chunks_of_an_unknown_document_version_are_refused(storage: Storage) -> None:
    document = await add_document_versions(storage, 1)
    with pytest.raises(ConflictError):
        async with committed(storage) as uow:
            await uow.chunks.add_many([make_chunk(document.id, 2, 0)])


async def test_deleting_chunks_removes_only_that_versions_chunks(storage: Storage) -> None:
    document = await add_document_versions(storage, 1, 2)
    async with committed(storage) as uow:
        await uow.chunks.add_many([make_chunk(document.id, 1, i) for i in range(3)])
        await uow.chunks.add_many([make_chunk(document.id, 2, i) for i in range(2)])
    async with committed(storage) as uow:
        assert await uow.chunks.delete_for_version(document.id, 1) == 3
        assert await uow.chunks.delete_for_version(document.id, 1) == 0
    async with committed(storage) as uow:
        assert await uow.chunks.list_for_version(document.id, 1) == []
        assert await uow.chunks.count_for_version(document.id, 2) == 2


# --------------------------------------------------------------------------- index generations


def make_generation(**overrides: Any) -> IndexGeneration:
    fields: dict[str, Any] = {
        "id": new_id(),
        "embedder": "hashing-v1",
        "dimensions": 256,
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(overrides)
    return IndexGeneration(**fields)


async def add_generation(storage: Storage, **overrides: Any) -> IndexGeneration:
    generation = make_generation(**overrides)
    async with committed(storage) as uow:
        await uow.generations.add(generation)
    return generation


async def test_a_generation_round_trips_with_its_json_fields(storage: Storage) -> None:
    generation = make_generation(
        document_versions={"doc-a": 1, "doc-b": 7},
        chunk_count=12,
        metrics=NESTED,
        job_id="job-1",
    )
    async with committed(storage) as uow:
        await uow.generations.add(generation)
    async with committed(storage) as uow:
        assert await uow.generations.get(generation.id) == generation
        assert await uow.generations.get("unknown") is None


async def test_a_duplicate_generation_id_is_refused(storage: Storage) -> None:
    generation = await add_generation(storage)
    with pytest.raises(DuplicateError):
        async with committed(storage) as uow:
            await uow.generations.add(make_generation(id=generation.id))


async def test_generations_are_listed_newest_first(storage: Storage) -> None:
    old = await add_generation(storage, created_at=at(1), updated_at=at(1))
    new = await add_generation(storage, created_at=at(3), updated_at=at(3))
    middle = await add_generation(storage, created_at=at(2), updated_at=at(2))
    async with committed(storage) as uow:
        assert [g.id for g in await uow.generations.list()] == [new.id, middle.id, old.id]
        assert [g.id for g in await uow.generations.list(limit=1)] == [new.id]


async def test_a_generation_is_updated(storage: Storage) -> None:
    generation = await add_generation(storage)
    done = generation.model_copy(
        update={
            "status": "failed",
            "chunk_count": 3,
            "document_versions": {"doc-a": 2},
            "metrics": {"seconds": 1.5},
            "error": "embedder unavailable",
            "updated_at": at(60),
        }
    )
    async with committed(storage) as uow:
        await uow.generations.update(done)
    async with committed(storage) as uow:
        assert await uow.generations.get(generation.id) == done


async def test_updating_an_unknown_generation_is_refused(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        async with committed(storage) as uow:
            await uow.generations.update(make_generation())


async def test_a_generation_is_deleted(storage: Storage) -> None:
    generation = await add_generation(storage)
    async with committed(storage) as uow:
        assert await uow.generations.delete(generation.id) is True
        assert await uow.generations.delete(generation.id) is False
    async with committed(storage) as uow:
        assert await uow.generations.get(generation.id) is None


async def test_there_is_no_active_generation_at_first(storage: Storage) -> None:
    await add_generation(storage, status="ready")
    async with committed(storage) as uow:
        assert await uow.generations.get_active() is None


async def test_activating_a_ready_generation_switches_the_pointer(storage: Storage) -> None:
    first = await add_generation(storage, status="ready")
    second = await add_generation(storage, status="ready", created_at=at(1))
    async with committed(storage) as uow:
        await uow.generations.set_active(first.id, at(10))
    async with committed(storage) as uow:
        assert await uow.generations.get_active() == first
        await uow.generations.set_active(second.id, at(20))
        assert await uow.generations.get_active() == second
    async with committed(storage) as uow:
        assert await uow.generations.get_active() == second


async def test_an_uncommitted_switch_leaves_the_active_generation(storage: Storage) -> None:
    first = await add_generation(storage, status="ready")
    second = await add_generation(storage, status="ready")
    async with committed(storage) as uow:
        await uow.generations.set_active(first.id, at(10))
    async with storage.unit_of_work() as uow:
        await uow.generations.set_active(second.id, at(20))
    async with committed(storage) as uow:
        assert await uow.generations.get_active() == first


async def test_switching_back_to_an_older_ready_generation_works(storage: Storage) -> None:
    old = await add_generation(storage, status="ready")
    new = await add_generation(storage, status="ready", created_at=at(1))
    async with committed(storage) as uow:
        await uow.generations.set_active(old.id, at(10))
        await uow.generations.set_active(new.id, at(20))
    async with committed(storage) as uow:
        await uow.generations.set_active(old.id, at(30))
    async with committed(storage) as uow:
        assert await uow.generations.get_active() == old


@pytest.mark.parametrize("status", ["building", "failed"])
async def test_a_generation_that_is_not_ready_cannot_be_activated(
    storage: Storage, status: str
) -> None:
    ready = await add_generation(storage, status="ready")
    unready = await add_generation(storage, status=status)
    async with committed(storage) as uow:
        await uow.generations.set_active(ready.id, at(10))
    with pytest.raises(ConflictError):
        async with committed(storage) as uow:
            await uow.generations.set_active(unready.id, at(20))
    async with committed(storage) as uow:
        assert await uow.generations.get_active() == ready


async def test_an_unknown_generation_cannot_be_activated(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        async with committed(storage) as uow:
            await uow.generations.set_active("no-such-generation", at(10))
    async with committed(storage) as uow:
        assert await uow.generations.get_active() is None


async def test_the_active_generation_cannot_be_deleted(storage: Storage) -> None:
    generation = await add_generation(storage, status="ready")
    async with committed(storage) as uow:
        await uow.generations.set_active(generation.id, at(10))
    with pytest.raises(ConflictError):
        async with committed(storage) as uow:
            await uow.generations.delete(generation.id)
    async with committed(storage) as uow:
        assert await uow.generations.get_active() == generation


async def test_concurrent_activations_leave_exactly_one_active_generation(
    storage: Storage,
) -> None:
    generations = [
        await add_generation(storage, status="ready", created_at=at(i)) for i in range(5)
    ]

    async def activate(generation: IndexGeneration) -> None:
        async with committed(storage) as uow:
            await uow.generations.set_active(generation.id, at(100))

    await asyncio.gather(*(activate(g) for g in generations))
    async with committed(storage) as uow:
        active = await uow.generations.get_active()
    assert active is not None
    assert active in generations
