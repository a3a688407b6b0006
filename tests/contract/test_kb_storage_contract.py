"""The storage contract for the knowledge base: file hashes and lookups on document versions,
the golden set, uploaded-file blobs, the embedding cache, the search log and job listings.

Runs on every adapter (memory, SQLite, PostgreSQL, PostgreSQL behind PgBouncer) through the
``storage`` fixture of tests/conftest.py. Times are fixed aware UTC datetimes.
"""

from __future__ import annotations

import asyncio
import hashlib
from array import array
from collections.abc import Sequence
from typing import Any

import pytest
from storage_support import T0, at, committed, make_document

from avatarstack.ports.errors import DuplicateError, InvalidInputError, NotFoundError
from avatarstack.ports.storage import (
    Document,
    DocumentVersion,
    GoldenQuestion,
    Job,
    SearchRecord,
    SearchSummary,
    Storage,
    StoredChunk,
    decode_vector,
    encode_vector,
    new_id,
)

EMBEDDER = "hashing-v1"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def float32(values: Sequence[float]) -> list[float]:
    """``values`` rounded to float32, as the cache keeps them."""
    return array("f", values).tolist()


# --------------------------------------------------------------------------- factories


def make_version(document_id: str, version: int, **overrides: Any) -> DocumentVersion:
    fields: dict[str, Any] = {
        "document_id": document_id,
        "version": version,
        "content_hash": f"content-{version}",
        "filename": "handbook.pdf",
        "media_type": "application/pdf",
        "size_bytes": 2048,
        "status": "queued",
        "created_at": at(version),
    }
    fields.update(overrides)
    return DocumentVersion(**fields)


def make_chunk(document_id: str, version: int, index: int) -> StoredChunk:
    return StoredChunk(
        document_id=document_id,
        version=version,
        index=index,
        text=f"chunk {index}",
        page_start=1,
        page_end=1,
        char_start=index * 10,
        char_end=index * 10 + 9,
        hash=f"chunk-{index}",
    )


def make_question(**overrides: Any) -> GoldenQuestion:
    fields: dict[str, Any] = {
        "id": new_id(),
        "question": "How many days of leave do I get?",
        "created_at": T0,
    }
    fields.update(overrides)
    return GoldenQuestion(**fields)


def make_search(generation_id: str = "gen-1", **overrides: Any) -> SearchRecord:
    fields: dict[str, Any] = {
        "generation_id": generation_id,
        "user_id": "user-1",
        "query": "leave policy",
        "k": 5,
        "result_count": 5,
        "top_score": 0.8,
        "embed_ms": 2.0,
        "search_ms": 4.0,
        "created_at": T0,
    }
    fields.update(overrides)
    return SearchRecord(**fields)


def make_job(**overrides: Any) -> Job:
    fields: dict[str, Any] = {
        "id": new_id(),
        "kind": "kb.ingest",
        "run_at": T0,
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(overrides)
    return Job(**fields)


async def add_document(
    storage: Storage, *versions: DocumentVersion | dict[str, Any], **overrides: Any
) -> Document:
    """A committed document with versions 1, 2, … built from ``versions`` (overrides of
    :func:`make_version` or complete versions)."""
    document = make_document(**overrides)
    async with committed(storage) as uow:
        await uow.documents.add(document)
        for number, spec in enumerate(versions, start=1):
            version = (
                spec.model_copy(update={"document_id": document.id})
                if isinstance(spec, DocumentVersion)
                else make_version(document.id, number, **spec)
            )
            await uow.documents.add_version(version)
    return document


async def delete_document(storage: Storage, document_id: str) -> None:
    async with committed(storage) as uow:
        assert await uow.documents.delete(document_id, at(100))


# --------------------------------------------------------------------------- document versions


async def test_a_version_round_trips_its_file_hash(storage: Storage) -> None:
    document = await add_document(storage, {"file_sha256": sha(b"pdf")}, {})
    async with storage.unit_of_work() as uow:
        first = await uow.documents.get_version(document.id, 1)
        second = await uow.documents.get_version(document.id, 2)
        assert first is not None
        assert first.file_sha256 == sha(b"pdf")
        assert second is not None
        assert second.file_sha256 is None
        assert [v.file_sha256 for v in await uow.documents.list_versions(document.id)] == [
            sha(b"pdf"),
            None,
        ]


async def test_update_version_replaces_the_mutable_fields_only(storage: Storage) -> None:
    document = await add_document(storage, {"file_sha256": sha(b"old")})
    async with storage.unit_of_work() as uow:
        stored = await uow.documents.get_version(document.id, 1)
    assert stored is not None
    changed = stored.model_copy(
        update={
            "content_hash": "content-new",
            "status": "ready",
            "error": "a warning",
            "meta": {"pages": 3, "nested": {"ok": True}},
            "file_sha256": sha(b"new"),
            # not mutable: these must stay as stored
            "filename": "renamed.pdf",
            "media_type": "text/plain",
            "size_bytes": 1,
            "created_at": at(999),
        }
    )
    async with committed(storage) as uow:
        await uow.documents.update_version(changed)
    async with storage.unit_of_work() as uow:
        assert await uow.documents.get_version(document.id, 1) == stored.model_copy(
            update={
                "content_hash": "content-new",
                "status": "ready",
                "error": "a warning",
                "meta": {"pages": 3, "nested": {"ok": True}},
                "file_sha256": sha(b"new"),
            }
        )


async def test_update_version_can_clear_the_error_and_file_hash(storage: Storage) -> None:
    document = await add_document(
        storage, {"status": "failed", "error": "boom", "file_sha256": sha(b"x")}
    )
    async with committed(storage) as uow:
        await uow.documents.update_version(
            make_version(document.id, 1, status="queued", error=None, file_sha256=None)
        )
    async with storage.unit_of_work() as uow:
        version = await uow.documents.get_version(document.id, 1)
    assert version is not None
    assert (version.status, version.error, version.file_sha256) == ("queued", None, None)


async def test_update_version_of_a_missing_version_raises_not_found(storage: Storage) -> None:
    document = await add_document(storage, {})
    async with storage.unit_of_work() as uow:
        with pytest.raises(NotFoundError):
            await uow.documents.update_version(make_version(document.id, 2))
        with pytest.raises(NotFoundError):
            await uow.documents.update_version(make_version("no-such-document", 1))


async def test_delete_version_removes_the_version_and_its_chunks(storage: Storage) -> None:
    document = await add_document(storage, {}, {})
    async with committed(storage) as uow:
        await uow.chunks.add_many([make_chunk(document.id, 1, i) for i in range(3)])
        await uow.chunks.add_many([make_chunk(document.id, 2, i) for i in range(2)])
    async with committed(storage) as uow:
        assert await uow.documents.delete_version(document.id, 1) is True
    async with committed(storage) as uow:
        assert await uow.documents.get_version(document.id, 1) is None
        assert await uow.chunks.count_for_version(document.id, 1) == 0
        assert [v.version for v in await uow.documents.list_versions(document.id)] == [2]
        assert await uow.chunks.count_for_version(document.id, 2) == 2
        assert await uow.documents.delete_version(document.id, 1) is False
        assert await uow.documents.delete_version("no-such-document", 1) is False


async def test_an_uncommitted_version_delete_leaves_the_version(storage: Storage) -> None:
    document = await add_document(storage, {})
    async with committed(storage) as uow:
        await uow.chunks.add_many([make_chunk(document.id, 1, 0)])
    async with storage.unit_of_work() as uow:
        assert await uow.documents.delete_version(document.id, 1)
    async with storage.unit_of_work() as uow:
        assert await uow.documents.get_version(document.id, 1) is not None
        assert await uow.chunks.count_for_version(document.id, 1) == 1


async def test_find_by_file_returns_the_newest_live_version(storage: Storage) -> None:
    file = sha(b"the same bytes")
    older = await add_document(storage, {"file_sha256": file, "created_at": at(1)})
    newer = await add_document(
        storage,
        {"file_sha256": sha(b"other")},
        {"file_sha256": file, "created_at": at(5)},
    )
    async with storage.unit_of_work() as uow:
        found = await uow.documents.find_by_file(file)
        assert found is not None
        assert (found.document_id, found.version) == (newer.id, 2)
        assert await uow.documents.find_by_file(sha(b"never uploaded")) is None
    async with committed(storage) as uow:
        assert await uow.documents.delete_version(newer.id, 2)
    async with storage.unit_of_work() as uow:
        found = await uow.documents.find_by_file(file)
        assert found is not None
        assert found.document_id == older.id


async def test_find_by_file_breaks_a_time_tie_by_the_higher_version(storage: Storage) -> None:
    file = sha(b"tie")
    document = await add_document(
        storage,
        {"file_sha256": file, "created_at": at(7)},
        {"file_sha256": file, "created_at": at(7)},
    )
    async with storage.unit_of_work() as uow:
        found = await uow.documents.find_by_file(file)
    assert found is not None
    assert (found.document_id, found.version) == (document.id, 2)


async def test_find_by_file_ignores_failed_versions(storage: Storage) -> None:
    file = sha(b"broken upload")
    await add_document(storage, {"file_sha256": file, "status": "failed", "created_at": at(9)})
    async with storage.unit_of_work() as uow:
        assert await uow.documents.find_by_file(file) is None
    good = await add_document(storage, {"file_sha256": file, "status": "ready"})
    async with storage.unit_of_work() as uow:
        found = await uow.documents.find_by_file(file)
    assert found is not None
    assert found.document_id == good.id


async def test_find_by_file_finds_versions_in_any_status_but_failed(storage: Storage) -> None:
    for status in ("queued", "processing", "ready", "pending"):
        file = sha(status.encode())
        document = await add_document(storage, {"file_sha256": file, "status": status})
        async with storage.unit_of_work() as uow:
            found = await uow.documents.find_by_file(file)
        assert found is not None, status
        assert found.document_id == document.id, status


async def test_find_by_file_ignores_deleted_documents(storage: Storage) -> None:
    file = sha(b"deleted")
    document = await add_document(storage, {"file_sha256": file, "status": "ready"})
    await delete_document(storage, document.id)
    async with storage.unit_of_work() as uow:
        assert await uow.documents.find_by_file(file) is None


async def test_find_by_content_returns_only_ready_versions(storage: Storage) -> None:
    content = "content-shared"
    await add_document(storage, {"content_hash": content, "status": "processing"})
    await add_document(storage, {"content_hash": content, "status": "failed"})
    async with storage.unit_of_work() as uow:
        assert await uow.documents.find_by_content(content) is None
    older = await add_document(
        storage, {"content_hash": content, "status": "ready", "created_at": at(1)}
    )
    newer = await add_document(
        storage, {"content_hash": content, "status": "ready", "created_at": at(2)}
    )
    await add_document(storage, {"content_hash": content, "status": "queued", "created_at": at(3)})
    async with storage.unit_of_work() as uow:
        found = await uow.documents.find_by_content(content)
        assert found is not None
        assert found.document_id == newer.id
    await delete_document(storage, newer.id)
    async with storage.unit_of_work() as uow:
        found = await uow.documents.find_by_content(content)
        assert found is not None
        assert found.document_id == older.id
        assert await uow.documents.find_by_content("content-unknown") is None


async def test_list_current_lists_live_documents_with_a_current_version(
    storage: Storage,
) -> None:
    late = await add_document(storage, {}, created_at=at(30))
    early = await add_document(storage, {}, created_at=at(10))
    tie_a, tie_b = sorted([make_document(created_at=at(20)) for _ in range(2)], key=lambda d: d.id)
    no_current = await add_document(storage, {}, created_at=at(5))
    deleted = await add_document(storage, {}, created_at=at(1))
    async with committed(storage) as uow:
        for document in (tie_b, tie_a):
            await uow.documents.add(document)
            await uow.documents.add_version(make_version(document.id, 1))
        for document in (late, early, tie_a, tie_b, deleted):
            await uow.documents.set_current_version(document.id, 1, at(40))
    await delete_document(storage, deleted.id)
    async with storage.unit_of_work() as uow:
        current = await uow.documents.list_current()
    assert [d.id for d in current] == [early.id, tie_a.id, tie_b.id, late.id]
    assert all(d.current_version == 1 for d in current)
    assert no_current.id not in {d.id for d in current}


async def test_count_counts_documents_that_are_not_deleted(storage: Storage) -> None:
    async with storage.unit_of_work() as uow:
        assert await uow.documents.count() == 0
    first = await add_document(storage)
    await add_document(storage, {})
    await add_document(storage)
    await delete_document(storage, first.id)
    async with storage.unit_of_work() as uow:
        assert await uow.documents.count() == 2


# --------------------------------------------------------------------------- golden set


async def test_the_golden_set_is_empty_at_first(storage: Storage) -> None:
    async with storage.unit_of_work() as uow:
        assert await uow.golden_set.list() == []


async def test_the_golden_set_round_trips_in_creation_order(storage: Storage) -> None:
    tie = sorted([make_question(created_at=at(2)) for _ in range(2)], key=lambda q: q.id)
    questions = [
        make_question(
            created_at=at(3),
            question='Wie viele Urlaubstage? ✓ "quoted"',
            expected_document_id="doc-that-was-deleted-long-ago",
            expected_phrase="30 days",
        ),
        tie[1],
        make_question(created_at=at(1), expected_phrase="only a phrase"),
        tie[0],
    ]
    async with committed(storage) as uow:
        await uow.golden_set.replace(questions)
    async with storage.unit_of_work() as uow:
        stored = await uow.golden_set.list()
    assert stored == sorted(questions, key=lambda q: (q.created_at, q.id))


async def test_replacing_the_golden_set_drops_the_previous_questions(storage: Storage) -> None:
    async with committed(storage) as uow:
        await uow.golden_set.replace([make_question() for _ in range(3)])
    replacement = [make_question(created_at=at(i)) for i in range(2)]
    async with committed(storage) as uow:
        await uow.golden_set.replace(replacement)
    async with committed(storage) as uow:
        assert await uow.golden_set.list() == replacement
        await uow.golden_set.replace([])
    async with storage.unit_of_work() as uow:
        assert await uow.golden_set.list() == []


async def test_a_large_golden_set_is_stored_whole(storage: Storage) -> None:
    questions = [make_question(created_at=at(i)) for i in range(250)]
    async with committed(storage) as uow:
        await uow.golden_set.replace(questions)
    async with storage.unit_of_work() as uow:
        assert await uow.golden_set.list() == questions


async def test_an_uncommitted_golden_set_replacement_changes_nothing(storage: Storage) -> None:
    kept = [make_question()]
    async with committed(storage) as uow:
        await uow.golden_set.replace(kept)
    async with storage.unit_of_work() as uow:
        await uow.golden_set.replace([make_question(), make_question()])
        assert len(await uow.golden_set.list()) == 2
    async with storage.unit_of_work() as uow:
        assert await uow.golden_set.list() == kept


async def test_a_golden_set_with_a_repeated_id_is_refused(storage: Storage) -> None:
    question = make_question()
    async with storage.unit_of_work() as uow:
        with pytest.raises(DuplicateError):
            await uow.golden_set.replace([question, question.model_copy()])


async def test_concurrent_golden_set_replacements_leave_one_whole_set(storage: Storage) -> None:
    async with committed(storage) as uow:
        await uow.golden_set.replace([make_question()])
    sets = [[make_question(created_at=at(i)) for i in range(3)] for _ in range(4)]

    async def replace(questions: list[GoldenQuestion]) -> None:
        async with committed(storage) as uow:
            await uow.golden_set.replace(questions)

    await asyncio.gather(*(replace(questions) for questions in sets))
    async with storage.unit_of_work() as uow:
        assert await uow.golden_set.list() in sets


# --------------------------------------------------------------------------- blobs


ALL_BYTES = bytes(range(256)) * 4 + b"\x00\x00trailing NULs\x00"


async def test_a_blob_round_trips_every_byte_value(storage: Storage) -> None:
    async with committed(storage) as uow:
        await uow.blobs.put(sha(ALL_BYTES), ALL_BYTES, T0)
        await uow.blobs.put(sha(b""), b"", T0)
    async with storage.unit_of_work() as uow:
        assert await uow.blobs.get(sha(ALL_BYTES)) == ALL_BYTES
        assert await uow.blobs.get(sha(b"")) == b""
        assert await uow.blobs.get(sha(b"unknown")) is None


async def test_a_large_blob_round_trips(storage: Storage) -> None:
    data = hashlib.shake_256(b"seed").digest(3 * 1024 * 1024)
    async with committed(storage) as uow:
        await uow.blobs.put(sha(data), data, T0)
    async with storage.unit_of_work() as uow:
        assert await uow.blobs.get(sha(data)) == data


async def test_putting_a_stored_blob_again_is_a_no_op(storage: Storage) -> None:
    async with committed(storage) as uow:
        await uow.blobs.put("key", b"first", T0)
    async with committed(storage) as uow:
        await uow.blobs.put("key", b"second", at(1))
        await uow.blobs.put("key", b"third", at(2))
    async with storage.unit_of_work() as uow:
        assert await uow.blobs.get("key") == b"first"


async def test_an_uncommitted_blob_is_not_stored(storage: Storage) -> None:
    async with storage.unit_of_work() as uow:
        await uow.blobs.put(sha(b"draft"), b"draft", T0)
        assert await uow.blobs.get(sha(b"draft")) == b"draft"
    async with storage.unit_of_work() as uow:
        assert await uow.blobs.get(sha(b"draft")) is None


async def test_delete_unreferenced_keeps_the_blobs_versions_name(storage: Storage) -> None:
    referenced, of_deleted_document, orphan, of_dropped_version = (
        b"referenced",
        b"deleted document",
        b"orphan",
        b"dropped version",
    )
    async with committed(storage) as uow:
        for data in (referenced, of_deleted_document, orphan, of_dropped_version):
            await uow.blobs.put(sha(data), data, T0)
    kept = await add_document(
        storage, {"file_sha256": sha(referenced)}, {"file_sha256": sha(of_dropped_version)}
    )
    deleted = await add_document(storage, {"file_sha256": sha(of_deleted_document)})
    await add_document(storage, {"file_sha256": None})
    await delete_document(storage, deleted.id)  # a soft delete: its version still names it
    async with committed(storage) as uow:
        assert await uow.documents.delete_version(kept.id, 2)
    async with committed(storage) as uow:
        assert await uow.blobs.delete_unreferenced() == 2
    async with committed(storage) as uow:
        assert await uow.blobs.get(sha(referenced)) == referenced
        assert await uow.blobs.get(sha(of_deleted_document)) == of_deleted_document
        assert await uow.blobs.get(sha(orphan)) is None
        assert await uow.blobs.get(sha(of_dropped_version)) is None
        assert await uow.blobs.delete_unreferenced() == 0


async def test_an_uncommitted_blob_cleanup_deletes_nothing(storage: Storage) -> None:
    async with committed(storage) as uow:
        await uow.blobs.put(sha(b"orphan"), b"orphan", T0)
    async with storage.unit_of_work() as uow:
        assert await uow.blobs.delete_unreferenced() == 1
    async with storage.unit_of_work() as uow:
        assert await uow.blobs.get(sha(b"orphan")) == b"orphan"


# --------------------------------------------------------------------------- embedding cache


def vector(seed: int, dimensions: int = 8) -> list[float]:
    return [((seed * 31 + i * 7) % 97) / 97.0 - 0.5 + i * 1e-7 for i in range(dimensions)]


def test_vectors_are_encoded_as_little_endian_float32() -> None:
    assert encode_vector([1.0, -2.5]) == b"\x00\x00\x80\x3f\x00\x00\x20\xc0"
    assert decode_vector(encode_vector([0.1, 3.0])) == float32([0.1, 3.0])
    with pytest.raises(InvalidInputError):
        encode_vector([1.0, 2.0], 3)


async def test_cached_vectors_round_trip_at_float32_precision(storage: Storage) -> None:
    stored = {
        "exact": [0.5, -2.0, 0.0, 1024.0],
        "inexact": [0.1, -1 / 3, 3.141592653589793, 1e-30],
    }
    async with committed(storage) as uow:
        await uow.embeddings.put_many(EMBEDDER, 4, stored, T0)
    async with storage.unit_of_work() as uow:
        found = await uow.embeddings.get_many(EMBEDDER, 4, ["exact", "inexact", "missing"])
    assert set(found) == {"exact", "inexact"}
    assert found["exact"] == stored["exact"]
    assert found["inexact"] == pytest.approx(stored["inexact"], rel=1e-6)
    assert found["inexact"] == float32(stored["inexact"])
    assert all(type(value) is float for value in found["inexact"])


async def test_the_cache_is_keyed_by_embedder_dimensions_and_hash(storage: Storage) -> None:
    async with committed(storage) as uow:
        await uow.embeddings.put_many(EMBEDDER, 2, {"h": [1.0, 2.0]}, T0)
        await uow.embeddings.put_many(EMBEDDER, 3, {"h": [3.0, 4.0, 5.0]}, T0)
        await uow.embeddings.put_many("other", 2, {"h": [6.0, 7.0]}, T0)
    async with storage.unit_of_work() as uow:
        assert await uow.embeddings.get_many(EMBEDDER, 2, ["h"]) == {"h": [1.0, 2.0]}
        assert await uow.embeddings.get_many(EMBEDDER, 3, ["h"]) == {"h": [3.0, 4.0, 5.0]}
        assert await uow.embeddings.get_many("other", 2, ["h"]) == {"h": [6.0, 7.0]}
        assert await uow.embeddings.get_many("other", 3, ["h"]) == {}
        assert await uow.embeddings.count() == 3
        assert await uow.embeddings.count(EMBEDDER) == 2
        assert await uow.embeddings.count("other") == 1
        assert await uow.embeddings.count("unknown") == 0


async def test_putting_cached_vectors_again_leaves_them_unchanged(storage: Storage) -> None:
    async with committed(storage) as uow:
        await uow.embeddings.put_many(EMBEDDER, 2, {"a": [1.0, 1.0], "b": [2.0, 2.0]}, T0)
    async with committed(storage) as uow:
        await uow.embeddings.put_many(
            EMBEDDER, 2, {"b": [9.0, 9.0], "c": [3.0, 3.0], "a": [9.0, 9.0]}, at(1)
        )
    async with storage.unit_of_work() as uow:
        assert await uow.embeddings.get_many(EMBEDDER, 2, ["a", "b", "c"]) == {
            "a": [1.0, 1.0],
            "b": [2.0, 2.0],
            "c": [3.0, 3.0],
        }
        assert await uow.embeddings.count() == 3


async def test_thousands_of_vectors_are_stored_and_read_in_one_call_each(
    storage: Storage,
) -> None:
    dims = 16
    vectors = {f"hash-{i:05d}": vector(i, dims) for i in range(1_250)}
    async with committed(storage) as uow:
        await uow.embeddings.put_many(EMBEDDER, dims, vectors, T0)
    # again, overlapping and with new keys: the stored ones stay, the new ones are added
    more = {f"hash-{i:05d}": vector(i + 1, dims) for i in range(1_000, 1_400)}
    async with committed(storage) as uow:
        await uow.embeddings.put_many(EMBEDDER, dims, more, at(1))
    wanted = [f"hash-{i:05d}" for i in range(1_600)]
    wanted += wanted[:300]  # repeated hashes are answered once
    async with storage.unit_of_work() as uow:
        found = await uow.embeddings.get_many(EMBEDDER, dims, wanted)
        assert await uow.embeddings.count(EMBEDDER) == 1_400
    assert len(found) == 1_400
    for i in range(1_400):
        key = f"hash-{i:05d}"
        expected = vectors[key] if i < 1_250 else more[key]
        assert found[key] == pytest.approx(expected, rel=1e-6, abs=1e-7), key


async def test_get_many_of_no_hashes_and_put_many_of_no_vectors_do_nothing(
    storage: Storage,
) -> None:
    async with committed(storage) as uow:
        await uow.embeddings.put_many(EMBEDDER, 4, {}, T0)
        assert await uow.embeddings.get_many(EMBEDDER, 4, []) == {}
        assert await uow.embeddings.count() == 0


async def test_a_vector_of_the_wrong_length_is_refused_and_nothing_is_stored(
    storage: Storage,
) -> None:
    async with committed(storage) as uow:
        with pytest.raises(InvalidInputError):
            await uow.embeddings.put_many(
                EMBEDDER, 3, {"good": [1.0, 2.0, 3.0], "short": [1.0, 2.0]}, T0
            )
        with pytest.raises(InvalidInputError):
            await uow.embeddings.put_many(EMBEDDER, 3, {"long": [1.0, 2.0, 3.0, 4.0]}, T0)
        assert await uow.embeddings.count() == 0


async def test_uncommitted_vectors_are_not_cached(storage: Storage) -> None:
    async with storage.unit_of_work() as uow:
        await uow.embeddings.put_many(EMBEDDER, 2, {"a": [1.0, 2.0]}, T0)
        assert await uow.embeddings.count() == 1
    async with storage.unit_of_work() as uow:
        assert await uow.embeddings.count() == 0
        assert await uow.embeddings.get_many(EMBEDDER, 2, ["a"]) == {}


async def test_concurrent_writers_of_overlapping_vectors_both_succeed(storage: Storage) -> None:
    keys = [f"k{i:04d}" for i in range(300)]

    async def put(order: list[str], value: float) -> None:
        async with committed(storage) as uow:
            await uow.embeddings.put_many(EMBEDDER, 2, {k: [value, value] for k in order}, T0)

    await asyncio.gather(put(keys, 1.0), put(keys[::-1], 2.0), put(keys[100:], 3.0))
    async with storage.unit_of_work() as uow:
        found = await uow.embeddings.get_many(EMBEDDER, 2, keys)
    assert set(found) == set(keys)
    # each key holds one writer's whole vector
    assert all(v[0] == v[1] and v[0] in {1.0, 2.0, 3.0} for v in found.values())


# --------------------------------------------------------------------------- search log


async def test_appended_searches_get_increasing_ids_and_list_newest_first(
    storage: Storage,
) -> None:
    records = [
        make_search(created_at=at(1), query="first"),
        make_search("gen-2", created_at=at(2), query="second", user_id=None, top_score=None),
        make_search(created_at=at(3), query="third"),
        make_search(created_at=at(3), query="same time, later"),
    ]
    async with committed(storage) as uow:
        for record in records:
            await uow.searches.append(record)
    async with storage.unit_of_work() as uow:
        listed = await uow.searches.list()
        assert [r.query for r in listed] == ["same time, later", "third", "second", "first"]
        ids = [r.id for r in reversed(listed)]
        assert all(isinstance(i, int) for i in ids)
        assert ids == sorted(ids)
        assert len(set(ids)) == 4
        assert [r.model_copy(update={"id": None}) for r in reversed(listed)] == records
        assert [r.query for r in await uow.searches.list("gen-1")] == [
            "same time, later",
            "third",
            "first",
        ]
        assert [r.query for r in await uow.searches.list("gen-1", limit=2)] == [
            "same time, later",
            "third",
        ]
        assert [r.query for r in await uow.searches.list(limit=1)] == ["same time, later"]
        assert await uow.searches.list("gen-unknown") == []


async def test_a_search_summary_averages_one_generation(storage: Storage) -> None:
    async with committed(storage) as uow:
        for record in (
            make_search(top_score=0.9, embed_ms=1.0, search_ms=10.0, result_count=5),
            make_search(top_score=0.6, embed_ms=2.0, search_ms=20.0, result_count=3),
            make_search(top_score=None, embed_ms=6.0, search_ms=30.0, result_count=0),
            make_search(top_score=None, embed_ms=3.0, search_ms=40.0, result_count=0),
            make_search("gen-other", top_score=0.1, embed_ms=100.0, result_count=0),
        ):
            await uow.searches.append(record)
    async with storage.unit_of_work() as uow:
        summary = await uow.searches.summary("gen-1")
    assert (summary.count, summary.empty_count) == (4, 2)
    assert summary.mean_top_score == pytest.approx(0.75)
    assert summary.mean_embed_ms == pytest.approx(3.0)
    assert summary.mean_search_ms == pytest.approx(25.0)


async def test_a_summary_without_searches_has_no_means(storage: Storage) -> None:
    async with storage.unit_of_work() as uow:
        assert await uow.searches.summary("gen-1") == SearchSummary(
            count=0,
            empty_count=0,
            mean_top_score=None,
            mean_embed_ms=None,
            mean_search_ms=None,
        )


async def test_a_summary_of_searches_without_scores_has_no_mean_score(storage: Storage) -> None:
    async with committed(storage) as uow:
        await uow.searches.append(make_search(top_score=None, result_count=0))
    async with storage.unit_of_work() as uow:
        summary = await uow.searches.summary("gen-1")
    assert (summary.count, summary.empty_count, summary.mean_top_score) == (1, 1, None)
    assert summary.mean_embed_ms == pytest.approx(2.0)


async def test_purge_deletes_searches_older_than_the_cutoff(storage: Storage) -> None:
    async with committed(storage) as uow:
        for second in (1, 2, 3, 4):
            await uow.searches.append(make_search(created_at=at(second), query=str(second)))
    async with committed(storage) as uow:
        assert await uow.searches.purge(at(3)) == 2
        assert await uow.searches.purge(at(3)) == 0
    async with committed(storage) as uow:
        assert [r.query for r in await uow.searches.list()] == ["4", "3"]
        await uow.searches.append(make_search(created_at=at(5), query="5"))
    async with storage.unit_of_work() as uow:
        listed = await uow.searches.list()
    assert [r.query for r in listed] == ["5", "4", "3"]
    assert (listed[0].id or 0) > (listed[1].id or 0)


async def test_uncommitted_searches_are_not_logged(storage: Storage) -> None:
    async with storage.unit_of_work() as uow:
        await uow.searches.append(make_search())
    async with storage.unit_of_work() as uow:
        assert await uow.searches.list() == []
        assert (await uow.searches.summary("gen-1")).count == 0


# --------------------------------------------------------------------------- job listings


async def test_list_for_owner_lists_the_owners_jobs_newest_first(storage: Storage) -> None:
    tie = sorted(
        [make_job(owner_id="alice", created_at=at(2)) for _ in range(2)], key=lambda j: j.id
    )
    mine = [
        make_job(owner_id="alice", created_at=at(1)),
        *tie,
        make_job(owner_id="alice", created_at=at(3)),
    ]
    async with committed(storage) as uow:
        for job in [*mine, make_job(owner_id="bob", created_at=at(5)), make_job(created_at=at(6))]:
            await uow.jobs.enqueue(job)
    async with storage.unit_of_work() as uow:
        expected = [mine[3].id, tie[1].id, tie[0].id, mine[0].id]
        assert [j.id for j in await uow.jobs.list_for_owner("alice")] == expected
        assert [j.id for j in await uow.jobs.list_for_owner("alice", limit=2)] == expected[:2]
        assert await uow.jobs.list_for_owner("carol") == []
        assert await uow.jobs.list_for_owner("alice") == sorted(
            mine, key=lambda j: (j.created_at, j.id), reverse=True
        )


async def test_list_recent_lists_jobs_newest_first_optionally_by_kind(storage: Storage) -> None:
    ingest_old = make_job(kind="kb.ingest", created_at=at(1))
    build = make_job(kind="kb.build", created_at=at(2), owner_id="alice")
    mail = make_job(kind="mail", created_at=at(3))
    ingest_new = make_job(kind="kb.ingest", created_at=at(4))
    async with committed(storage) as uow:
        for job in (build, ingest_new, mail, ingest_old):
            await uow.jobs.enqueue(job)
    async with storage.unit_of_work() as uow:
        assert [j.id for j in await uow.jobs.list_recent()] == [
            ingest_new.id,
            mail.id,
            build.id,
            ingest_old.id,
        ]
        assert [j.id for j in await uow.jobs.list_recent(limit=2)] == [ingest_new.id, mail.id]
        assert [j.id for j in await uow.jobs.list_recent(kinds=["kb.ingest", "kb.build"])] == [
            ingest_new.id,
            build.id,
            ingest_old.id,
        ]
        assert [j.id for j in await uow.jobs.list_recent(kinds=["kb.ingest"], limit=1)] == [
            ingest_new.id
        ]
        assert await uow.jobs.list_recent(kinds=[]) == []
        assert await uow.jobs.list_recent(kinds=["unknown"]) == []
