"""The storage contract of the conversations context (see test_storage_contract.py)."""

from __future__ import annotations

import asyncio

import pytest
from storage_support import add_conversation, at, committed, make_conversation

from avatarstack.ports.errors import NotFoundError
from avatarstack.ports.storage import Storage

# --------------------------------------------------------------------------- conversations


async def test_conversations_are_listed_most_recently_updated_first(storage: Storage) -> None:
    old = make_conversation("alice", updated_at=at(1))
    new = make_conversation("alice", updated_at=at(3))
    mid = make_conversation("alice", title=None, updated_at=at(2))
    other = make_conversation("bob")
    async with committed(storage) as uow:
        for conversation in (old, new, mid, other):
            await uow.conversations.add(conversation)
    async with storage.unit_of_work() as uow:
        assert await uow.conversations.get(mid.id) == mid
        assert await uow.conversations.get("missing") is None
        assert await uow.conversations.list_for_user("alice") == [new, mid, old]
        assert await uow.conversations.list_for_user("alice", limit=1, offset=1) == [mid]


async def test_append_event_assigns_gap_free_seq_starting_at_one(storage: Storage) -> None:
    conversation = await add_conversation(storage)
    async with committed(storage) as uow:
        first = await uow.conversations.append_event(conversation.id, "user", {"n": 1}, at(1))
        second = await uow.conversations.append_event(conversation.id, "bot", {"n": 2}, at(2))
    async with committed(storage) as uow:
        third = await uow.conversations.append_event(conversation.id, "user", {"n": 3}, at(3))
    assert [first.seq, second.seq, third.seq] == [1, 2, 3]
    async with storage.unit_of_work() as uow:
        assert await uow.conversations.list_events(conversation.id) == [first, second, third]
        stored = await uow.conversations.get(conversation.id)
    assert stored == conversation.model_copy(update={"last_seq": 3, "updated_at": at(3)})


async def test_an_event_rolled_back_does_not_consume_a_seq(storage: Storage) -> None:
    conversation = await add_conversation(storage)
    async with storage.unit_of_work() as uow:
        await uow.conversations.append_event(conversation.id, "user", {}, at(1))
    async with committed(storage) as uow:
        event = await uow.conversations.append_event(conversation.id, "user", {}, at(2))
    assert event.seq == 1


async def test_append_event_with_a_known_client_id_returns_the_stored_event(
    storage: Storage,
) -> None:
    conversation = await add_conversation(storage)
    async with committed(storage) as uow:
        original = await uow.conversations.append_event(
            conversation.id, "user", {"text": "hi"}, at(1), client_id="c-1"
        )
        await uow.conversations.append_event(conversation.id, "bot", {"text": "hello"}, at(2))
    async with committed(storage) as uow:
        retried = await uow.conversations.append_event(
            conversation.id, "user", {"text": "hi again"}, at(3), client_id="c-1"
        )
    assert retried == original
    assert retried.seq == 1
    assert retried.data == {"text": "hi"}
    async with storage.unit_of_work() as uow:
        assert [e.seq for e in await uow.conversations.list_events(conversation.id)] == [1, 2]
        stored = await uow.conversations.get(conversation.id)
    assert stored is not None
    assert stored.last_seq == 2


async def test_client_ids_are_scoped_to_their_conversation(storage: Storage) -> None:
    one = await add_conversation(storage)
    two = await add_conversation(storage)
    async with committed(storage) as uow:
        await uow.conversations.append_event(one.id, "user", {}, at(1))
        await uow.conversations.append_event(one.id, "user", {}, at(2), client_id="same")
        event = await uow.conversations.append_event(two.id, "user", {}, at(3), client_id="same")
    assert event.conversation_id == two.id
    assert event.seq == 1


async def test_list_events_returns_events_after_a_seq_ascending(storage: Storage) -> None:
    conversation = await add_conversation(storage)
    async with committed(storage) as uow:
        for n in range(1, 6):
            await uow.conversations.append_event(conversation.id, "user", {"n": n}, at(n))
    async with storage.unit_of_work() as uow:
        events = await uow.conversations.list_events(conversation.id, after_seq=2)
        assert [e.seq for e in events] == [3, 4, 5]
        assert [e.data["n"] for e in events] == [3, 4, 5]
        limited = await uow.conversations.list_events(conversation.id, after_seq=1, limit=2)
        assert [e.seq for e in limited] == [2, 3]
        assert await uow.conversations.list_events(conversation.id, after_seq=5) == []
        assert await uow.conversations.list_events("missing") == []


async def test_append_event_to_an_unknown_conversation_raises_not_found(
    storage: Storage,
) -> None:
    with pytest.raises(NotFoundError):
        async with storage.unit_of_work() as uow:
            await uow.conversations.append_event("missing", "user", {}, at(1))


async def test_concurrent_appends_yield_gap_free_unique_seqs(storage: Storage) -> None:
    conversation = await add_conversation(storage)

    async def append(n: int) -> int:
        async with committed(storage) as uow:
            event = await uow.conversations.append_event(conversation.id, "user", {"n": n}, at(n))
        return event.seq

    seqs = await asyncio.gather(*(append(n) for n in range(20)))
    assert sorted(seqs) == list(range(1, 21))
    async with storage.unit_of_work() as uow:
        events = await uow.conversations.list_events(conversation.id)
        stored = await uow.conversations.get(conversation.id)
    assert [e.seq for e in events] == list(range(1, 21))
    assert sorted(e.data["n"] for e in events) == list(range(20))
    assert stored is not None
    assert stored.last_seq == 20


async def test_concurrent_retries_with_one_client_id_store_one_event(storage: Storage) -> None:
    conversation = await add_conversation(storage)

    async def append() -> int:
        async with committed(storage) as uow:
            event = await uow.conversations.append_event(
                conversation.id, "user", {}, at(1), client_id="retry"
            )
        return event.seq

    assert await asyncio.gather(*(append() for _ in range(5))) == [1] * 5
    async with storage.unit_of_work() as uow:
        assert len(await uow.conversations.list_events(conversation.id)) == 1
